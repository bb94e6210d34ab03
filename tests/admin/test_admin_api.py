"""The /admin routes on SQLite and Postgres: who sees them, users, usage, limit overrides."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.admin.support import ADMIN_ROUTES, assert_error, make_admin
from tests.backends import Backend
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.portability.conftest import import_file
from tests.portability.test_refusals import _with_file
from tests.support import PASSWORD, Account, LiveServer, signup


def chat(client: httpx.Client, account: Account, message: str = "Hello") -> httpx.Response:
    """POST /chat without streaming, as `account`."""
    return client.post("/chat", json={"message": message, "stream": False}, headers=account.headers)


def unknown_path(client: httpx.Client, method: str, headers: dict[str, str]) -> httpx.Response:
    """What a path that does not exist answers."""
    return client.request(method, "/admin-but-no-such-path", headers=headers)


# --- who sees the routes ---------------------------------------------------------------------


def test_non_admins_and_guests_get_the_404_of_a_path_that_does_not_exist(
    server: LiveServer, client: httpx.Client
) -> None:
    """Every route, with a valid body, an invalid one, or the wrong method: as a guest, a user,
    a disabled admin or with a bad token, the answer is an unknown path's, byte for byte."""
    user, target = signup(client), signup(client)
    disabled_admin = make_admin(server, client)
    server.query(
        "UPDATE users SET disabled_at = :now WHERE id = :id",
        now=datetime.now(UTC),
        id=server.id(disabled_admin.id),
    )
    callers = {
        "guest": {},
        "user": user.headers,
        "disabled admin": disabled_admin.headers,
        "bad token": {"Authorization": "Bearer not-a-token"},
        "not bearer": {"Authorization": "Basic abc"},
    }
    before = server.query("SELECT count(*) FROM limit_overrides")
    for name, headers in callers.items():
        expected = unknown_path(client, "GET", headers)
        assert expected.status_code == 404
        for method, template, body in ADMIN_ROUTES:
            path = template.format(user_id=target.id)
            for variant in (body, "not json", None):
                kwargs: dict[str, Any] = {"headers": headers}
                if isinstance(variant, dict):
                    kwargs["json"] = variant
                elif variant is not None:
                    kwargs["content"] = variant
                    kwargs["headers"] = {**headers, "Content-Type": "application/json"}
                answer = client.request(method, path, **kwargs)
                assert (answer.status_code, answer.content) == (
                    404,
                    expected.content,
                ), (name, method, path, answer.text)
                assert answer.headers.get("allow") is None, (name, method, path)
            # A method the route does not take is no 405 either, nor a slash more a 307.
            wrong = client.request("PUT", path, headers=headers)
            assert (wrong.status_code, wrong.content) == (404, expected.content), (name, path)
            slashed = client.request(method, f"{path}/", headers=headers)
            assert (slashed.status_code, slashed.content) == (404, expected.content), path
    # Query parameters that would be refused for an admin: still the same 404.
    for query in ("limit=0", "start=not-a-date", "top=1000"):
        answer = client.get(f"/admin/users?{query}", headers=user.headers)
        assert (answer.status_code, answer.content) == (404, expected.content)
    assert server.query("SELECT count(*) FROM limit_overrides") == before
    assert server.query(
        "SELECT disabled_at FROM users WHERE id = :id", id=server.id(target.id)
    ) == [(None,)]


def test_an_admin_reaches_every_route(server: LiveServer, client: httpx.Client) -> None:
    """The same requests as an admin: answered by the routes themselves."""
    admin, target = make_admin(server, client), signup(client)
    for method, template, body in ADMIN_ROUTES:
        if method == "PATCH" and template == "/admin/users/{user_id}":
            body = {"role": "user"}  # leaves the target enabled
        answer = client.request(
            method, template.format(user_id=target.id), json=body, headers=admin.headers
        )
        assert answer.status_code == 200, (method, template, answer.text)
    wrong = client.put(f"/admin/users/{target.id}", headers=admin.headers)
    assert wrong.status_code == 405
    assert set(wrong.headers["allow"].split(", ")) == {"GET", "PATCH"}


def test_promotion_and_demotion_count_at_once(server: LiveServer, client: httpx.Client) -> None:
    """The role is read from the row: promoted through the API, a user's same token opens the
    routes on its next request; demoted, it stops at once (nothing is taken from a claim)."""
    admin, user = make_admin(server, client), signup(client)
    assert client.get("/admin/users", headers=user.headers).status_code == 404  # now cached
    promoted = client.patch(
        f"/admin/users/{user.id}", json={"role": "admin"}, headers=admin.headers
    )
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["role"] == "admin"
    assert client.get("/admin/users", headers=user.headers).status_code == 200
    demoted = client.patch(f"/admin/users/{user.id}", json={"role": "user"}, headers=admin.headers)
    assert demoted.json()["role"] == "user"
    assert client.get("/admin/users", headers=user.headers).status_code == 404
    # The user's own routes never changed.
    assert client.get("/sessions", headers=user.headers).status_code == 200


# --- users -----------------------------------------------------------------------------------


def test_an_admin_lists_finds_and_pages_users_with_their_usage(
    server: LiveServer, client: httpx.Client, upstream: FakeAnthropic
) -> None:
    """Filters by email, role and disabled mark; pages back with `before`; usage per user is
    what the user's own GET /usage says."""
    admin = make_admin(server, client)
    tag = uuid.uuid4().hex[:8]
    users = [signup(client, f"find-{tag}-{n}@example.com") for n in range(3)]
    assert chat(client, users[0]).status_code == 200
    assert chat(client, users[0], "Again").status_code == 200
    found = client.get("/admin/users", params={"q": f"FIND-{tag}"}, headers=admin.headers)
    assert found.status_code == 200, found.text
    assert [u["id"] for u in found.json()] == [str(u.id) for u in reversed(users)]
    own = client.get("/usage", headers=users[0].headers).json()["days"]
    usage = found.json()[-1]["usage"]
    assert usage["replies"] == sum(day["replies"] for day in own) == 2
    for kind in ("input_tokens", "output_tokens"):
        assert usage[kind] == sum(day[kind] for day in own) > 0
    assert found.json()[0]["usage"]["replies"] == 0
    assert found.json()[0] | {"usage": None} == {
        "id": str(users[2].id),
        "email": users[2].email,
        "display_name": None,
        "created_at": found.json()[0]["created_at"],
        "role": "user",
        "disabled": False,
        "disabled_at": None,
        "usage": None,
    }

    first = client.get(
        "/admin/users", params={"q": f"find-{tag}", "limit": 2}, headers=admin.headers
    ).json()
    rest = client.get(
        "/admin/users",
        params={"q": f"find-{tag}", "limit": 2, "before": first[-1]["id"]},
        headers=admin.headers,
    ).json()
    assert [u["id"] for u in first + rest] == [str(u.id) for u in reversed(users)]

    client.patch(f"/admin/users/{users[1].id}", json={"disabled": True}, headers=admin.headers)
    disabled = client.get(
        "/admin/users", params={"q": f"find-{tag}", "disabled": True}, headers=admin.headers
    ).json()
    assert [u["id"] for u in disabled] == [str(users[1].id)]
    enabled = client.get(
        "/admin/users", params={"q": f"find-{tag}", "disabled": False}, headers=admin.headers
    ).json()
    assert {u["id"] for u in enabled} == {str(users[0].id), str(users[2].id)}
    admins = client.get("/admin/users", params={"role": "admin"}, headers=admin.headers).json()
    assert str(admin.id) in {u["id"] for u in admins}
    assert all(u["role"] == "admin" for u in admins)
    # A pattern's wildcards are taken literally.
    assert client.get("/admin/users", params={"q": "%"}, headers=admin.headers).json() == []

    one = client.get(f"/admin/users/{users[0].id}", headers=admin.headers)
    assert one.json()["usage"] == usage


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"limit": 0}, 422, "validation_error"),
        ({"limit": 201}, 422, "validation_error"),
        ({"role": "owner"}, 422, "validation_error"),
        ({"disabled": "maybe"}, 422, "validation_error"),
        ({"before": "not-a-uuid"}, 422, "validation_error"),
        ({"before": str(uuid.uuid4())}, 404, "not_found"),
        ({"q": "x" * 321}, 422, "validation_error"),
        ({"q": "a\x00b"}, 422, "validation_error"),  # Postgres text holds no NUL
    ],
)
def test_bad_list_parameters_are_refused(
    server: LiveServer, client: httpx.Client, params: dict[str, Any], status: int, code: str
) -> None:
    """Each named in a clear JSON error."""
    admin = make_admin(server, client)
    assert_error(client.get("/admin/users", params=params, headers=admin.headers), status, code)


def test_unknown_users_and_bad_changes_are_refused_and_change_nothing(
    server: LiveServer, client: httpx.Client
) -> None:
    """404 for an id nobody has, 422 for a body that is not a change, and the row is as it was."""
    admin, user = make_admin(server, client), signup(client)
    nobody = uuid.uuid4()
    for method, template, body in ADMIN_ROUTES:
        if "{user_id}" in template:
            answer = client.request(
                method, template.format(user_id=nobody), json=body, headers=admin.headers
            )
            assert assert_error(answer, 404, "not_found") == "No such user."
    assert_error(
        client.get("/admin/users/not-a-uuid", headers=admin.headers), 422, "validation_error"
    )
    bad: tuple[Any, ...] = (
        {"role": "owner"},
        {"disabled": "yes"},
        {"disabled": 1},
        {"role": None, "disabled": "true"},
        [],
    )
    for change in bad:
        answer = client.patch(f"/admin/users/{user.id}", json=change, headers=admin.headers)
        assert_error(answer, 422, "validation_error")
    answer = client.patch(
        f"/admin/users/{user.id}",
        content=b"{not json",
        headers={**admin.headers, "Content-Type": "application/json"},
    )
    assert_error(answer, 422, "invalid_json")
    assert server.query(
        "SELECT role, disabled_at FROM users WHERE id = :id", id=server.id(user.id)
    ) == [("user", None)]
    # An empty change changes nothing and answers the user.
    same = client.patch(f"/admin/users/{user.id}", json={}, headers=admin.headers)
    assert same.status_code == 200
    assert same.json()["role"] == "user"


def test_a_disabled_user_is_refused_everywhere_until_enabled(
    server: LiveServer, client: httpx.Client
) -> None:
    """Their tokens (even cached as admitted), logins and refreshes: 403 account_disabled. Once
    enabled, the same access and refresh tokens work again."""
    admin, user = make_admin(server, client), signup(client)
    assert client.get("/sessions", headers=user.headers).status_code == 200  # cached
    answer = client.patch(f"/admin/users/{user.id}", json={"disabled": True}, headers=admin.headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["disabled"] is True
    assert answer.json()["disabled_at"] is not None
    for response in (
        client.get("/sessions", headers=user.headers),
        client.post("/chat", json={"message": "hi", "stream": False}, headers=user.headers),
        client.get("/auth/me", headers=user.headers),
        client.post("/auth/login", json={"email": user.email, "password": PASSWORD}),
        client.post("/auth/refresh", json={"refresh_token": user.refresh_token}),
    ):
        assert_error(response, 403, "account_disabled")
    # A wrong password still says only that.
    wrong = client.post("/auth/login", json={"email": user.email, "password": "wrong-password"})
    assert_error(wrong, 401, "invalid_credentials")
    # Disabling again keeps the first date.
    again = client.patch(f"/admin/users/{user.id}", json={"disabled": True}, headers=admin.headers)
    assert again.json()["disabled_at"] == answer.json()["disabled_at"]

    enabled = client.patch(
        f"/admin/users/{user.id}", json={"disabled": False}, headers=admin.headers
    )
    assert enabled.json()["disabled"] is False
    assert client.get("/sessions", headers=user.headers).status_code == 200
    refreshed = client.post("/auth/refresh", json={"refresh_token": user.refresh_token})
    assert refreshed.status_code == 200, refreshed.text
    assert (
        client.post("/auth/login", json={"email": user.email, "password": PASSWORD}).status_code
        == 200
    )


# --- lockout: a server of its own, so the admins are counted exactly ----------------------


@pytest.fixture
def lone(
    backend: Backend, data_dir: Path, upstream: FakeAnthropic
) -> Iterator[tuple[LiveServer, httpx.Client]]:
    """A server with an empty database of its own."""
    with backend.claude_server(data_dir, upstream) as running, running.client() as http:
        yield running, http


def test_the_last_admin_cannot_be_demoted_or_disabled_nor_an_admin_disable_themselves(
    lone: tuple[LiveServer, httpx.Client],
) -> None:
    """409 admin_lockout, and nothing changed; with a second admin, demoting yourself works."""
    server, client = lone
    admin = make_admin(server, client)
    me = f"/admin/users/{admin.id}"
    assert_error(
        client.patch(me, json={"role": "user"}, headers=admin.headers), 409, "admin_lockout"
    )
    detail = assert_error(
        client.patch(me, json={"disabled": True}, headers=admin.headers), 409, "admin_lockout"
    )
    assert "your own account" in detail
    assert server.query("SELECT role, disabled_at FROM users") == [("admin", None)]

    other = make_admin(server, client)
    assert_error(
        client.patch(me, json={"disabled": True}, headers=admin.headers), 409, "admin_lockout"
    )
    # The other admin is the last enabled one once this one is disabled.
    assert (
        client.patch(
            f"/admin/users/{admin.id}", json={"disabled": True}, headers=other.headers
        ).status_code
        == 200
    )
    assert_error(
        client.patch(f"/admin/users/{other.id}", json={"role": "user"}, headers=other.headers),
        409,
        "admin_lockout",
    )
    assert (
        client.patch(
            f"/admin/users/{admin.id}", json={"disabled": False}, headers=other.headers
        ).status_code
        == 200
    )
    demoted = client.patch(f"/admin/users/{other.id}", json={"role": "user"}, headers=other.headers)
    assert demoted.status_code == 200
    assert demoted.json()["role"] == "user"
    assert client.get("/admin/users", headers=other.headers).status_code == 404


def test_usage_across_users_by_day_and_model(
    lone: tuple[LiveServer, httpx.Client],
) -> None:
    """The report's rows are the users' own GET /usage summed; the costliest users first;
    filters and date ranges hold, and bad ranges are refused."""
    server, client = lone
    admin = make_admin(server, client)
    heavy, light = signup(client), signup(client)
    for _ in range(3):
        assert chat(client, heavy, "Tell me more, please, in a long answer").status_code == 200
    assert chat(client, light).status_code == 200
    report = client.get("/admin/usage", headers=admin.headers)
    assert report.status_code == 200, report.text
    body = report.json()
    today = datetime.now(UTC).date()
    assert (body["start"], body["end"]) == (str(today - timedelta(days=29)), str(today))
    own = [client.get("/usage", headers=u.headers).json()["days"] for u in (heavy, light)]
    kinds = ("input_tokens", "output_tokens", "cache_read_input_tokens", "replies")
    assert [(row["day"], row["users"]) for row in body["days"]] == [(str(today), 2)]
    for kind in kinds:
        expected = sum(row[kind] for days in own for row in days)
        assert body["days"][0][kind] == body["totals"][kind] == expected, kind
    assert body["totals"]["replies"] == 4
    assert [u["user_id"] for u in body["top_users"]] == [str(heavy.id), str(light.id)]
    assert body["top_users"][0]["replies"] == 3
    assert body["top_users"][0]["email"] == heavy.email

    only = client.get(
        "/admin/usage", params={"user_id": str(light.id), "top": 1}, headers=admin.headers
    ).json()
    assert only["totals"]["replies"] == 1
    assert [u["user_id"] for u in only["top_users"]] == [str(light.id)]
    model = body["days"][0]["model"]
    other_model = client.get(
        "/admin/usage", params={"model": model + "-none"}, headers=admin.headers
    ).json()
    assert other_model["days"] == []
    assert other_model["totals"]["replies"] == 0
    past = client.get(
        "/admin/usage",
        params={"start": str(today - timedelta(days=400)), "end": str(today - timedelta(days=40))},
        headers=admin.headers,
    ).json()
    assert past["days"] == []
    assert past["top_users"] == []

    for params in (
        {"start": str(today), "end": str(today - timedelta(days=1))},
        {"start": str(today - timedelta(days=366)), "end": str(today)},
        {"start": "2026-02-30"},
        {"end": "yesterday"},
        {"top": 0},
        {"top": 101},
        {"user_id": "nobody"},
        {"start": "0001-01-01"},
    ):
        answer = client.get("/admin/usage", params=params, headers=admin.headers)
        assert_error(answer, 422, "validation_error")
    # A year back, both days included, is the longest range.
    longest = {"start": str(today - timedelta(days=365)), "end": str(today)}
    assert client.get("/admin/usage", params=longest, headers=admin.headers).status_code == 200
    assert (
        client.get("/admin/usage", params={"end": "0001-01-05"}, headers=admin.headers).status_code
        == 200
    )


# --- limit overrides: a server with limits on ----------------------------------------------


@pytest.fixture
def limited(
    backend: Backend, data_dir: Path, upstream: FakeAnthropic
) -> Iterator[tuple[LiveServer, httpx.Client]]:
    """A server with rate limits on (generous rates), a token quota and a storage quota."""
    with (
        backend.claude_server(
            data_dir,
            upstream,
            rate_limit_enabled=True,
            user_chat_rate="1000/hour",
            signup_ip_rate="1000/hour",
            login_ip_rate="1000/hour",
            user_daily_tokens=1_000_000,
            max_storage_bytes_per_user=1_000_000,
        ) as running,
        running.client() as http,
    ):
        yield running, http


def upload(client: httpx.Client, account: Account, size: int) -> httpx.Response:
    """Upload a text file of `size` bytes."""
    files = {"file": ("notes.txt", b"a" * size, "text/plain")}
    return client.post("/files", files=files, headers=account.headers)


def test_overrides_change_what_the_user_is_allowed(
    limited: tuple[LiveServer, httpx.Client],
) -> None:
    """A token quota, a money budget and a storage quota set for one user hold them (and only
    them); null goes back to the setting, DELETE to every setting."""
    server, client = limited
    admin, user, neighbour = make_admin(server, client), signup(client), signup(client)
    limits = f"/admin/users/{user.id}/limits"
    start = client.get(limits, headers=admin.headers).json()
    assert start["overrides"] == dict.fromkeys(
        ("daily_tokens", "daily_usd", "monthly_usd", "storage_bytes")
    )
    assert (
        start["defaults"]
        == start["effective"]
        == {
            "daily_tokens": 1_000_000,
            "daily_usd": 0.0,
            "monthly_usd": 0.0,
            "storage_bytes": 1_000_000,
        }
    )
    assert start["updated_at"] is None
    assert chat(client, user).status_code == 200

    set_tokens = client.patch(limits, json={"daily_tokens": 10}, headers=admin.headers)
    assert set_tokens.status_code == 200, set_tokens.text
    assert set_tokens.json()["effective"]["daily_tokens"] == 10
    assert set_tokens.json()["overrides"]["daily_tokens"] == 10
    assert set_tokens.json()["updated_at"] is not None
    refused = chat(client, user)
    assert "of 10 tokens" in assert_error(refused, 429, "quota_exceeded")
    assert client.get("/usage", headers=user.headers).json()["quota"]["daily_tokens"] == 10
    assert chat(client, neighbour).status_code == 200  # only this user

    # 0 means what the setting's 0 means: no quota at all.
    assert client.patch(limits, json={"daily_tokens": 0}, headers=admin.headers).status_code == 200
    assert chat(client, user).status_code == 200
    assert client.get("/usage", headers=user.headers).json()["quota"]["daily_tokens"] is None

    # A money budget smaller than any reply: the worst case does not fit.
    budget = client.patch(limits, json={"daily_usd": 0.000001}, headers=admin.headers)
    assert budget.json()["overrides"]["daily_usd"] == 0.000001
    detail = assert_error(chat(client, user), 429, "quota_exceeded")
    assert "USER_DAILY_USD, overridden for this account" in detail
    assert client.patch(limits, json={"daily_usd": None}, headers=admin.headers).status_code == 200
    assert chat(client, user).status_code == 200

    assert upload(client, user, 100).status_code == 201
    files = client.patch(limits, json={"storage_bytes": 150}, headers=admin.headers).json()
    # Fields left out stayed as they were.
    assert files["overrides"] == {
        "daily_tokens": 0,
        "daily_usd": None,
        "monthly_usd": None,
        "storage_bytes": 150,
    }
    detail = assert_error(upload(client, user, 100), 413, "storage_quota_exceeded")
    assert "MAX_STORAGE_BYTES_PER_USER, overridden for this account" in detail
    # An import's files count against the same override.
    notes = _with_file(b"n" * 100)
    detail = assert_error(import_file(client, user, notes), 413, "storage_quota_exceeded")
    assert "MAX_STORAGE_BYTES_PER_USER, overridden for this account" in detail
    assert upload(client, neighbour, 100).status_code == 201

    cleared = client.delete(limits, headers=admin.headers)
    assert cleared.status_code == 200
    assert cleared.json()["overrides"] == start["overrides"]
    assert cleared.json()["effective"] == start["defaults"]
    assert upload(client, user, 100).status_code == 201
    assert server.count("limit_overrides") == 0


@pytest.mark.parametrize(
    "body",
    [
        {"daily_tokens": -1},
        {"daily_tokens": 10**16},
        {"daily_tokens": "10"},
        {"daily_tokens": 1.5},
        {"daily_usd": -0.01},
        {"daily_usd": "5"},
        {"monthly_usd": 10**7},
        {"storage_bytes": True},
        {"storage_bytes": 2**51},
        [1],
    ],
)
def test_bad_overrides_are_refused_and_change_nothing(
    limited: tuple[LiveServer, httpx.Client], body: Any
) -> None:
    """422 naming the field; the user's overrides are as they were."""
    server, client = limited
    admin, user = make_admin(server, client), signup(client)
    limits = f"/admin/users/{user.id}/limits"
    assert (
        client.patch(limits, json={"monthly_usd": 12.5}, headers=admin.headers).status_code == 200
    )
    before = client.get(limits, headers=admin.headers).json()
    assert_error(client.patch(limits, json=body, headers=admin.headers), 422, "validation_error")
    assert client.get(limits, headers=admin.headers).json() == before
