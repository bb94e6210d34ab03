"""Postgres: API roles, auth functions, row level security and grants (no-op on SQLite).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

from zyron.db import rls

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

MINE = rls.CURRENT_USER_ID
ALL_COMMANDS = ("select", "insert", "update", "delete")
TABLES = ("users", "chat_sessions", "messages", "refresh_tokens")


def _statements() -> list[str]:
    statements = [rls.create_roles(), rls.create_auth_schema()]
    for table in TABLES:
        statements += rls.enable_rls(table)

    # users: a signed-in user reads their own row and creates it on first use (Supabase users).
    statements += rls.owner_policies("users", "id", commands=("select", "insert"))
    statements += rls.reset_grants(
        "users", authenticated="SELECT, INSERT", service_role="SELECT, INSERT, UPDATE"
    )

    statements += rls.owner_policies("chat_sessions", "user_id", commands=ALL_COMMANDS)
    statements += rls.reset_grants(
        "chat_sessions", authenticated="SELECT, INSERT, UPDATE, DELETE", service_role=""
    )

    # messages: owned by the caller, and only in a session the caller owns (the sub-select on
    # chat_sessions is itself under RLS), so no message can be planted in a foreign session.
    in_own_session = f"user_id = {MINE} AND session_id IN (SELECT id FROM chat_sessions)"
    statements += rls.owner_policies("messages", "user_id", commands=("select", "delete"))
    statements += [
        "CREATE POLICY messages_insert_own ON messages AS PERMISSIVE FOR INSERT "
        f"TO authenticated WITH CHECK ({in_own_session})",
        "CREATE POLICY messages_update_own ON messages AS PERMISSIVE FOR UPDATE "
        f"TO authenticated USING (user_id = {MINE}) WITH CHECK ({in_own_session})",
    ]
    statements += rls.reset_grants(
        "messages", authenticated="SELECT, INSERT, UPDATE, DELETE", service_role=""
    )

    # refresh_tokens: only the auth flows (service_role) touch them; users never see them.
    statements += rls.reset_grants(
        "refresh_tokens", authenticated="", service_role="SELECT, INSERT, UPDATE"
    )
    # The login role is a member of service_role (to SET ROLE to it), and policies apply to
    # members too: current_user keeps this one to transactions that really switched role.
    only_service = "current_user = 'service_role'"
    for table in ("users", "refresh_tokens"):
        statements.append(
            f"CREATE POLICY {table}_service ON {table} AS PERMISSIVE FOR ALL "
            f"TO service_role USING ({only_service}) WITH CHECK ({only_service})"
        )
    statements += rls.reset_grants("alembic_version", authenticated="", service_role="")
    return statements


def upgrade() -> None:
    """Lock every user table down to its owner, enforced by the database."""
    if op.get_context().dialect.name != "postgresql":
        return
    for statement in _statements():
        op.execute(statement)


def downgrade() -> None:
    """Drop the policies, RLS and grants; roles and schema auth stay (Supabase owns them)."""
    if op.get_context().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(
            "DO $drop$ DECLARE p record; BEGIN "
            f"FOR p IN SELECT policyname FROM pg_policies WHERE tablename = '{table}' "
            "AND schemaname = current_schema() LOOP "
            f"EXECUTE 'DROP POLICY ' || quote_ident(p.policyname) || ' ON {table}'; "
            "END LOOP; END $drop$"
        )
        for statement in rls.disable_rls(table):
            op.execute(statement)
        op.execute(f"REVOKE ALL ON {table} FROM anon, authenticated, service_role")
