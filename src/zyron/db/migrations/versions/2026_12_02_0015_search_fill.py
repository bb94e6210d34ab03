"""Postgres: fill the search columns of the rows written before 0014, and build their indexes.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02

Outside any long transaction: the rows are filled in batches along the primary key, each
batch committed on its own, and the GIN indexes built CONCURRENTLY, so writers are never
held for more than a batch. Safe to run again: an interrupted run leaves this revision
unapplied, and the next start fills again and rebuilds an index a failed build left invalid.
Behind a transaction pooler (or for `zyron migrate --sql`) everything runs in the
migrations' one transaction instead: one UPDATE per table and plain index builds.
"""

from __future__ import annotations

from alembic import op

from zyron.search import reindex

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Fill every row's search column, then build the GIN indexes."""
    context = op.get_context()
    if context.dialect.name != "postgresql":
        return  # SQLite's index was filled by 0014
    one_transaction = context.config is not None and context.config.attributes.get(
        "one_transaction", False
    )
    if context.as_sql or one_transaction:
        for statement in reindex.fill_all():
            op.execute(statement)
        for index in reindex.INDEXES:
            op.execute(index.drop_if_invalid_sql())  # an earlier direct run's failed build
            op.execute(index.create_sql(concurrently=False))
        return
    with context.autocommit_block():
        reindex.fill(op.get_bind())
        for index in reindex.INDEXES:
            reindex.build_concurrently(op.get_bind(), index)


def downgrade() -> None:
    """Drop the indexes; 0014's downgrade drops the columns."""
    if op.get_context().dialect.name == "postgresql":
        for index in reindex.INDEXES:
            op.execute(f"DROP INDEX IF EXISTS {index.name}")
