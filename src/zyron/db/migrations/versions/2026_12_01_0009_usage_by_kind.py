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
    """Add the kinds to messages (null: not reported) and to usage_daily (0 before).

    Plain ALTER TABLEs, not batch mode: on SQLite a batch rebuild of `messages` would fire its
    foreign keys' actions and lose the message tree.
    """
    for kind in KINDS:
        op.add_column("messages", sa.Column(kind, sa.Integer(), nullable=True))
        op.add_column(
            "usage_daily",
            sa.Column(kind, sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        )


def downgrade() -> None:
    """Remove them."""
    for kind in KINDS:
        op.drop_column("usage_daily", kind)
        op.drop_column("messages", kind)
