"""Sessions and messages keep the ids a front end gave them (useChat makes its own).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add chat_sessions.client_id (unique per user) and messages.client_id."""
    op.add_column("chat_sessions", sa.Column("client_id", sa.String(200), nullable=True))
    op.create_index(
        "ix_chat_sessions_user_id_client_id",
        "chat_sessions",
        ["user_id", "client_id"],
        unique=True,
        postgresql_where=sa.text("client_id IS NOT NULL"),
        sqlite_where=sa.text("client_id IS NOT NULL"),
    )
    op.add_column("messages", sa.Column("client_id", sa.String(200), nullable=True))
    op.create_index(
        "ix_messages_session_id_client_id",
        "messages",
        ["session_id", "client_id"],
        postgresql_where=sa.text("client_id IS NOT NULL"),
        sqlite_where=sa.text("client_id IS NOT NULL"),
    )


def downgrade() -> None:
    """Remove both columns and their indexes."""
    op.drop_index("ix_messages_session_id_client_id", table_name="messages")
    op.drop_column("messages", "client_id")
    op.drop_index("ix_chat_sessions_user_id_client_id", table_name="chat_sessions")
    op.drop_column("chat_sessions", "client_id")
