"""Usage split by kind: cache writes and reads, and reasoning tokens, on replies and per day.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

KINDS = ("cache_creation_input_tokens", "cache_read_input_tokens", "reasoning_tokens")


def upgrade() -> None:
    """Add the kinds to messages (null: not reported) and to usage_daily (0 before)."""
    with op.batch_alter_table("messages") as table:
        for kind in KINDS:
            table.add_column(sa.Column(kind, sa.Integer(), nullable=True))
    with op.batch_alter_table("usage_daily") as table:
        for kind in KINDS:
            table.add_column(
                sa.Column(kind, sa.BigInteger(), nullable=False, server_default=sa.text("0"))
            )


def downgrade() -> None:
    """Remove them."""
    for name in ("usage_daily", "messages"):
        with op.batch_alter_table(name) as table:
            for kind in KINDS:
                table.drop_column(kind)
