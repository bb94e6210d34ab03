"""`zyron migrate --sql`: the script a Supabase user pastes into the SQL editor."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from pathlib import Path

import asyncpg
from alembic.script import ScriptDirectory

from tests.pg import APP_ROLE, PostgresServer, sqlalchemy_url
from tests.support import live_server, make_settings, signup
from zyron.db.migrate import alembic_config, postgres_sql


def test_cli_prints_the_sql_without_a_database(tmp_path: Path) -> None:
    """The command needs no DATABASE_URL and prints one transaction of plain SQL."""
    result = subprocess.run(
        [sys.executable, "-m", "zyron", "migrate", "--sql"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "ZYRON_DATA_DIR": str(tmp_path / "data")},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    sql = result.stdout
    assert sql.lstrip().startswith("BEGIN;")
    assert sql.rstrip().endswith("COMMIT;")
    assert "FORCE ROW LEVEL SECURITY" in sql
    assert "CREATE TABLE messages" in sql
    assert not (tmp_path / "data").exists()  # nothing was created locally


def test_pasted_sql_makes_a_database_the_server_accepts(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    """Run the printed script as the app's role, then serve from that database."""
    buffer = io.StringIO()
    postgres_sql(buffer)
    database = postgres.create_database()

    async def paste() -> tuple[str, int]:
        conn = await asyncpg.connect(postgres.dsn(database, user=APP_ROLE))
        try:
            await conn.execute(buffer.getvalue())
            version = await conn.fetchval("SELECT version_num FROM alembic_version")
            forced = await conn.fetchval(
                "SELECT count(*) FROM pg_class WHERE relforcerowsecurity AND relname = ANY($1)",
                ["users", "chat_sessions", "messages", "refresh_tokens"],
            )
        finally:
            await conn.close()
        return str(version), int(forced)

    version, forced = asyncio.run(paste())
    assert forced == 4
    url = sqlalchemy_url(postgres.dsn(database, user=APP_ROLE))
    with live_server(make_settings(tmp_path, database_url=url)) as server, server.client() as http:
        account = signup(http)
        created = http.post("/sessions", json={"title": "from pasted SQL"}, headers=account.headers)
        assert created.status_code == 201, created.text
    assert version == ScriptDirectory.from_config(alembic_config()).get_current_head()
