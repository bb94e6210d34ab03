"""GET /search over real HTTP, on SQLite (FTS5) and Postgres (tsvector): finding, ranking,
paging, isolation, the index kept current, and every refusal."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text, update

from tests.backends import Backend
from tests.fakes.anthropic_upstream import FakeAnthropic, TextReply
from tests.support import ADMIN_URLS, Account, LiveServer, as_user, signup, stream_chat
from zyron.db.engine import create_engine
from zyron.db.models import Message
from zyron.search import repository
from zyron.search.query import parse


def search(client: httpx.Client, account: Account, q: str, **params: Any) -> dict[str, Any]:
    """Search as the account and return the page."""
    response = client.get("/search", params={"q": q, **params}, headers=account.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"results", "next_before"}
    return body


def found_text(page: dict[str, Any]) -> list[str]:
    """Return each hit's snippet as plain text."""
    return ["".join(piece["text"] for piece in hit["snippet"]) for hit in page["results"]]


def chat(
    client: httpx.Client,
    upstream: FakeAnthropic,
    account: Account,
    message: str,
    reply: str,
    session_id: str | None = None,
) -> dict[str, Any]:
    """Send a message and get the given reply; return the `session` event's data."""
    upstream.enqueue(TextReply(chunks=(reply,)))
    body: dict[str, Any] = {"message": message}
    if session_id:
        body["session_id"] = session_id
    events = stream_chat(client, body, account.headers)
    assert events[-1].event in ("done", "title"), events
    data: dict[str, Any] = events[0].data
    return data


def test_words_phrases_or_and_exclusions_are_found(
    client: httpx.Client, upstream: FakeAnthropic
) -> None:
    """Both roles' messages are searched; stemming finds other forms of a word."""
    me = signup(client)
    first = chat(
        client,
        upstream,
        me,
        "How do lighthouses keep ships safe?",
        "The keeper runs the lamp all night.",
    )
    chat(client, upstream, me, "Tell me about sourdough starters", "Feed the starter flour daily.")

    page = search(client, me, "lighthouse")
    assert [hit["kind"] for hit in page["results"]] == ["message"]
    hit = page["results"][0]
    assert hit["role"] == "user"
    assert hit["session_id"] == first["session_id"]
    assert hit["message_id"] == first["user_message_id"]
    assert [p["text"].lower() for p in hit["snippet"] if p["match"]] == ["lighthouses"]
    assert "lighthouses keep ships safe" in found_text(page)[0]

    # Stemming: "running" finds "runs", in the assistant's reply.
    running = search(client, me, "running")
    assert [(h["role"], h["message_id"]) for h in running["results"]] == [
        ("assistant", first["assistant_message_id"])
    ]
    assert search(client, me, '"feed the starter"')["results"][0]["role"] == "assistant"
    assert search(client, me, '"starter the feed"')["results"] == []
    either = search(client, me, "lamp OR flour")
    assert len(either["results"]) == 2
    assert len(search(client, me, "starter -flour")["results"]) == 1  # the question only
    assert search(client, me, "volcano")["results"] == []


def test_a_nul_in_the_query_separates_words(client: httpx.Client, upstream: FakeAnthropic) -> None:
    """NUL, which no stored text holds (Postgres refuses it), splits words: never a 500."""
    account = signup(client)
    chat(client, upstream, account, "gardening tips", "Water the tomatoes.")
    assert found_text(search(client, account, "gardening\x00tips")) != []
    refused = client.get("/search", params={"q": "\x00"}, headers=account.headers)
    assert refused.status_code == 422, refused.text


def test_titles_are_found_and_kept_current(
    client: httpx.Client, server: LiveServer, upstream: FakeAnthropic, backend: Backend
) -> None:
    """A session's title is a hit of its own; renaming and deleting update the index."""
    me = signup(client)
    created = client.post("/sessions", json={"title": "Lisbon itinerary"}, headers=me.headers)
    session_id = created.json()["id"]
    hits = search(client, me, "itinerary")["results"]
    assert [(h["kind"], h["session_id"], h["message_id"], h["role"]) for h in hits] == [
        ("title", session_id, None, None)
    ]
    assert hits[0]["session_title"] == "Lisbon itinerary"

    renamed = client.patch(
        f"/sessions/{session_id}", json={"title": "Porto weekend"}, headers=me.headers
    )
    assert renamed.status_code == 200
    assert search(client, me, "itinerary")["results"] == []
    assert [h["kind"] for h in search(client, me, "porto")["results"]] == ["title"]

    chat(client, upstream, me, "Where to eat pastel de nata", "Try Manteigaria.", session_id)
    assert len(search(client, me, "manteigaria")["results"]) == 1
    assert client.delete(f"/sessions/{session_id}", headers=me.headers).status_code == 204
    assert search(client, me, "manteigaria")["results"] == []
    assert search(client, me, "porto")["results"] == []
    if backend.name == "sqlite":
        # The cascade fired the FTS5 triggers: the index itself holds nothing of them, so a
        # rowid used again later cannot inherit their words.
        async def indexed(db: Any) -> int:
            counts = [
                await db.scalar(
                    text(f"SELECT count(*) FROM {table} WHERE {table} MATCH :q"), {"q": q}
                )
                for table, q in (("messages_fts", "manteigaria"), ("chat_sessions_fts", "porto"))
            ]
            return sum(counts)

        assert _run(_in_user_transaction(server, me.id, indexed)) == 0


def test_other_users_messages_are_never_found(
    client: httpx.Client, upstream: FakeAnthropic
) -> None:
    """Two users with the same words: each finds only their own."""
    alice, bob = signup(client), signup(client)
    chat(client, upstream, alice, "quokka photography tips", "Get low.")
    chat(client, upstream, bob, "quokka habitats", "Rottnest Island.")
    mine = search(client, alice, "quokka")["results"]
    theirs = search(client, bob, "quokka")["results"]
    assert found_text({"results": mine}) == ["quokka photography tips"]
    assert found_text({"results": theirs}) == ["quokka habitats"]
    assert search(client, alice, "rottnest")["results"] == []


def test_paging_stays_stable_while_messages_arrive(
    client: httpx.Client, upstream: FakeAnthropic
) -> None:
    """Pages never repeat or skip a result, even when new matches arrive between them."""
    me = signup(client)
    first = chat(client, upstream, me, "zebra one", "ok")
    session = first["session_id"]
    ids = {"one": first["user_message_id"]}
    for word in ("two", "three zebra zebra", "four", "five zebra zebra zebra"):
        ids[word.split()[0]] = chat(client, upstream, me, f"zebra {word}", "ok", session)[
            "user_message_id"
        ]
    everything = search(client, me, "zebra", limit=100)["results"]
    # Ranked: more matches first; equal ranks newest first.
    assert [hit["message_id"] for hit in everything] == [
        ids[word] for word in ("five", "three", "four", "two", "one")
    ]

    seen: list[str] = []
    before = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"before": before} if before else {})
        page = search(client, me, "zebra", **params)
        seen += [hit["message_id"] for hit in page["results"]]
        pages += 1
        # New matches of every rank arrive mid-way: none disturbs the pages still to come.
        chat(client, upstream, me, f"zebra zebra zebra zebra late {pages}", "ok", session)
        chat(client, upstream, me, f"zebra late {pages}", "ok", session)
        before = page["next_before"]
        if before is None:
            break
    originals = [hit["message_id"] for hit in everything]
    assert [m for m in seen if m in originals] == originals
    assert len(seen) == len(set(seen))


@pytest.mark.parametrize(
    ("q", "reason"),
    [
        ("", "at least 1 character"),
        ("   ", "give a word"),
        ("-", "no word"),
        ("OR", "no word"),
        ('""', "no word"),
        ("-zebra", "no word"),
        ("- - !!", "no word"),
        ("x" * 257, "at most 256"),
    ],
)
def test_queries_with_nothing_to_find_are_422(
    client: httpx.Client, server: LiveServer, q: str, reason: str
) -> None:
    """Empty, too long, or only operators: a clear 422."""
    me = signup(client)
    response = client.get("/search", params={"q": q}, headers=me.headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"
    assert reason in response.json()["detail"]


@pytest.mark.parametrize("q", ["the and of", "the -zebra"])
def test_stop_words_alone_are_422_on_postgres(
    client: httpx.Client, upstream: FakeAnthropic, backend: Backend, q: str
) -> None:
    """Postgres drops stop words; with only those (and exclusions) there is nothing to look
    for, where `!zebra` alone would match nearly every message."""
    me = signup(client)
    chat(client, upstream, me, "the quick brown fox", "jumps")
    response = client.get("/search", params={"q": q}, headers=me.headers)
    if backend.name == "postgres":
        assert response.status_code == 422, response.text
        assert "too common" in response.json()["detail"]
    else:  # FTS5's tokenizer keeps every word
        assert response.status_code == 200


NOON = "2026-01-01T12:00:00+00:00"
ANY_ID = "00000000-0000-4000-8000-000000000000"


def forged(*fields: Any) -> str:
    """A cursor's encoding (base64 of a JSON list) around fields the server never wrote."""
    return base64.urlsafe_b64encode(json.dumps(list(fields)).encode()).decode().rstrip("=")


def test_bad_paging_and_no_account_are_refused(client: httpx.Client) -> None:
    """limit over the cap, a forged cursor, a missing q, or no token: clear errors."""
    me = signup(client)
    cases: tuple[tuple[dict[str, str | int], int], ...] = (
        ({"q": "a", "limit": 101}, 422),
        ({"q": "a", "limit": 0}, 422),
        ({"q": "a", "before": "not-a-cursor"}, 422),
        ({"q": "a", "before": "WzEsMiwzXQ"}, 422),  # base64 of [1,2,3]
        # Shaped like a cursor, but with what no cursor holds:
        ({"q": "a", "before": forged(1.0, NOON, "message", 5)}, 422),  # an id not a string
        ({"q": "a", "before": forged(1e300, NOON, "message", ANY_ID)}, 422),  # past float4
        ({"q": "a", "before": forged(1.0, "0001-01-01T00:00:00+23:59", "message", ANY_ID)}, 422),
        ({"q": "a", "before": forged(1.0, "2026-01-01T00:00:00", "message", ANY_ID)}, 422),
        ({"q": "a", "before": forged(True, NOON, "title", ANY_ID)}, 422),  # a boolean rank
        ({"q": "a", "before": forged(1.0, NOON, "file", ANY_ID)}, 422),  # another kind
        ({}, 422),
    )
    for params, status in cases:
        response = client.get("/search", params=params, headers=me.headers)
        assert response.status_code == status, (params, response.text)
        assert set(response.json()) == {"error", "detail"}
    assert client.get("/search", params={"q": "a"}).status_code == 401


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _in_user_transaction(server: LiveServer, user_id: uuid.UUID, work: Any) -> Any:
    return await as_user(server.settings.resolved_database_url, user_id, work)


def test_a_reply_is_indexed_once_saved_not_while_streaming(
    client: httpx.Client, server: LiveServer, upstream: FakeAnthropic
) -> None:
    """Progress writes of a streaming reply leave it out; its final save puts it in."""
    me = signup(client)
    sent = chat(client, upstream, me, "placeholder question", "placeholder answer")
    reply_id = uuid.UUID(sent["assistant_message_id"])

    async def set_reply(db: Any, **values: Any) -> None:
        await db.execute(update(Message).where(Message.id == reply_id).values(**values))

    async def as_streaming(db: Any) -> None:
        await set_reply(db, status="streaming", content="")

    async def progress(db: Any) -> None:
        await set_reply(db, content="half of a narwhal")

    async def saved(db: Any) -> None:
        await set_reply(db, content="half of a narwhal, then all of it", status="complete")

    _run(_in_user_transaction(server, me.id, as_streaming))
    _run(_in_user_transaction(server, me.id, progress))
    assert search(client, me, "narwhal")["results"] == []
    _run(_in_user_transaction(server, me.id, saved))
    assert [h["message_id"] for h in search(client, me, "narwhal")["results"]] == [str(reply_id)]
    # The old text left the index with the update: only the question still says it.
    assert [h["role"] for h in search(client, me, "placeholder")["results"]] == ["user"]


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_postgres_rls_alone_isolates_search(
    client: httpx.Client, server: LiveServer, upstream: FakeAnthropic
) -> None:
    """The search SQL with its owner filter removed, run for one user, finds only theirs."""
    alice, bob = signup(client), signup(client)
    chat(client, upstream, alice, "wombat burrows", "Deep ones.")
    chat(client, upstream, bob, "wombat cubes", "Square droppings.")
    unfiltered = text(
        repository._POSTGRES.replace("m.user_id = :user_id AND ", "").replace(
            "s.user_id = :user_id AND ", ""
        )
    )
    assert ":user_id" not in str(unfiltered)
    wombat = {
        "q": "wombat",
        "limit": 50,
        "has_cursor": False,
        "c_rank": 0.0,
        "c_at": None,
        "c_kind": "",
        "c_id": None,
        "marks": repository.MARKS,
        "headline": repository._HEADLINE,
    }

    async def unfiltered_search(db: Any) -> list[str]:
        rows = await db.execute(unfiltered, wombat)
        return [row.marked.replace("\x02", "").replace("\x03", "") for row in rows]

    assert _run(_in_user_transaction(server, alice.id, unfiltered_search)) == ["wombat burrows"]

    async def admin_sees_both() -> int:
        engine = create_engine(ADMIN_URLS[server.settings.resolved_database_url])
        try:
            async with engine.connect() as conn:
                return len((await conn.execute(unfiltered, wombat)).all())
        finally:
            await engine.dispose()

    assert _run(admin_sees_both()) == 2  # the rows are there: RLS is what hid Bob's


def test_the_fts5_expression_quotes_every_term() -> None:
    """No FTS5 operator or column filter can come from the query text."""
    query = parse('NEAR(a b) content:x "say ""hi""" OR -y* AND', 256)
    assert query.fts5() == (
        '(("NEAR(a") AND ("b)") AND ("content:x") AND ("say") AND ("hi") AND ("AND")) NOT ("y*")'
    )
    assert parse("cats OR dogs birds", 256).fts5() == '("cats" OR "dogs") AND ("birds")'
