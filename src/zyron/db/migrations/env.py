"""Alembic environment: online on the connection Zyron hands over, offline for `--sql`."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from zyron.db.models import Base

config = context.config

if context.is_offline_mode():
    # `zyron migrate --sql`: the Postgres script to paste into Supabase's SQL editor.
    context.configure(
        dialect_name="postgresql",
        target_metadata=Base.metadata,
        literal_binds=True,
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    connection: Connection | None = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations with `zyron migrate`, which provides the connection")
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things; batch mode recreates tables when a migration needs it.
        render_as_batch=connection.dialect.name == "sqlite",
        # On Postgres each migration commits on its own (zyron.db.migrate holds a session lock
        # across them), so one may step out of its transaction (autocommit_block). SQLite's
        # migrations run in the one transaction zyron.db.migrate opened.
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()
