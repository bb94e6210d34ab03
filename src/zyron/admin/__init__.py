"""Administration: an admin role, its routes and the `zyron users` command (docs/admin.md)."""
