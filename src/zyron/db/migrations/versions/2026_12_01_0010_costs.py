"""What replies cost: nano-dollars on each reply and per day (null where a model is unpriced).

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
    """Add messages.cost_nanousd and usage_daily.cost_nanousd.

    Earlier rows have none (null): they were not priced when they were recorded.
    """
    with op.batch_alter_table("messages") as table:
        table.add_column(sa.Column("cost_nanousd", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("usage_daily") as table:
        table.add_column(sa.Column("cost_nanousd", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    """Remove them."""
    for name in ("usage_daily", "messages"):
        with op.batch_alter_table(name) as table:
            table.drop_column("cost_nanousd")
