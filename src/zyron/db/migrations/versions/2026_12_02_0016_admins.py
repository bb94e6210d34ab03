"""Admins: a role and a disabled mark on users, per-user limit overrides, and role zyron_admin.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02

`users.role` is 'user' or 'admin'; `users.disabled_at` is set while an administrator has
disabled the account. `limit_overrides` holds a user's quotas and budgets where an
administrator set them (null: the server's setting).

Postgres: administrators' requests run as the NOLOGIN role `zyron_admin`, which the app's
login role may switch to, as it does to `authenticated`. Forced RLS stays on everywhere;
`zyron_admin` gets policies of its own on exactly what administration needs: reading and
updating users' role and disabled mark (never their password hash), reading usage_daily, and
limit_overrides. Like
service_role's, they hold only in a transaction that really switched role
(`current_user = 'zyron_admin'`): on Postgres before 16 the login role is a member of it.
A signed-in user reads their own overrides (to be held to them) and nobody else's.

A signed-in user may still create their own `users` row (a Supabase user's, on first use) and
delete it, as before, but now only as a plain user and only while not disabled: through
Supabase's Data API, a user could otherwise insert their row as an admin before Zyron makes
it, or escape a disable by deleting the row and having it made again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from zyron.db import rls

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

ADMIN_ROLE = "zyron_admin"
AS_ADMIN = f"current_user = '{ADMIN_ROLE}'"
# (table, command) of every policy of zyron_admin's.
ADMIN_POLICIES = (
    ("users", "select"),
    ("users", "update"),
    ("usage_daily", "select"),
    ("limit_overrides", "select"),
    ("limit_overrides", "insert"),
    ("limit_overrides", "update"),
    ("limit_overrides", "delete"),
)
# Never a password hash: an administrator reads who an account is, not its secret.
USER_COLUMNS = "id, email, display_name, created_at, role, disabled_at"
ADMIN_GRANTS = (
    f"SELECT ({USER_COLUMNS}), UPDATE (role, disabled_at) ON users",
    "SELECT ON usage_daily",
    "SELECT, INSERT, UPDATE, DELETE ON limit_overrides",
)


def upgrade() -> None:
    """Add the columns and the table; on Postgres, the role, its grants and the policies."""
    # Plain ADD COLUMNs, not batch mode: on SQLite a batch rebuild of `users` would fire the
    # cascades of every table that refers to it. The CHECK is the column's own, so SQLite
    # takes it in ADD COLUMN (and checks the rows already there).
    op.add_column(
        "users",
        sa.Column(
            "role",
            sa.String(16),
            sa.CheckConstraint("role IN ('user', 'admin')", name=op.f("ck_users_role")),
            nullable=False,
            server_default="user",
        ),
    )
    op.add_column("users", sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "limit_overrides",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("daily_tokens", sa.BigInteger(), nullable=True),
        sa.Column("daily_nanousd", sa.BigInteger(), nullable=True),
        sa.Column("monthly_nanousd", sa.BigInteger(), nullable=True),
        sa.Column("storage_bytes", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_limit_overrides_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_limit_overrides")),
    )
    if op.get_context().dialect.name != "postgresql":
        return
    for statement in _policies():
        op.execute(statement)


def _create_admin_role() -> str:
    """Create zyron_admin where missing (roles are per cluster: another database made it)."""
    return (
        "DO $role$\nBEGIN\n"
        f"  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ADMIN_ROLE}') THEN\n"
        f"    CREATE ROLE {ADMIN_ROLE} NOLOGIN;\n"
        "  END IF;\n"
        "END\n$role$;"
    )


# The own-row policies on users that 0002 and 0013 made, and what replaces them here.
OWN_USER_ROW = f"id = {rls.CURRENT_USER_ID}"
PLAIN_NEW_USER = "role = 'user' AND disabled_at IS NULL AND password_hash IS NULL"


def _own_user_row_policies() -> list[str]:
    return [
        "DROP POLICY IF EXISTS users_insert_own ON users",
        "CREATE POLICY users_insert_own ON users AS PERMISSIVE FOR INSERT TO authenticated "
        f"WITH CHECK ({OWN_USER_ROW} AND {PLAIN_NEW_USER})",
        "DROP POLICY IF EXISTS users_delete_own ON users",
        "CREATE POLICY users_delete_own ON users AS PERMISSIVE FOR DELETE TO authenticated "
        f"USING ({OWN_USER_ROW} AND disabled_at IS NULL)",
    ]


def _policies() -> list[str]:
    statements = [_create_admin_role(), rls.allow_switch_to(ADMIN_ROLE)]
    statements += _own_user_row_policies()
    statements += rls.enable_rls("limit_overrides")
    statements += rls.owner_policies("limit_overrides", "user_id", commands=("select",))
    statements += rls.reset_grants("limit_overrides", authenticated="SELECT", service_role="")
    for table, command in ADMIN_POLICIES:
        if command == "insert":
            clause = f"WITH CHECK ({AS_ADMIN})"
        elif command == "update":
            clause = f"USING ({AS_ADMIN}) WITH CHECK ({AS_ADMIN})"
        else:
            clause = f"USING ({AS_ADMIN})"
        statements.append(
            f"CREATE POLICY {table}_{command}_admin ON {table} AS PERMISSIVE "
            f"FOR {command.upper()} TO {ADMIN_ROLE} {clause}"
        )
    statements += [f"GRANT {grant} TO {ADMIN_ROLE}" for grant in ADMIN_GRANTS]
    return statements


def downgrade() -> None:
    """Drop the table, the columns and zyron_admin's policies and grants; the role stays."""
    if op.get_context().dialect.name == "postgresql":
        for table, command in ADMIN_POLICIES:
            if table != "limit_overrides":
                op.execute(f"DROP POLICY IF EXISTS {table}_{command}_admin ON {table}")
        op.execute(f"REVOKE {ADMIN_GRANTS[0]} FROM {ADMIN_ROLE}")
        op.execute(f"REVOKE {ADMIN_GRANTS[1]} FROM {ADMIN_ROLE}")
        # The own-row policies as 0002 and 0013 made them (before the columns they read go).
        op.execute("DROP POLICY IF EXISTS users_insert_own ON users")
        op.execute("DROP POLICY IF EXISTS users_delete_own ON users")
        for statement in rls.owner_policies("users", "id", commands=("insert", "delete")):
            op.execute(statement)
    op.drop_table("limit_overrides")
    op.drop_column("users", "disabled_at")
    op.drop_column("users", "role")
