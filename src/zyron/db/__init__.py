"""Database: engine, models, the per-request unit of work and the Alembic migrations."""
