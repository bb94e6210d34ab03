"""Daily token usage per user and model, for quotas and GET /usage.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from zyron.db import rls

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add usage_daily, owned by its user under RLS on Postgres."""
    op.create_table(
        "usage_daily",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("replies", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_usage_daily_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", "day", "model", name=op.f("pk_usage_daily")),
    )
    if op.get_context().dialect.name != "postgresql":
        return
    statements = rls.enable_rls("usage_daily")
    statements += rls.owner_policies(
        "usage_daily", "user_id", commands=("select", "insert", "update")
    )
    statements += rls.reset_grants(
        "usage_daily", authenticated="SELECT, INSERT, UPDATE", service_role=""
    )
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    """Remove usage_daily."""
    op.drop_table("usage_daily")
