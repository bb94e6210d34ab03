"""SQL for Postgres roles, Supabase's auth functions and row level security, used by migrations.

Everything here is idempotent and guarded, so one migration serves a bare Postgres (where it
creates what is missing) and a Supabase project (where it leaves Supabase's objects alone).
"""

from __future__ import annotations

API_ROLES = ("anon", "authenticated", "service_role")

# Supabase's definitions (GoTrue migrations 20220224000811 and 20220531120530): read the
# per-claim setting when present, else the JSON claims PostgREST sets per request.
AUTH_FUNCTIONS = {
    "uid": (
        "uuid",
        "select coalesce(nullif(current_setting('request.jwt.claim.sub', true), ''), "
        "(nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'))::uuid",
    ),
    "role": (
        "text",
        "select coalesce(nullif(current_setting('request.jwt.claim.role', true), ''), "
        "(nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role'))::text",
    ),
    "email": (
        "text",
        "select coalesce(nullif(current_setting('request.jwt.claim.email', true), ''), "
        "(nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email'))::text",
    ),
    "jwt": (
        "jsonb",
        "select coalesce(nullif(current_setting('request.jwt.claim', true), ''), "
        "nullif(current_setting('request.jwt.claims', true), ''))::jsonb",
    ),
}

CURRENT_USER_ID = "(select auth.uid())"  # a sub-select: evaluated once per statement, not per row


def create_roles() -> str:
    """Create the API roles where missing and let the login role switch to them."""
    creates = "\n".join(
        f"  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN\n"
        f"    CREATE ROLE {role} NOLOGIN;\n"
        f"  END IF;"
        for role in API_ROLES
    )
    grants = "\n".join(_switch_grant(role) for role in ("authenticated", "service_role"))
    return f"DO $roles$\nBEGIN\n{creates}\n{grants}\nEND\n$roles$;"


def _switch_grant(role: str) -> str:
    """PL/pgSQL that lets the login role SET ROLE to `role`, where it cannot yet."""
    # Postgres 16 gives a CREATEROLE user only ADMIN on the roles it creates, not the right to
    # SET ROLE to them, so there "member" is not enough. No format('%I') anywhere: offline
    # rendering (`migrate --sql`) would double the percent sign.
    return (
        f"  IF current_setting('server_version_num')::int >= 160000 THEN\n"
        f"    IF NOT pg_has_role(current_user, '{role}', 'SET') THEN\n"
        f"      EXECUTE 'GRANT {role} TO ' || quote_ident(current_user) "
        f"|| ' WITH INHERIT FALSE, SET TRUE';\n"
        f"    END IF;\n"
        f"  ELSIF NOT pg_has_role(current_user, '{role}', 'MEMBER') THEN\n"
        f"    EXECUTE 'GRANT {role} TO ' || quote_ident(current_user);\n"
        f"  END IF;"
    )


def allow_switch_to(role: str) -> str:
    """Let the login role SET ROLE to `role` (an API role created by create_roles)."""
    return f"DO $switch$\nBEGIN\n{_switch_grant(role)}\nEND\n$switch$;"


def create_auth_schema() -> str:
    """Create schema auth and auth.uid()/role()/email()/jwt() only where they do not exist."""
    functions = "\n".join(
        f"  IF to_regprocedure('auth.{name}()') IS NULL THEN\n"
        f"    EXECUTE $fn$CREATE FUNCTION auth.{name}() RETURNS {returns} "
        f"LANGUAGE sql STABLE AS $body$ {body} $body$$fn$;\n"
        f"  END IF;"
        for name, (returns, body) in AUTH_FUNCTIONS.items()
    )
    return (
        "DO $auth$\nBEGIN\n"
        "  IF NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = 'auth') THEN\n"
        "    CREATE SCHEMA auth;\n"
        "    GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;\n"
        "  END IF;\n"
        f"{functions}\n"
        "END\n$auth$;"
    )


def owner_policies(table: str, column: str, *, commands: tuple[str, ...]) -> list[str]:
    """Per-command policies for `authenticated`: only rows whose `column` is the caller's id."""
    mine = f"{column} = {CURRENT_USER_ID}"
    statements = []
    for command in commands:
        name = f"{table}_{command}_own"
        if command == "select" or command == "delete":
            clause = f"USING ({mine})"
        elif command == "insert":
            clause = f"WITH CHECK ({mine})"
        else:  # update: may only touch own rows, and may not hand them to someone else
            clause = f"USING ({mine}) WITH CHECK ({mine})"
        statements.append(
            f"CREATE POLICY {name} ON {table} AS PERMISSIVE FOR {command.upper()} "
            f"TO authenticated {clause}"
        )
    return statements


def enable_rls(table: str) -> list[str]:
    """Enable and force RLS: without a matching policy, even the table's owner sees nothing."""
    return [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
    ]


def disable_rls(table: str) -> list[str]:
    """Undo enable_rls."""
    return [
        f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY",
    ]


def reset_grants(table: str, *, authenticated: str, service_role: str) -> list[str]:
    """Revoke everything (Supabase grants ALL by default) and grant each API role its part."""
    statements = [f"REVOKE ALL ON {table} FROM PUBLIC, anon, authenticated, service_role"]
    if authenticated:
        statements.append(f"GRANT {authenticated} ON {table} TO authenticated")
    if service_role:
        statements.append(f"GRANT {service_role} ON {table} TO service_role")
    return statements
