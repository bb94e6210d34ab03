"""Sessions say whether their title is still to be generated.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_sessions = sa.table("chat_sessions", sa.column("title", sa.String), sa.column("title_pending"))


def upgrade() -> None:
    """Add chat_sessions.title_pending; sessions still on the placeholder title get it set."""
    op.add_column(
        "chat_sessions",
        sa.Column("title_pending", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    postgres = op.get_context().dialect.name == "postgresql"
    # Forced RLS applies to the owner too: without this the backfill would see no rows.
    if postgres:
        op.execute("ALTER TABLE chat_sessions NO FORCE ROW LEVEL SECURITY")
    op.execute(
        _sessions.update().where(_sessions.c.title == "New chat").values(title_pending=sa.true())
    )
    if postgres:
        op.execute("ALTER TABLE chat_sessions FORCE ROW LEVEL SECURITY")


def downgrade() -> None:
    """Remove chat_sessions.title_pending."""
    op.drop_column("chat_sessions", "title_pending")
