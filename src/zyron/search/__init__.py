"""Full text search over the caller's messages and session titles (GET /search)."""
