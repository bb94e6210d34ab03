"""Uploaded files: type detection, limits, storage (local directory or S3) and the routes."""
