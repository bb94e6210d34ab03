"""Let the process-wide progress writer save streaming replies' text as service_role.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02

One statement per tick writes the progress of every reply a process is producing, for many
users at once, so it cannot run under one user's claims (zyron.chat.progress). It runs as
service_role, whose policies (0003) already limit it to rows still `streaming`. It may now
write `content` and `parts`, and read `user_id` (to match each id with its owner) and
`cancel_requested_at` (the read-back that carries a cancel from another replica). It still
cannot read any message's text.
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

COLUMNS = "SELECT (user_id, cancel_requested_at), UPDATE (content, parts) ON messages"


def upgrade() -> None:
    """Grant service_role the columns of a progress write."""
    if op.get_context().dialect.name == "postgresql":
        op.execute(f"GRANT {COLUMNS} TO service_role")


def downgrade() -> None:
    """Revoke them."""
    if op.get_context().dialect.name == "postgresql":
        op.execute(f"REVOKE {COLUMNS} FROM service_role")
