"""Share links: read-only snapshots of a conversation, readable by whoever holds the token."""
