"""The `zyron` command, run as a real subprocess: migrate, serve, config errors and help."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support import PASSWORD, free_port, unique_email

STARTUP_SECONDS = 20.0
DROPPED_PREFIXES = ("ANTHROPIC_", "SUPABASE_", "ZYRON_")
DROPPED_NAMES = {
    "DATABASE_URL",
    "SECRET_KEY",
    "DEFAULT_MODEL",
    "REDIS_URL",
    "ALLOWED_ORIGINS",
    "HOST",
    "PORT",
    "LOG_LEVEL",
}
TABLES = {"users", "chat_sessions", "messages", "refresh_tokens"}


def clean_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The test process's environment without any Zyron configuration, plus `extra`."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in DROPPED_NAMES and not name.startswith(DROPPED_PREFIXES)
    }
    env["ZYRON_DATA_DIR"] = str(data_dir)
    env.update(extra)
    return env


def zyron(*args: str) -> list[str]:
    """The command line that runs `zyron` with this interpreter, whatever the venv."""
    return [sys.executable, "-m", "zyron", *args]


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a command to completion (bounded, so a hang fails instead of blocking the suite)."""
    return subprocess.run(  # our own interpreter and arguments
        args, env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def table_names(db_file: Path) -> set[str]:
    """Read the table names of a SQLite file with the standard library."""
    with sqlite3.connect(db_file) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {str(row[0]) for row in rows}


@contextmanager
def serving(data_dir: Path, cwd: Path, log_file: Path) -> Iterator[str]:
    """Run `zyron serve` on a free port until /health answers; stop it afterwards."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log_file.open("a") as log:
        process = subprocess.Popen(  # our own interpreter and arguments
            zyron("serve", "--host", "127.0.0.1", "--port", str(port)),
            env=clean_env(data_dir),
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if process.poll() is not None:
                raise AssertionError(
                    f"zyron serve exited {process.returncode}: {log_file.read_text()}"
                )
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"zyron serve did not become healthy: {log_file.read_text()}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_help(tmp_path: Path) -> None:
    """`zyron --help` lists the commands and exits 0."""
    result = run(zyron("--help"), clean_env(tmp_path / "data"), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "serve" in result.stdout
    assert "migrate" in result.stdout
    result = run(zyron("serve", "--help"), clean_env(tmp_path / "data"), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "--port" in result.stdout
    assert "--reload" in result.stdout


def test_unknown_command_fails(tmp_path: Path) -> None:
    """An unknown command is a usage error, not a start."""
    result = run(zyron("frobnicate"), clean_env(tmp_path / "data"), tmp_path)
    assert result.returncode == 2
    assert "frobnicate" in result.stderr


def test_migrate_creates_the_database(tmp_path: Path) -> None:
    """`zyron migrate` creates the SQLite file with every table; running it again is a no-op."""
    data_dir = tmp_path / "data"
    result = run(zyron("migrate"), clean_env(data_dir), tmp_path)
    assert result.returncode == 0, result.stderr
    db_file = data_dir / "zyron.db"
    assert db_file.is_file()
    assert table_names(db_file) >= TABLES | {"alembic_version"}
    with sqlite3.connect(db_file) as conn:
        (version,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    assert version

    result = run(zyron("migrate"), clean_env(data_dir), tmp_path)
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(db_file) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(version,)]
    # Nothing was written to the working directory: the data directory is where data goes.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_serve_generates_and_keeps_the_secret(tmp_path: Path) -> None:
    """`zyron serve` on a fresh data dir creates a 0600 secret and reuses it after a restart."""
    data_dir = tmp_path / "data"
    log_file = tmp_path / "serve.log"
    secret_file = data_dir / "secret_key"
    with serving(data_dir, tmp_path, log_file) as url:
        assert secret_file.is_file()
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        assert (data_dir / "zyron.db").is_file()
        assert table_names(data_dir / "zyron.db") >= TABLES
        email = unique_email("cli")
        response = httpx.post(
            f"{url}/auth/signup", json={"email": email, "password": PASSWORD}, timeout=30
        )
        assert response.status_code == 201, response.text
        token = response.json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{url}/auth/me", headers=headers, timeout=30).status_code == 200
    secret = secret_file.read_text()
    assert len(secret.strip()) >= 32

    with serving(data_dir, tmp_path, log_file) as url:
        response = httpx.get(f"{url}/auth/me", headers=headers, timeout=30)
        assert response.status_code == 200, response.text
        assert response.json()["email"] == email
    assert secret_file.read_text() == secret
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600


def test_placeholder_secret_refused_in_production(tmp_path: Path) -> None:
    """With a placeholder SECRET_KEY in production, `zyron serve` exits 2 naming SECRET_KEY."""
    data_dir = tmp_path / "data"
    env = clean_env(data_dir, SECRET_KEY="changeme", ZYRON_ENV="production")
    result = run(zyron("serve", "--port", str(free_port())), env, tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "SECRET_KEY" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (data_dir / "secret_key").exists()


def test_short_secret_refused_in_production(tmp_path: Path) -> None:
    """A SECRET_KEY shorter than 32 characters is refused in production too."""
    env = clean_env(tmp_path / "data", SECRET_KEY="x" * 20, ZYRON_ENV="production")
    result = run(zyron("serve", "--port", str(free_port())), env, tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "SECRET_KEY" in result.stderr


def test_serve_at_a_terminal_says_where_it_serves(tmp_path: Path) -> None:
    """At a terminal, `zyron serve` prints its URL, model, data and a first request once ready."""
    import pty

    port = free_port()
    data_dir = tmp_path / "data"
    primary, secondary = pty.openpty()
    process = subprocess.Popen(  # our own interpreter and arguments
        zyron("serve", "--port", str(port)),
        env=clean_env(data_dir, LOCAL_MODEL="0"),
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=secondary,
    )
    os.close(secondary)
    output = b""
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while b"Ctrl+C stops it." not in output:
            assert time.monotonic() < deadline, output.decode(errors="replace")
            try:
                output += os.read(primary, 65536)
            except OSError:  # the terminal closed: the server exited
                raise AssertionError(output.decode(errors="replace")) from None
        # Printed once start-up is done: the server answers by now.
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=20)
        os.close(primary)
    text = output.decode().replace("\r\n", "\n")
    banner = text[text.index("Zyron ") :]
    assert f"is ready at http://127.0.0.1:{port}\n" in banner
    assert "  model  none: POST /chat answers 503 no_provider" in banner
    assert f"  data   {data_dir.resolve()} (SQLite database" in banner
    assert f"  chat   http://127.0.0.1:{port}/ in a browser\n" in banner
    assert f"  API    http://127.0.0.1:{port}/docs\n" in banner
    assert f"  try    curl -N http://127.0.0.1:{port}/chat " in banner


def test_serve_without_a_terminal_logs_json_only(tmp_path: Path) -> None:
    """Under a supervisor (no terminal), every line on stderr is a JSON log entry."""
    log_file = tmp_path / "serve.log"
    with serving(tmp_path / "data", tmp_path, log_file) as url:
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200
    lines = log_file.read_text().splitlines()
    assert lines
    for line in lines:
        assert json.loads(line)["level"], line


def test_the_banner_url_names_a_reachable_host() -> None:
    """A wildcard bind is reached on the loopback address; IPv6 goes in brackets."""
    from zyron.cli import _display_host

    assert _display_host("0.0.0.0") == "127.0.0.1"  # noqa: S104  (a string, not a bind)
    assert _display_host("::") == "127.0.0.1"
    assert _display_host("::1") == "[::1]"
    assert _display_host("example.internal") == "example.internal"
