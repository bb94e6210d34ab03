"""Take your data away and bring it back: exports of sessions, files and usage, and imports."""
