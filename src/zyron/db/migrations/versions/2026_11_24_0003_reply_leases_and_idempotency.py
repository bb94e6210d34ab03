"""Reply leases and cancel requests on messages; idempotency keys for POST /chat.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from zyron.db import rls

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ONLY_SERVICE = "current_user = 'service_role'"


def upgrade() -> None:
    """Add the lease columns and the idempotency table, with their RLS on Postgres."""
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("cancel_requested_at", sa.DateTime(timezone=True), nullable=True)
        )
    op.create_table(
        "idempotency_keys",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("user_message_id", sa.Uuid(), nullable=False),
        sa.Column("assistant_message_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_idempotency_keys_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["chat_sessions.id"],
            name=op.f("fk_idempotency_keys_session_id_chat_sessions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["assistant_message_id"],
            ["messages.id"],
            name=op.f("fk_idempotency_keys_assistant_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "key", name=op.f("pk_idempotency_keys")),
    )
    if op.get_context().dialect.name != "postgresql":
        return
    statements = rls.enable_rls("idempotency_keys")
    statements += rls.owner_policies("idempotency_keys", "user_id", commands=("select", "insert"))
    statements += rls.reset_grants(
        "idempotency_keys", authenticated="SELECT, INSERT", service_role=""
    )
    # Recovery of replies whose process died runs as service_role: it may close only rows
    # still marked streaming, and touch only their status and lease columns. Postgres checks
    # an UPDATE's new row against the SELECT policy too, hence 'interrupted' there.
    statements += [
        "CREATE POLICY messages_recover_select ON messages AS PERMISSIVE FOR SELECT "
        f"TO service_role USING ({ONLY_SERVICE} AND status IN ('streaming', 'interrupted'))",
        "CREATE POLICY messages_recover_update ON messages AS PERMISSIVE FOR UPDATE "
        f"TO service_role USING ({ONLY_SERVICE} AND status = 'streaming') "
        f"WITH CHECK ({ONLY_SERVICE})",
        "GRANT SELECT (id, status, lease_expires_at), UPDATE (status, lease_expires_at) "
        "ON messages TO service_role",
    ]
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    """Remove what upgrade added."""
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP POLICY IF EXISTS messages_recover_select ON messages")
        op.execute("DROP POLICY IF EXISTS messages_recover_update ON messages")
        op.execute("REVOKE SELECT, UPDATE ON messages FROM service_role")
    op.drop_table("idempotency_keys")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("cancel_requested_at")
        batch.drop_column("lease_expires_at")
