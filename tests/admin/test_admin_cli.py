"""`zyron users ...` as an operator runs it, on SQLite and on Postgres, beside a live server."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.admin.support import assert_error
from tests.backends import Backend
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.support import PASSWORD, LiveServer, live_server, signup, unique_email
from tests.test_cli import clean_env, zyron

NEW_PASSWORD = "a long enough password"


@dataclass
class Cli:
    """The command line on a server's database (and its data directory, for files)."""

    server: LiveServer
    env: dict[str, str]
    cwd: Path

    def __call__(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        """Run `zyron users <args>`; standard input is `stdin` (never a terminal)."""
        return subprocess.run(  # our own interpreter and arguments
            zyron("users", *args),
            env=self.env,
            cwd=self.cwd,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def users(self) -> dict[str, dict[str, Any]]:
        """`zyron users list --json`, by email."""
        done = self("list", "--json")
        assert done.returncode == 0, done.stderr
        return {user["email"]: user for user in json.loads(done.stdout)}


@pytest.fixture
def cli(backend: Backend, tmp_path: Path, upstream: FakeAnthropic) -> Iterator[Cli]:
    """A server on a new database, and the command line on the same database and files."""
    data_dir = tmp_path / "data"
    settings = backend.settings(
        data_dir, anthropic_api_key="sk-ant-test", anthropic_base_url=upstream.base_url
    )
    extra = {"DATABASE_URL": settings.database_url} if settings.database_url else {}
    env = clean_env(data_dir, **extra)
    with live_server(settings) as server:
        yield Cli(server, env, tmp_path)


def test_every_command(cli: Cli) -> None:
    """create, list, promote, demote, disable, enable, delete: each changes the row it says,
    prints what it did, and exits 0; the server sees the accounts as the command left them."""
    alice, bob = unique_email("alice"), unique_email("bob")
    created = cli("create", alice, "--admin", "--password-stdin", stdin=f"{NEW_PASSWORD}\n")
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith(f"created {alice} (")
    assert created.stdout.rstrip().endswith("(admin)")
    assert cli("create", bob.upper(), "--password-stdin", stdin=NEW_PASSWORD).returncode == 0
    users = cli.users()
    assert {email: u["role"] for email, u in users.items()} == {alice: "admin", bob: "user"}
    table = cli("list")
    assert table.returncode == 0
    assert table.stdout.splitlines()[0].split()[:4] == ["ID", "EMAIL", "ROLE", "STATE"]
    assert alice in table.stdout
    assert bob in table.stdout

    with cli.server.client() as http:
        # The accounts sign in; the admin one opens the admin routes.
        login = http.post("/auth/login", json={"email": alice, "password": NEW_PASSWORD})
        assert login.status_code == 200, login.text
        token = {"Authorization": f"Bearer {login.json()['access_token']}"}
        assert http.get("/admin/users", headers=token).status_code == 200

        steps = [
            ("promote", bob, ("admin", False)),
            ("demote", bob, ("user", False)),
            ("disable", bob, ("user", True)),
            ("enable", bob, ("user", False)),
        ]
        for command, who, (role, disabled) in steps:
            done = cli(command, who)
            assert done.returncode == 0, done.stderr
            state = f"{role}, {'disabled' if disabled else 'enabled'}"
            assert done.stdout.strip() == f"{bob} ({users[bob]['id']}) is now {state}"
            assert "REDIS_URL is not set" in done.stderr  # nothing could tell the server
            row = cli.users()[bob]
            assert (row["role"], row["disabled"]) == (role, disabled)
        again = cli("enable", users[bob]["id"])  # by id, too
        assert again.returncode == 0
        assert "already user, enabled: nothing changed" in again.stdout

        cli("disable", bob)
        refused = http.post("/auth/login", json={"email": bob, "password": NEW_PASSWORD})
        assert_error(refused, 403, "account_disabled")


def test_delete_removes_everything_of_the_account_as_the_api_does(cli: Cli) -> None:
    """Rows, stored files and a tombstone: the account deletion service, not a bare DELETE."""
    server = cli.server
    with server.client() as http:
        account = signup(http)
        upload = http.post(
            "/files",
            files={"file": ("notes.txt", b"kept until deleted\n", "text/plain")},
            headers=account.headers,
        )
        assert upload.status_code == 201, upload.text
        body = {"message": "Hello", "stream": False, "attachments": [upload.json()["id"]]}
        assert http.post("/chat", json=body, headers=account.headers).status_code == 200
        key = server.query(
            "SELECT storage_key FROM files WHERE user_id = :id", id=server.id(account.id)
        )[0][0]
        stored = server.settings.data_dir / key
        assert stored.exists()

        not_confirmed = cli("delete", account.email)
        assert not_confirmed.returncode == 1
        assert "--yes" in not_confirmed.stderr
        assert server.count("users") == 1

        done = cli("delete", account.email, "--yes")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"deleted {account.email} ({account.id})"
        uid = server.id(account.id)
        for table in ("users", "chat_sessions", "messages", "files", "usage_daily"):
            where = "id" if table == "users" else "user_id"
            assert server.query(f"SELECT count(*) FROM {table} WHERE {where} = :id", id=uid) == [
                (0,)
            ], table
        assert server.query(
            "SELECT count(*) FROM deleted_accounts WHERE user_id = :id", id=uid
        ) == [(1,)]
        assert not stored.exists()
        # The server had the account cached: with no Redis it is told nothing, but the row is
        # gone, so a fresh check (here: a login) fails.
        login = http.post("/auth/login", json={"email": account.email, "password": PASSWORD})
        assert_error(login, 401, "invalid_credentials")


BAD_INPUT = (
    (("promote", "nobody@example.com"), "", "No user with the email 'nobody@example.com'."),
    (("disable", "00000000-0000-4000-8000-000000000000"), "", "No user with the id"),
    (("delete", "nobody@example.com", "--yes"), "", "No user with the email"),
    (("create", "not-an-email", "--password-stdin"), NEW_PASSWORD, "email:"),
    (("create", "short@example.com", "--password-stdin"), "short\n", "password:"),
    (("create", "empty@example.com", "--password-stdin"), "", "standard input is empty"),
    (("create", "tty@example.com"), NEW_PASSWORD, "--password-stdin"),
    (("list", "--limit", "0"), "", "--limit: from 1 to 200"),
)


def test_bad_input_exits_1_with_a_clear_message_and_changes_nothing(cli: Cli) -> None:
    """Unknown users and refused input: exit status 1, `zyron users: ...` on standard error."""
    for args, stdin, message in BAD_INPUT:
        done = cli(*args, stdin=stdin)
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert done.stderr.splitlines()[-1].startswith("zyron users: "), args
        assert message in done.stderr, (args, done.stderr)
        assert done.stdout == "", args
    assert cli.server.count("users") == 0


def test_an_email_taken_is_refused(cli: Cli) -> None:
    """The second create of one email (in any case) exits 1; the first account stays as it was."""
    email = unique_email("taken")
    assert cli("create", email, "--password-stdin", stdin=NEW_PASSWORD).returncode == 0
    again = cli("create", email.upper(), "--admin", "--password-stdin", stdin=NEW_PASSWORD)
    assert again.returncode == 1
    assert "already exists" in again.stderr
    assert cli.users()[email]["role"] == "user"


def test_usage_without_a_subcommand_is_refused(tmp_path: Path) -> None:
    """argparse's own usage error (exit 2), naming the subcommands."""
    done = subprocess.run(  # our own interpreter and arguments
        zyron("users"),
        env=clean_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "list,create,promote,demote,disable,enable,delete" in done.stderr


def test_the_command_migrates_a_new_database_first(tmp_path: Path) -> None:
    """On an empty data directory: the schema is made, and there is nobody yet."""
    done = subprocess.run(  # our own interpreter and arguments
        zyron("users", "list"),
        env=clean_env(tmp_path / "fresh"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "no accounts"
    assert (tmp_path / "fresh" / "zyron.db").exists()
