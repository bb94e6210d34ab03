"""DELETE /auth/me: every row and file of the account goes, its tokens stop on every replica.

Servers run on a real port, on SQLite and Postgres, with files on local disk and in an
S3-compatible bucket; the database is inspected as the superuser (no RLS), every table of
the schema as Base.metadata lists it, so a table added later is covered too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis
from sqlalchemy import JSON, String, Text, Uuid

from tests.backends import Backend
from tests.fakes.anthropic_upstream import FakeAnthropic, TextReply
from tests.fakes.jwks_server import JwksServer
from tests.files.conftest import S3_PREFIX, FilesEnv, uploaded
from tests.pg import APP_ROLE, PostgresServer, sqlalchemy_url
from tests.redis_server import RedisServer, RedisUnavailable
from tests.s3_server import S3Server
from tests.support import (
    ADMIN_URLS,
    PASSWORD,
    Account,
    LiveServer,
    live_server,
    make_settings,
    signup,
)
from zyron.db.models import Base
from zyron.streams.redis_hub import reply_key

# Tables whose rows may name a deleted account: the record of its deletion, and nothing else.
TOMBSTONES = {"deleted_accounts"}


@pytest.fixture(scope="module")
def jwks() -> Iterator[JwksServer]:
    """The Supabase project's key set, served over HTTP."""
    with JwksServer() as keys:
        yield keys


@contextmanager
def _env(
    backend: Backend,
    data_dir: Path,
    jwks: JwksServer,
    upstream: FakeAnthropic,
    s3: S3Server | None = None,
    **overrides: Any,
) -> Iterator[FilesEnv]:
    bucket = None
    if s3 is not None:
        bucket = s3.create_bucket()
        overrides.update(s3.settings(bucket, s3_prefix=S3_PREFIX))
    settings = backend.settings(
        data_dir,
        supabase_url=jwks.base_url,
        anthropic_api_key="sk-ant-test-key-never-logged",
        anthropic_base_url=upstream.base_url,
        **overrides,
    )
    with live_server(settings) as running:
        yield FilesEnv(running, "s3" if s3 else "local", s3, bucket)


@pytest.fixture(scope="module")
def local_env(
    backend: Backend,
    jwks: JwksServer,
    fake_anthropic: FakeAnthropic,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[FilesEnv]:
    """A server with files on local disk, taking built-in and Supabase tokens."""
    with _env(backend, tmp_path_factory.mktemp("deletion-local"), jwks, fake_anthropic) as env:
        yield env


@pytest.fixture(scope="module")
def s3_env(
    backend: Backend,
    jwks: JwksServer,
    fake_anthropic: FakeAnthropic,
    s3_server: S3Server,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[FilesEnv]:
    """The same, with files in an S3-compatible bucket."""
    data_dir = tmp_path_factory.mktemp("deletion-s3")
    with _env(backend, data_dir, jwks, fake_anthropic, s3_server) as env:
        yield env


@pytest.fixture(params=["local", "s3"])
def any_env(request: pytest.FixtureRequest, backend: Backend, upstream: FakeAnthropic) -> FilesEnv:
    """Each storage kind, on each database (named here, so pytest runs both)."""
    env: FilesEnv = request.getfixturevalue(f"{request.param}_env")
    return env


@pytest.fixture
def env(local_env: FilesEnv, upstream: FakeAnthropic) -> FilesEnv:
    """The local-disk server, its upstream clean."""
    return local_env


@pytest.fixture
def http(env: FilesEnv) -> Iterator[httpx.Client]:
    """A client of the local-disk server."""
    with env.server.client() as client:
        yield client


# --- helpers -----------------------------------------------------------------------------------


def delete_me(
    client: httpx.Client, headers: dict[str, str], body: Any = None, **kwargs: Any
) -> httpx.Response:
    """DELETE /auth/me, with a JSON body when one is given."""
    if body is not None:
        kwargs["json"] = body
    return client.request("DELETE", "/auth/me", headers=headers, **kwargs)


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Check the status and the one error shape; return the body."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "detail"}, body
    assert body["error"] == code, body
    assert body["detail"]
    return body


def _stamp(server: LiveServer) -> datetime | str:
    now = datetime.now(UTC)
    if server.dialect == "sqlite":
        return now.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    return now


def add_share(server: LiveServer, user_id: uuid.UUID, session_id: str, file_id: str) -> None:
    """Insert a share of the session showing the file (as the superuser)."""
    share_id = uuid.uuid4()
    snapshot = "CAST(:snapshot AS JSONB)" if server.dialect == "postgresql" else ":snapshot"
    server.query(
        "INSERT INTO shares (id, user_id, session_id, token_hash, title, snapshot, created_at) "
        f"VALUES (:id, :user, :session, :hash, 'shared', {snapshot}, :at)",
        id=server.id(share_id),
        user=server.id(user_id),
        session=server.id(session_id),
        hash=hashlib.sha256(share_id.bytes).hexdigest(),
        snapshot=json.dumps([{"role": "user", "content": "shared"}]),
        at=_stamp(server),
    )
    server.query(
        "INSERT INTO share_files (share_id, file_id, user_id) VALUES (:share, :file, :user)",
        share=server.id(share_id),
        file=server.id(file_id),
        user=server.id(user_id),
    )


def chat(
    client: httpx.Client, account: Account, body: dict[str, Any], **headers: str
) -> dict[str, Any]:
    """POST /chat without streaming; return the answer."""
    response = client.post(
        "/chat", json={"stream": False, **body}, headers={**account.headers, **headers}
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    assert answer["saved"] is True, answer
    return answer


def populate(env: FilesEnv, client: httpx.Client, account: Account, marker: str) -> None:
    """Give the account one of everything: sessions, branches, files, usage, keys, shares."""
    attached = uploaded(client, account, f"attached {marker}\n".encode(), filename=f"{marker}.txt")
    uploaded(client, account, f"never attached {marker}\n".encode(), filename=f"{marker}-2.txt")
    first = chat(
        client,
        account,
        {"message": f"hello {marker}", "title": f"chat {marker}", "attachments": [attached["id"]]},
        **{"Idempotency-Key": f"key-{marker}"},
    )
    session_id = first["session_id"]
    # A second reply to the same message: a branch.
    regenerated = client.post(
        f"/chat/{first['message']['id']}/regenerate",
        json={"stream": False},
        headers=account.headers,
    )
    assert regenerated.status_code == 200, regenerated.text
    chat(client, account, {"message": f"and then {marker}", "session_id": session_id})
    chat(client, account, {"message": f"another chat {marker}"})
    # A second login session: refresh tokens of two families.
    login = client.post("/auth/login", json={"email": account.email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    add_share(env.server, account.id, session_id, attached["id"])
    # An administrator's override of the account's limits (docs/admin.md).
    env.server.query(
        "INSERT INTO limit_overrides (user_id, daily_tokens, updated_at) VALUES (:u, 5, :now)",
        u=env.server.id(account.id),
        now=datetime.now(UTC),
    )


def _uuid(value: Any) -> uuid.UUID | None:
    if value is None:
        return None
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def ids_in_tables(server: LiveServer) -> dict[str, set[uuid.UUID]]:
    """Every id held in any UUID column of any table, by table."""
    found: dict[str, set[uuid.UUID]] = {}
    for table in Base.metadata.sorted_tables:
        columns = [column.name for column in table.columns if isinstance(column.type, Uuid)]
        values: set[uuid.UUID] = set()
        for row in server.query(f"SELECT {', '.join(columns)} FROM {table.name}"):
            values |= {value for value in map(_uuid, row) if value is not None}
        found[table.name] = values
    return found


def ids_of(server: LiveServer, user_id: uuid.UUID) -> set[uuid.UUID]:
    """Every id in the rows the user owns (their own, their objects', their tokens'), any table."""
    owned: set[uuid.UUID] = {user_id}
    for table in Base.metadata.sorted_tables:
        if "user_id" not in table.columns or table.name in TOMBSTONES:
            continue
        columns = [column.name for column in table.columns if isinstance(column.type, Uuid)]
        rows = server.query(
            f"SELECT {', '.join(columns)} FROM {table.name} WHERE user_id = :u",
            u=server.id(user_id),
        )
        for row in rows:
            owned |= {value for value in map(_uuid, row) if value is not None}
    return owned


def tables_with_text(server: LiveServer, marker: str) -> list[str]:
    """The tables (and columns) where any text or JSON value contains `marker`."""
    hits = []
    for table in Base.metadata.sorted_tables:
        for column in table.columns:
            if not isinstance(column.type, String | Text | JSON):
                continue
            count = server.query(
                f"SELECT count(*) FROM {table.name} WHERE CAST({column.name} AS TEXT) LIKE :m",
                m=f"%{marker}%",
            )[0][0]
            if count:
                hits.append(f"{table.name}.{column.name}")
    return hits


def rows_of(server: LiveServer, user_id: uuid.UUID) -> dict[str, list[str]]:
    """Every row holding any of the user's ids, by table, as text (for before/after checks)."""
    theirs = ids_of(server, user_id)
    out: dict[str, list[str]] = {}
    for table in Base.metadata.sorted_tables:
        rows = server.query(f"SELECT * FROM {table.name}")
        out[table.name] = sorted(
            repr(row) for row in rows if theirs & {_uuid(v) for v in row if _is_uuid(v)}
        )
    return out


def _is_uuid(value: Any) -> bool:
    if isinstance(value, uuid.UUID):
        return True
    if not isinstance(value, str) or len(value) not in (32, 36):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def objects_of(env: FilesEnv, user_id: uuid.UUID) -> list[str]:
    """The stored objects under the user's prefix."""
    return [key for key in env.stored() if key.startswith(f"files/{user_id.hex}/")]


def deleted_at(server: LiveServer, user_id: uuid.UUID) -> datetime | None:
    """When the account's deletion was recorded, read as the superuser."""
    rows = server.query(
        "SELECT deleted_at FROM deleted_accounts WHERE user_id = :u", u=server.id(user_id)
    )
    if not rows:
        return None
    value = rows[0][0]
    if isinstance(value, str):  # SQLite: naive UTC text
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    assert isinstance(value, datetime)
    return value


def user_rows(server: LiveServer, user_id: uuid.UUID) -> int:
    """Count the users rows with this id."""
    return int(server.query("SELECT count(*) FROM users WHERE id = :u", u=server.id(user_id))[0][0])


# --- everything goes ---------------------------------------------------------------------------


def test_deleting_an_account_leaves_no_row_and_no_file_of_it(any_env: FilesEnv) -> None:
    """No table holds an id or a text of theirs, no object of theirs is stored; others keep all."""
    server = any_env.server
    marker, other_marker = f"victim{uuid.uuid4().hex[:10]}", f"other{uuid.uuid4().hex[:10]}"
    with server.client() as client:
        victim, other = signup(client), signup(client)
        populate(any_env, client, victim, marker)
        populate(any_env, client, other, other_marker)
        theirs = ids_of(server, victim.id)
        others_before = rows_of(server, other.id)
        tables = ids_in_tables(server)
        # Each kind of row exists before, or the check below would prove nothing.
        for table in Base.metadata.sorted_tables:
            if table.name not in TOMBSTONES:
                assert theirs & tables[table.name], f"no row of the victim in {table.name}"
        assert len(objects_of(any_env, victim.id)) == 2
        assert tables_with_text(server, marker)

        response = delete_me(client, victim.headers, {"password": PASSWORD})

        assert response.status_code == 204, response.text
        assert response.content == b""
        left = {name: ids & theirs for name, ids in ids_in_tables(server).items()}
        assert left == {
            table.name: {victim.id} if table.name in TOMBSTONES else set()
            for table in Base.metadata.sorted_tables
        }
        assert tables_with_text(server, marker) == []
        assert deleted_at(server, victim.id) is not None
        # Objects go once the deletion has committed, after the response.
        assert any_env.wait_for_storage(
            lambda keys: not any(k.startswith(f"files/{victim.id.hex}/") for k in keys)
        )
        assert objects_of(any_env, victim.id) == []
        assert len(objects_of(any_env, other.id)) == 2
        assert rows_of(server, other.id) == others_before
        mine = client.get("/sessions", headers=other.headers)
        assert mine.status_code == 200, mine.text
        assert len(mine.json()) == 2


def _share_with_file(
    client: httpx.Client, account: Account, marker: str
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """A session showing a file, and a link made of it through the API: (session, file, link)."""
    file = uploaded(client, account, f"shared {marker}\n".encode(), filename=f"{marker}.txt")
    session_id = chat(client, account, {"message": f"read {marker}", "attachments": [file["id"]]})[
        "session_id"
    ]
    made = client.post(f"/sessions/{session_id}/shares", headers=account.headers)
    assert made.status_code == 201, made.text
    link: dict[str, Any] = made.json()
    return session_id, file, link


def _read_link(server: LiveServer, link: dict[str, Any]) -> tuple[httpx.Response, list[str]]:
    """GET the link without an account; return the answer and its files' URLs."""
    with server.client() as anonymous:
        shown = anonymous.get(link["url"])
    urls = [file["url"] for file in shown.json()["files"]] if shown.status_code == 200 else []
    return shown, urls


def test_the_accounts_share_links_open_nothing_once_it_is_deleted(any_env: FilesEnv) -> None:
    """Links made through the API, one of a deleted session whose file only the link keeps:
    after DELETE /auth/me each is a 404, its file URL too, and the files' bytes are gone.
    Another account's link still opens."""
    server = any_env.server
    marker = uuid.uuid4().hex[:10]
    with server.client() as client:
        victim, other = signup(client), signup(client)
        _, kept_file, kept_link = _share_with_file(client, victim, f"live-{marker}")
        gone_session, only_file, only_link = _share_with_file(client, victim, f"only-{marker}")
        # The session goes; its file stays, as the link still shows it.
        deleted = client.delete(f"/sessions/{gone_session}", headers=victim.headers)
        assert deleted.status_code == 204, deleted.text
        _, _, others_link = _share_with_file(client, other, f"other-{marker}")
        file_urls: list[str] = []
        for link, file in ((kept_link, kept_file), (only_link, only_file)):
            shown, urls = _read_link(server, link)
            assert shown.status_code == 200, shown.text
            assert [url.rsplit("/", 1)[1] for url in urls] == [file["id"]]
            with server.client() as anonymous:
                served = anonymous.get(urls[0])
            assert served.status_code == 200, served.text
            assert served.content.startswith(b"shared ")
            file_urls += urls
        assert len(objects_of(any_env, victim.id)) == 2

        assert delete_me(client, victim.headers, {"password": PASSWORD}).status_code == 204

        with server.client() as anonymous:
            for url in (kept_link["url"], only_link["url"], *file_urls):
                body = assert_error(anonymous.get(url), 404, "not_found")
                assert body["detail"] == "No such share link."
        assert any_env.wait_for_storage(
            lambda keys: not any(k.startswith(f"files/{victim.id.hex}/") for k in keys)
        )
        assert objects_of(any_env, victim.id) == []
        assert server.query(
            "SELECT count(*) FROM shares WHERE user_id = :u", u=server.id(victim.id)
        ) == [(0,)]
        shown, urls = _read_link(server, others_link)
        assert shown.status_code == 200, shown.text
        with server.client() as anonymous:
            assert anonymous.get(urls[0]).status_code == 200


# --- refused, and nothing changes ----------------------------------------------------------------


def test_a_wrong_password_deletes_nothing(env: FilesEnv, http: httpx.Client) -> None:
    """401 invalid_credentials; every row and object stays, and the token still works."""
    account = signup(http)
    populate(env, http, account, f"kept{uuid.uuid4().hex[:10]}")
    before = rows_of(env.server, account.id)
    objects = objects_of(env, account.id)

    response = delete_me(http, account.headers, {"password": "not the password"})

    assert_error(response, 401, "invalid_credentials")
    assert rows_of(env.server, account.id) == before
    assert objects_of(env, account.id) == objects
    assert deleted_at(env.server, account.id) is None
    assert http.get("/sessions", headers=account.headers).status_code == 200


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (None, "validation_error"),
        ({}, "validation_error"),
        ({"password": ""}, "validation_error"),
        ({"password": 12345678}, "validation_error"),
        ("not an object", "validation_error"),
        (b"{not json", "invalid_json"),
    ],
    ids=["no body", "no password", "empty", "a number", "a string", "bad json"],
)
def test_a_built_in_account_without_a_valid_password_is_422(
    http: httpx.Client, env: FilesEnv, body: Any, code: str
) -> None:
    """A built-in account must confirm with its password; nothing is deleted without it."""
    account = signup(http)
    if isinstance(body, bytes):
        headers = {**account.headers, "Content-Type": "application/json"}
        response = delete_me(http, headers, content=body)
    else:
        response = delete_me(http, account.headers, body)

    assert_error(response, 422, code)
    assert user_rows(env.server, account.id) == 1
    assert http.get("/auth/me", headers=account.headers).status_code == 200


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "not_authenticated"),
        ({"Authorization": "Bearer not-a-token"}, "invalid_token"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "invalid_token"),
    ],
    ids=["no token", "bad token", "not bearer"],
)
def test_without_a_valid_token_is_401(
    http: httpx.Client, env: FilesEnv, headers: dict[str, str], code: str
) -> None:
    """No account is named, so none is deleted."""
    users = env.server.count("users")

    response = delete_me(http, headers, {"password": PASSWORD})

    assert_error(response, 401, code)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert env.server.count("users") == users


# --- its tokens stop at once -------------------------------------------------------------------


def test_the_accounts_tokens_stop_working_at_once(http: httpx.Client, env: FilesEnv) -> None:
    """The access token is refused on the next request, the refresh token and the login too."""
    account = signup(http)
    assert http.get("/sessions", headers=account.headers).status_code == 200  # admitted, cached

    assert delete_me(http, account.headers, {"password": PASSWORD}).status_code == 204

    for response in (
        http.get("/sessions", headers=account.headers),
        http.post("/sessions", json={}, headers=account.headers),
        http.get("/auth/me", headers=account.headers),
        delete_me(http, account.headers, {"password": PASSWORD}),
    ):
        assert_error(response, 401, "invalid_token")
    refreshed = http.post("/auth/refresh", json={"refresh_token": account.refresh_token})
    assert_error(refreshed, 401, "invalid_refresh_token")
    login = http.post("/auth/login", json={"email": account.email, "password": PASSWORD})
    assert_error(login, 401, "invalid_credentials")
    assert user_rows(env.server, account.id) == 0
    # The email is free again: signing up with it makes a new, empty account.
    again = signup(http, account.email)
    assert again.id != account.id
    assert http.get("/sessions", headers=again.headers).json() == []


def test_a_reply_streaming_during_the_deletion_ends_without_writing_anything(
    http: httpx.Client, env: FilesEnv, upstream: FakeAnthropic, caplog: pytest.LogCaptureFixture
) -> None:
    """The reply is cancelled; its end writes no row (no usage, no message) and logs no failure."""
    account = signup(http)
    hold = threading.Event()
    upstream.enqueue(TextReply(chunks=("first ", "second"), hold=hold))
    body = {"message": "a long one"}
    with (
        caplog.at_level(logging.INFO, logger="zyron"),
        http.stream("POST", "/chat", json=body, headers=account.headers) as reply,
    ):
        lines = reply.iter_lines()
        while next(lines) != "event: delta":
            pass
        with env.server.client() as other:
            deleted = delete_me(other, account.headers, {"password": PASSWORD})
        hold.set()
        rest = list(lines)
    assert deleted.status_code == 204, deleted.text
    assert "event: done" in rest, rest
    assert user_rows(env.server, account.id) == 0
    left = {name for name, ids in ids_in_tables(env.server).items() if account.id in ids}
    assert left == TOMBSTONES
    messages = [record.getMessage() for record in caplog.records]
    assert "final reply write failed" not in messages
    assert "reply not saved: its account was deleted" in messages


# --- Supabase users ----------------------------------------------------------------------------


def supabase(
    jwks: JwksServer, sub: uuid.UUID, *, omit: tuple[str, ...] = (), **claims: Any
) -> dict[str, str]:
    """The Authorization header of a Supabase token for `sub`, signed in at its `iat`."""
    if "iat" in claims and "amr" not in claims:
        claims["amr"] = [{"method": "password", "timestamp": claims["iat"]}]
    token = jwks.sign("ES256", {"sub": str(sub), **claims}, omit=omit)
    return {"Authorization": f"Bearer {token}"}


def test_a_supabase_users_data_goes_and_old_tokens_never_bring_it_back(
    http: httpx.Client, env: FilesEnv, jwks: JwksServer
) -> None:
    """No password needed; a token issued before is refused and makes no row, one after works."""
    sub = uuid.uuid4()
    now = int(time.time())
    before = supabase(jwks, sub, iat=now - 5)
    created = http.post("/sessions", json={"title": "supabase chat"}, headers=before)
    assert created.status_code == 201, created.text
    assert user_rows(env.server, sub) == 1

    assert delete_me(http, before).status_code == 204

    assert user_rows(env.server, sub) == 0
    moment = deleted_at(env.server, sub)
    assert moment is not None
    second = int(moment.timestamp())
    for headers in (
        before,
        supabase(jwks, sub, iat=second),  # the deletion's own second: not after it
        supabase(jwks, sub, omit=("iat", "amr")),
    ):
        for response in (http.get("/sessions", headers=headers), delete_me(http, headers)):
            body = assert_error(response, 401, "invalid_token")
            assert "deleted" in body["detail"], body
    assert user_rows(env.server, sub) == 0

    # Signing in again after the deletion gives a fresh, empty account. (Its `iat` is a past
    # second, as Supabase would write it: wait for the deletion's second to be over.)
    while time.time() < second + 1:
        time.sleep(0.05)
    # Refreshed after the deletion (a new `iat`) but of a sign-in before it (`amr`): an open
    # client refreshing its token does not bring the account back.
    refreshed = supabase(
        jwks, sub, iat=int(time.time()), amr=[{"method": "password", "timestamp": now - 5}]
    )
    assert (
        "deleted"
        in assert_error(http.get("/sessions", headers=refreshed), 401, "invalid_token")["detail"]
    )
    assert user_rows(env.server, sub) == 0
    after = supabase(jwks, sub, iat=int(time.time()))
    me = http.get("/auth/me", headers=after)
    assert me.status_code == 200, me.text
    assert me.json()["id"] == str(sub)
    assert http.get("/sessions", headers=after).json() == []
    assert user_rows(env.server, sub) == 1

    # Deleted again (a password in the body is ignored): the record moves to the new time.
    assert delete_me(http, after, {"password": "ignored"}).status_code == 204
    later = deleted_at(env.server, sub)
    assert later is not None
    assert later >= moment
    rows = env.server.query(
        "SELECT count(*) FROM deleted_accounts WHERE user_id = :u", u=env.server.id(sub)
    )
    assert rows[0][0] == 1
    assert_error(http.get("/sessions", headers=after), 401, "invalid_token")
    assert user_rows(env.server, sub) == 0


# --- every replica at once ---------------------------------------------------------------------

SECRET_KEY = "deletion-replicas-key-0123456789-abcdefghijklmnop"


@pytest.fixture
def replicas(
    postgres: PostgresServer,
    redis_server: RedisServer,
    jwks: JwksServer,
    upstream: FakeAnthropic,
    tmp_path: Path,
) -> Iterator[tuple[LiveServer, LiveServer]]:
    """Two servers on one Postgres database, sharing Redis (and the signing key)."""
    database = postgres.create_database()
    url = sqlalchemy_url(postgres.dsn(database, user=APP_ROLE))
    ADMIN_URLS[url] = sqlalchemy_url(postgres.dsn(database))
    common = {
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
        yield a, b


def refused_soon(client: httpx.Client, headers: dict[str, str]) -> httpx.Response:
    """GET /sessions until the replica stops admitting the token, for up to 5 s; the last answer.

    The deletion's announcement reaches another replica through Redis pub/sub, read by a task
    of its own: the request right after the DELETE may be served a moment before it is. Not
    told at all, the replica would admit the token from its cache for KNOWN_USERS_TTL_SECONDS
    (5 minutes), so the 5 s still tell a replica that hears from one that does not.
    """
    deadline = time.monotonic() + 5
    while True:
        response = client.get("/sessions", headers=headers)
        if response.status_code != 200 or time.monotonic() > deadline:
            return response
        time.sleep(0.02)


def test_a_deletion_on_one_replica_is_refused_at_once_on_the_other(
    replicas: tuple[LiveServer, LiveServer], jwks: JwksServer, redis_server: RedisServer
) -> None:
    """Both replicas admit the account from their cache; after the deletion on A, B refuses it
    as soon as it hears of it, not when its cache expires (a built-in account and a Supabase
    user). The replies' mirrors in Redis, which hold their text, go too."""
    a, b = replicas
    with a.client() as on_a, b.client() as on_b, Redis.from_url(redis_server.url) as redis:
        account = signup(on_a)
        reply = chat(on_b, account, {"message": "mirrored on the way"})["message"]["id"]
        assert redis.exists(reply_key(uuid.UUID(reply))) == 1
        sub = uuid.uuid4()
        external = supabase(jwks, sub, iat=int(time.time()) - 5)
        for headers in (account.headers, external):
            for client in (on_a, on_b):
                assert client.get("/sessions", headers=headers).status_code == 200

        assert delete_me(on_a, account.headers, {"password": PASSWORD}).status_code == 204
        assert_error(refused_soon(on_b, account.headers), 401, "invalid_token")
        assert redis.exists(reply_key(uuid.UUID(reply))) == 0

        assert delete_me(on_b, external).status_code == 204
        # The replica that deleted it forgot it itself: refused on the very next request.
        assert_error(on_b.get("/sessions", headers=external), 401, "invalid_token")
        assert_error(refused_soon(on_a, external), 401, "invalid_token")
    assert user_rows(a, account.id) == 0
    assert user_rows(a, sub) == 0


def test_password_guesses_count_as_sign_ins(tmp_path: Path) -> None:
    """Wrong passwords on DELETE /auth/me run into the sign-in limit; nothing is deleted."""
    settings = make_settings(tmp_path, rate_limit_enabled=True, login_email_rate="2 per 15 minutes")
    with live_server(settings) as server, server.client() as client:
        account = signup(client)
        for _ in range(2):
            wrong = delete_me(client, account.headers, {"password": "guess"})
            assert_error(wrong, 401, "invalid_credentials")
        limited = delete_me(client, account.headers, {"password": PASSWORD})
        assert_error(limited, 429, "rate_limited")
        assert "Retry-After" in limited.headers
        assert user_rows(server, account.id) == 1


def test_with_redis_down_the_deletion_still_happens(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The deletion has committed: 204, and a warning that the other replicas were not told."""
    try:
        redis = RedisServer.start(throwaway=True)
    except RedisUnavailable as exc:
        pytest.skip(f"no redis-server to stop: {exc}")
    try:
        settings = make_settings(tmp_path, redis_url=redis.url)
        with (
            live_server(settings) as server,
            server.client() as client,
            caplog.at_level(logging.WARNING, logger="zyron"),
        ):
            account = signup(client)
            redis.stop()

            response = delete_me(client, account.headers, {"password": PASSWORD})

            assert response.status_code == 204, response.text
            assert user_rows(server, account.id) == 0
            assert_error(client.get("/sessions", headers=account.headers), 401, "invalid_token")
            warned = [r for r in caplog.records if r.getMessage().startswith("account change")]
            assert [r.getMessage() for r in warned] == [
                "account change not announced to other replicas"
            ]
    finally:
        redis.stop()
