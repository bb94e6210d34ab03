"""Rate limits (and, later, quotas) that make abuse of a public server expensive."""
