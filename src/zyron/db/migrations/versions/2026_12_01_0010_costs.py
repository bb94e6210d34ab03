"""What replies cost: nano-dollars on each reply and per day, and per day the unpriced replies.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add messages.cost_nanousd (null: unpriced), and usage_daily's priced cost and count of
    unpriced replies, kept apart so one unpriced reply never hides the rest from budgets.

    Plain ALTER TABLEs, not batch mode: on SQLite a batch rebuild of `messages` would fire its
    foreign keys' actions and lose the message tree.
    """
    op.add_column("messages", sa.Column("cost_nanousd", sa.BigInteger(), nullable=True))
    op.add_column(
        "usage_daily",
        sa.Column("cost_nanousd", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
    )
    op.add_column(
        "usage_daily",
        sa.Column("unpriced_replies", sa.Integer(), nullable=False, server_default=sa.text("0")),
    )


def downgrade() -> None:
    """Remove them."""
    op.drop_column("usage_daily", "unpriced_replies")
    op.drop_column("usage_daily", "cost_nanousd")
    op.drop_column("messages", "cost_nanousd")
