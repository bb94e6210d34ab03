"""Indexes found missing by the 1,000,000-message benchmark.

- Message pages: `(session_id, user_id, created_at, id)` matches the query exactly (both
  filters, then the order), so a page of 100 is read backwards from the index and stops at
  100 rows. With `(session_id, created_at)` Postgres combined two bitmaps, read the whole
  session and sorted it: 8 ms for a 10,000-message session instead of 0.1 ms.
- `messages.parent_id` and the idempotency keys' foreign keys: deleting a session set
  `parent_id` to NULL in every child, found by scanning all messages (4.8 s to delete a
  20-message session at 1,000,000 messages).
- Recovery looks for replies still `streaming` every few seconds: a partial index keeps that
  proportional to the replies in flight, not to the whole table.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Replace the message page index and index the foreign keys that deletes follow."""
    op.create_index(
        op.f("ix_messages_session_id_user_id_created_at_id"),
        "messages",
        ["session_id", "user_id", "created_at", "id"],
    )
    # The new index leads with session_id, so it also serves the cascade from chat_sessions.
    op.drop_index(op.f("ix_messages_session_id_created_at"), table_name="messages")
    op.create_index(op.f("ix_messages_parent_id"), "messages", ["parent_id"])
    op.create_index(
        op.f("ix_messages_streaming_lease"),
        "messages",
        ["lease_expires_at"],
        postgresql_where=sa.text("status = 'streaming'"),
        sqlite_where=sa.text("status = 'streaming'"),
    )
    op.create_index(op.f("ix_idempotency_keys_session_id"), "idempotency_keys", ["session_id"])
    op.create_index(
        op.f("ix_idempotency_keys_assistant_message_id"),
        "idempotency_keys",
        ["assistant_message_id"],
    )


def downgrade() -> None:
    """Put the indexes of revision 0003 back."""
    op.drop_index(op.f("ix_idempotency_keys_assistant_message_id"), table_name="idempotency_keys")
    op.drop_index(op.f("ix_idempotency_keys_session_id"), table_name="idempotency_keys")
    op.drop_index(op.f("ix_messages_streaming_lease"), table_name="messages")
    op.drop_index(op.f("ix_messages_parent_id"), table_name="messages")
    op.create_index(
        op.f("ix_messages_session_id_created_at"), "messages", ["session_id", "created_at"]
    )
    op.drop_index(op.f("ix_messages_session_id_user_id_created_at_id"), table_name="messages")
