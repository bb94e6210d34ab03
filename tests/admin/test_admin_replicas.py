"""Every replica at once: two servers sharing Postgres and Redis, and the command line beside
them; Supabase admins by their token's app_metadata."""

from __future__ import annotations

import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.admin.support import assert_error, make_admin, until, until_ok
from tests.auth.test_account_deletion import SECRET_KEY, supabase
from tests.fakes.anthropic_upstream import FakeAnthropic, TextReply
from tests.fakes.jwks_server import JwksServer
from tests.pg import APP_ROLE, PostgresServer, sqlalchemy_url
from tests.redis_server import RedisServer
from tests.support import ADMIN_URLS, LiveServer, live_server, make_settings, signup
from tests.test_cli import clean_env, zyron


@pytest.fixture(scope="module")
def jwks() -> Iterator[JwksServer]:
    """The Supabase project's key set, served over HTTP."""
    with JwksServer() as keys:
        yield keys


@pytest.fixture
def replicas(
    postgres: PostgresServer,
    redis_server: RedisServer,
    jwks: JwksServer,
    upstream: FakeAnthropic,
    tmp_path: Path,
) -> Iterator[tuple[LiveServer, LiveServer, dict[str, Any]]]:
    """Two servers on one Postgres database, sharing Redis and the signing key."""
    database = postgres.create_database()
    url = sqlalchemy_url(postgres.dsn(database, user=APP_ROLE))
    ADMIN_URLS[url] = sqlalchemy_url(postgres.dsn(database))
    common: dict[str, Any] = {
        "database_url": url,
        "redis_url": redis_server.url,
        "secret_key": SECRET_KEY,
        "supabase_url": jwks.base_url,
        "anthropic_api_key": "sk-ant-test-key-never-logged",
        "anthropic_base_url": upstream.base_url,
    }
    with (
        live_server(make_settings(tmp_path / "a", **common)) as a,
        live_server(make_settings(tmp_path / "b", **common)) as b,
    ):
        yield a, b, common


def test_disabling_on_one_replica_is_refused_at_once_on_the_other(
    replicas: tuple[LiveServer, LiveServer, dict[str, Any]], upstream: FakeAnthropic
) -> None:
    """B admits the user from its cache; disabled on A, B refuses them as soon as it hears,
    not when its cache expires, and stops the reply it is producing for them. Enabled on A,
    B lets the same token in again."""
    a, b, _ = replicas
    with a.client() as on_a, b.client() as on_b:
        admin, user = make_admin(a, on_a), signup(on_a)
        for client in (on_a, on_b):
            assert client.get("/sessions", headers=user.headers).status_code == 200
        hold = threading.Event()
        upstream.enqueue(TextReply(chunks=("first ", "second"), hold=hold))
        try:
            with on_b.stream(
                "POST", "/chat", json={"message": "a long one"}, headers=user.headers
            ) as reply:
                lines = reply.iter_lines()
                while next(lines) != "event: delta":
                    pass
                disabled = on_a.patch(
                    f"/admin/users/{user.id}", json={"disabled": True}, headers=admin.headers
                )
                assert disabled.status_code == 200, disabled.text
                assert_error(
                    until(lambda: on_b.get("/sessions", headers=user.headers)),
                    403,
                    "account_disabled",
                )
                rest = list(lines)  # ends once B has cancelled it
        finally:
            hold.set()
        assert "event: done" in rest, rest
        status = a.query(
            "SELECT status FROM messages WHERE user_id = :id AND role = 'assistant'",
            id=a.id(user.id),
        )
        assert status == [("cancelled",)]
        # The replica that disabled it forgot it itself: refused on the very next request.
        assert_error(on_a.get("/sessions", headers=user.headers), 403, "account_disabled")

        enabled = on_a.patch(
            f"/admin/users/{user.id}", json={"disabled": False}, headers=admin.headers
        )
        assert enabled.status_code == 200
        assert until_ok(lambda: on_b.get("/sessions", headers=user.headers)).status_code == 200


def test_a_change_of_role_reaches_the_other_replica_and_stops_no_reply(
    replicas: tuple[LiveServer, LiveServer, dict[str, Any]], upstream: FakeAnthropic
) -> None:
    """Promoted on A, the user opens the admin routes on B; demoted, B answers 404 again; the
    reply B was producing for them meanwhile ends complete."""
    a, b, _ = replicas
    with a.client() as on_a, b.client() as on_b:
        admin, user = make_admin(a, on_a), signup(on_a)
        assert on_b.get("/admin/users", headers=user.headers).status_code == 404  # cached
        hold = threading.Event()
        upstream.enqueue(TextReply(chunks=("first ", "second"), hold=hold))
        try:
            with on_b.stream(
                "POST", "/chat", json={"message": "a long one"}, headers=user.headers
            ) as reply:
                lines = reply.iter_lines()
                while next(lines) != "event: delta":
                    pass
                promoted = on_a.patch(
                    f"/admin/users/{user.id}", json={"role": "admin"}, headers=admin.headers
                )
                assert promoted.status_code == 200
                opened = until_ok(lambda: on_b.get("/admin/users", headers=user.headers))
                assert opened.status_code == 200
                hold.set()
                rest = list(lines)
        finally:
            hold.set()
        assert "event: done" in rest
        status = a.query(
            "SELECT status FROM messages WHERE user_id = :id AND role = 'assistant'",
            id=a.id(user.id),
        )
        assert status == [("complete",)]
        on_a.patch(f"/admin/users/{user.id}", json={"role": "user"}, headers=admin.headers)
        assert until(lambda: on_b.get("/admin/users", headers=user.headers)).status_code == 404


def test_the_command_line_tells_running_servers_through_redis(
    replicas: tuple[LiveServer, LiveServer, dict[str, Any]], tmp_path: Path
) -> None:
    """`zyron users disable` with REDIS_URL: both servers refuse the cached account at once."""
    a, b, common = replicas
    with a.client() as on_a, b.client() as on_b:
        user = signup(on_a)
        for client in (on_a, on_b):
            assert client.get("/sessions", headers=user.headers).status_code == 200
        env = clean_env(
            tmp_path / "cli", DATABASE_URL=common["database_url"], REDIS_URL=common["redis_url"]
        )
        done = subprocess.run(  # our own interpreter and arguments
            zyron("users", "disable", user.email),
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "REDIS_URL is not set" not in done.stderr
        for client in (on_a, on_b):
            refused = until(lambda c=client: c.get("/sessions", headers=user.headers))
            assert_error(refused, 403, "account_disabled")


def test_supabase_admins_come_from_app_metadata_and_are_disabled_by_their_row(
    replicas: tuple[LiveServer, LiveServer, dict[str, Any]], jwks: JwksServer
) -> None:
    """app_metadata.zyron_role == "admin" opens the admin routes (user_metadata, which users
    set themselves, does not); disabling a Supabase user refuses their tokens on both."""
    a, b, _ = replicas
    with a.client() as on_a, b.client() as on_b:
        boss = supabase(jwks, uuid.uuid4(), app_metadata={"zyron_role": "admin"})
        for headers in (
            supabase(jwks, uuid.uuid4()),
            supabase(jwks, uuid.uuid4(), app_metadata={"zyron_role": "user"}),
            supabase(jwks, uuid.uuid4(), user_metadata={"zyron_role": "admin"}),
            supabase(jwks, uuid.uuid4(), zyron_role="admin"),
        ):
            assert on_a.get("/admin/users", headers=headers).status_code == 404
        assert on_a.get("/admin/users", headers=boss).status_code == 200
        member_id = uuid.uuid4()
        member = supabase(jwks, member_id)
        for client in (on_a, on_b):
            assert client.get("/sessions", headers=member).status_code == 200
        disabled = on_a.patch(f"/admin/users/{member_id}", json={"disabled": True}, headers=boss)
        assert disabled.status_code == 200, disabled.text
        assert disabled.json()["role"] == "user"
        for client in (on_a, on_b):
            assert_error(
                until(lambda c=client: c.get("/sessions", headers=member)), 403, "account_disabled"
            )
        assert on_a.get(f"/admin/users/{member_id}", headers=boss).json()["disabled"] is True
