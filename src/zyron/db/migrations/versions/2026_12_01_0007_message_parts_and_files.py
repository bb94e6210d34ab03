"""Messages made of parts; uploaded files and the messages that use them.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from zyron.db import rls

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

MINE = rls.CURRENT_USER_ID


def upgrade() -> None:
    """Add messages.parts (every message gets its text as one part), files and message_files."""
    postgres = op.get_context().dialect.name == "postgresql"
    parts_type = sa.JSON().with_variant(JSONB(), "postgresql")
    op.add_column(
        "messages",
        sa.Column("parts", parts_type, server_default=sa.text("'[]'"), nullable=False),
    )
    # Forced RLS applies to the owner too: without lifting it the backfill would see no rows.
    if postgres:
        op.execute("ALTER TABLE messages NO FORCE ROW LEVEL SECURITY")
        op.execute(
            "UPDATE messages SET parts = jsonb_build_array("
            "jsonb_build_object('type', 'text', 'text', content)) WHERE content <> ''"
        )
        op.execute("ALTER TABLE messages FORCE ROW LEVEL SECURITY")
    else:
        op.execute(
            "UPDATE messages SET parts = json_array("
            "json_object('type', 'text', 'text', content)) WHERE content <> ''"
        )

    op.create_table(
        "files",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("media_type", sa.String(100), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("storage_key", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_files_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_files")),
    )
    op.create_index(
        op.f("ix_files_user_id_created_at_id"), "files", ["user_id", "created_at", "id"]
    )
    op.create_table(
        "message_files",
        sa.Column("message_id", sa.Uuid(), nullable=False),
        sa.Column("file_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_message_files_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["file_id"],
            ["files.id"],
            name=op.f("fk_message_files_file_id_files"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_message_files_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("message_id", "file_id", name=op.f("pk_message_files")),
    )
    op.create_index(op.f("ix_message_files_file_id"), "message_files", ["file_id"])
    op.create_index(op.f("ix_message_files_user_id"), "message_files", ["user_id"])
    if not postgres:
        return
    statements = rls.enable_rls("files") + rls.enable_rls("message_files")
    statements += rls.owner_policies("files", "user_id", commands=("select", "insert", "delete"))
    statements += rls.reset_grants("files", authenticated="SELECT, INSERT, DELETE", service_role="")
    # A link ties the caller's own message to the caller's own file, checked by owner and
    # not only through the tables' SELECT policies: a later policy that lets users read
    # others' messages (shared links) must not let them attach files to those.
    own_link = (
        f"user_id = {MINE} "
        f"AND EXISTS (SELECT 1 FROM messages m WHERE m.id = message_id AND m.user_id = {MINE}) "
        f"AND EXISTS (SELECT 1 FROM files f WHERE f.id = file_id AND f.user_id = {MINE})"
    )
    statements += rls.owner_policies("message_files", "user_id", commands=("select", "delete"))
    statements.append(
        "CREATE POLICY message_files_insert_own ON message_files AS PERMISSIVE FOR INSERT "
        f"TO authenticated WITH CHECK ({own_link})"
    )
    statements += rls.reset_grants(
        "message_files", authenticated="SELECT, INSERT, DELETE", service_role=""
    )
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    """Drop message_files, files and messages.parts (the text stays in `content`)."""
    op.drop_table("message_files")
    op.drop_table("files")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("parts")
