"""Share links (snapshots and the files they show) and the record of deleted accounts.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02

Anonymous readers of a share act as `anon` with the hash of the token they hold in the
transaction-local setting `zyron.share_token_hash`: the policies below show them that one
share, its files' rows and nothing else. Without the setting, `anon` reads nothing.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from zyron.db import rls

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

MINE = rls.CURRENT_USER_ID
HELD_SHARE = "current_setting('zyron.share_token_hash', true)"
# What an anonymous reader may see of a file: enough to serve its bytes.
FILE_COLUMNS = "id, user_id, filename, media_type, size, storage_key"


def upgrade() -> None:
    """Create shares, share_files and deleted_accounts, with forced RLS on Postgres."""
    json_type = sa.JSON().with_variant(JSONB(), "postgresql")
    op.create_table(
        "shares",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=True),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("up_to_message_id", sa.Uuid(), nullable=True),
        sa.Column("snapshot", json_type, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_shares_user_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["chat_sessions.id"],
            name=op.f("fk_shares_session_id_chat_sessions"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shares")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_shares_token_hash")),
    )
    op.create_index(op.f("ix_shares_user_id_created_at"), "shares", ["user_id", "created_at"])
    op.create_index(op.f("ix_shares_session_id"), "shares", ["session_id"])
    op.create_table(
        "share_files",
        sa.Column("share_id", sa.Uuid(), nullable=False),
        sa.Column("file_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["share_id"],
            ["shares.id"],
            name=op.f("fk_share_files_share_id_shares"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["file_id"], ["files.id"], name=op.f("fk_share_files_file_id_files"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_share_files_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("share_id", "file_id", name=op.f("pk_share_files")),
    )
    op.create_index(op.f("ix_share_files_file_id"), "share_files", ["file_id"])
    op.create_index(op.f("ix_share_files_user_id"), "share_files", ["user_id"])
    op.create_table(
        "deleted_accounts",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_deleted_accounts")),
    )
    if op.get_context().dialect.name != "postgresql":
        return
    for statement in _policies():
        op.execute(statement)


def _policies() -> list[str]:
    statements = [rls.allow_switch_to("anon")]
    for table in ("shares", "share_files", "deleted_accounts"):
        statements += rls.enable_rls(table)

    # shares: the owner makes, lists and revokes; anon reads the one share whose token it holds.
    statements += rls.owner_policies("shares", "user_id", commands=("select", "delete"))
    statements.append(
        "CREATE POLICY shares_insert_own ON shares AS PERMISSIVE FOR INSERT TO authenticated "
        f"WITH CHECK (user_id = {MINE} AND (session_id IS NULL OR "
        "session_id IN (SELECT id FROM chat_sessions)))"
    )
    statements.append(
        "CREATE POLICY shares_select_by_token ON shares AS PERMISSIVE FOR SELECT TO anon "
        f"USING (token_hash = {HELD_SHARE})"
    )
    statements += rls.reset_grants(
        "shares", authenticated="SELECT, INSERT, DELETE", service_role=""
    )
    statements.append(
        "GRANT SELECT (id, title, snapshot, created_at, token_hash) ON shares TO anon"
    )

    # share_files: only the owner's own files, shown by the owner's own share.
    own_link = (
        f"user_id = {MINE} "
        f"AND EXISTS (SELECT 1 FROM shares s WHERE s.id = share_id AND s.user_id = {MINE}) "
        f"AND EXISTS (SELECT 1 FROM files f WHERE f.id = file_id AND f.user_id = {MINE})"
    )
    statements += rls.owner_policies("share_files", "user_id", commands=("select", "delete"))
    statements += [
        "CREATE POLICY share_files_insert_own ON share_files AS PERMISSIVE FOR INSERT "
        f"TO authenticated WITH CHECK ({own_link})",
        # The sub-select is itself under RLS: anon sees only the share its token names.
        "CREATE POLICY share_files_select_by_token ON share_files AS PERMISSIVE FOR SELECT "
        "TO anon USING (share_id IN (SELECT id FROM shares))",
    ]
    statements += rls.reset_grants(
        "share_files", authenticated="SELECT, INSERT, DELETE", service_role=""
    )
    statements.append("GRANT SELECT (share_id, file_id) ON share_files TO anon")

    # files: anon reads the rows of the files the share it holds shows, never their owner's
    # other files, and only the columns needed to serve them.
    statements += [
        "CREATE POLICY files_select_by_token ON files AS PERMISSIVE FOR SELECT TO anon "
        "USING (id IN (SELECT file_id FROM share_files))",
        f"GRANT SELECT ({FILE_COLUMNS}) ON files TO anon",
    ]

    # deleted_accounts: a user records their own deletion and (signing in again) reads it.
    statements += rls.owner_policies(
        "deleted_accounts", "user_id", commands=("select", "insert", "update")
    )
    statements += rls.reset_grants(
        "deleted_accounts", authenticated="SELECT, INSERT, UPDATE", service_role=""
    )
    return statements


def downgrade() -> None:
    """Drop the three tables (and anon's file policy); anon keeps its role membership."""
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP POLICY IF EXISTS files_select_by_token ON files")
        op.execute(f"REVOKE SELECT ({FILE_COLUMNS}) ON files FROM anon")
    op.drop_table("deleted_accounts")
    op.drop_table("share_files")
    op.drop_table("shares")
