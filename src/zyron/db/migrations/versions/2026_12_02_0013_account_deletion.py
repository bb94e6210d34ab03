"""Let a signed-in user delete their own `users` row (DELETE /auth/me).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02

Every other table of theirs cascades from the row (the cascades run as the tables' owner, as
Postgres runs referential actions, so forced RLS on those tables does not stop them). The
policy lets `authenticated` delete the caller's own row and nobody else's.
"""

from __future__ import annotations

from alembic import op

from zyron.db import rls

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Grant DELETE on users to authenticated, for the caller's own row only."""
    if op.get_context().dialect.name != "postgresql":
        return
    for statement in rls.owner_policies("users", "id", commands=("delete",)):
        op.execute(statement)
    op.execute("GRANT DELETE ON users TO authenticated")


def downgrade() -> None:
    """Revoke it and drop the policy."""
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute("REVOKE DELETE ON users FROM authenticated")
    op.execute("DROP POLICY IF EXISTS users_delete_own ON users")
