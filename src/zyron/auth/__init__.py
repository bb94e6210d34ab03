"""Authentication: built-in accounts and Supabase Auth tokens."""
