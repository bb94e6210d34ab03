"""What a hostile or odd import cannot do (too many messages, dates past the limits, a forged
signature), and what the export guarantees (one snapshot, no transaction held for storage)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import sys
import uuid
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.fakes.anthropic_upstream import FakeAnthropic, ThinkingReply
from tests.files.samples import pdf
from tests.portability.conftest import (
    IMPORT_CAPS,
    Env,
    as_json,
    import_file,
    imported,
    sessions,
    zipped,
)
from tests.portability.samples import chatgpt_conversation, claude_export
from tests.portability.test_refusals import zyron_document
from tests.support import ADMIN_URLS, Account, stream_chat
from zyron.db.engine import create_engine, create_sessionmaker
from zyron.db.types import utcnow
from zyron.db.unit_of_work import unit_of_work
from zyron.errors import ImportConflict
from zyron.files.deps import StorageWork
from zyron.files.storage import LocalStorage
from zyron.portability import export, service
from zyron.portability import repository as repo

AT = "2026-01-01T00:00:00Z"
CAP = IMPORT_CAPS["max_import_messages"]


def _message(message_id: str, parent: str | None, **extra: Any) -> dict[str, Any]:
    return {
        "id": message_id,
        "parent_id": parent,
        "role": "user",
        "content": "Hi",
        "parts": [{"type": "text", "text": "Hi"}],
        "status": "complete",
        "created_at": AT,
        **extra,
    }


def _refused(
    http: httpx.Client, env: Env, account: Account, data: bytes, status: int, error: str
) -> str:
    """Import, expect the JSON error, check nothing changed; return the detail."""
    before = env.snapshot()
    response = import_file(http, account, data)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"] == error, body
    assert env.snapshot() == before
    detail: str = body["detail"]
    return detail


# MAX_IMPORT_MESSAGES: counted from the parsed JSON, before any message is validated, so the
# messages below are junk: validated first, they would be a 422, not the 413.
@pytest.mark.parametrize("kind", ["zyron", "chatgpt", "claude"])
def test_too_many_messages_are_refused_before_validation(
    http: httpx.Client, env: Env, alice: Account, kind: str
) -> None:
    """One message past the cap, spread over two conversations: 413 naming the setting."""
    half, rest = CAP // 2, CAP - CAP // 2 + 1
    junk: list[Any] = [{"junk": True}]
    document: Any
    if kind == "zyron":
        document = zyron_document(junk * half, junk * rest)
    elif kind == "chatgpt":
        document = [
            {"id": f"c{i}", "mapping": {f"n{j}": {"junk": True} for j in range(count)}}
            for i, count in enumerate((half, rest))
        ]
    else:
        document = [
            {"uuid": f"c{i}", "chat_messages": junk * count} for i, count in enumerate((half, rest))
        ]
    detail = _refused(http, env, alice, as_json(document), 413, "payload_too_large")
    assert "MAX_IMPORT_MESSAGES" in detail
    assert f"{CAP + 1} messages" in detail


def test_messages_up_to_the_cap_import(http: httpx.Client, alice: Account) -> None:
    """Exactly the cap is fine: one chain of CAP messages."""
    messages = [_message(f"00000000-0000-4000-8000-{0:012d}", None)]
    for index in range(1, CAP):
        messages.append(_message(f"00000000-0000-4000-8000-{index:012d}", messages[-1]["id"]))
    summary = imported(http, alice, as_json(zyron_document(messages)))
    assert (summary["sessions_created"], summary["messages_created"]) == (1, CAP)


# Dates: 1970..9000 in UTC; past that a tick or a zone's offset would overflow (a 500).
def test_claude_parent_at_the_end_of_time_is_a_422(
    http: httpx.Client, env: Env, alice: Account
) -> None:
    """A parent at 9999-12-31T23:59:59.999999Z with an older child: refused, not a 500."""
    document = claude_export()
    document[0]["chat_messages"][0]["created_at"] = "9999-12-31T23:59:59.999999Z"
    detail = _refused(http, env, alice, as_json(document), 422, "invalid_import")
    assert "file[0].chat_messages[0].created_at" in detail
    assert "1970 to 9000" in detail


@pytest.mark.parametrize(
    "moment", ["0001-01-01T00:00:00+01:00", "1969-12-31T23:59:59Z", "9001-01-01T00:00:00Z"]
)
def test_zyron_times_out_of_range_are_a_422(
    http: httpx.Client, env: Env, alice: Account, moment: str
) -> None:
    """Year 1 at +01:00 (before UTC's year 1), before 1970, after 9000: refused, path named."""
    document = zyron_document([_message(str(uuid.uuid4()), None, created_at=moment)])
    detail = _refused(http, env, alice, as_json(document), 422, "invalid_import")
    assert "file.sessions[0].messages[0].created_at" in detail


def test_zyron_time_with_a_zone_is_kept_in_utc(http: httpx.Client, alice: Account) -> None:
    """A time with an offset inside the range is accepted, as the same instant in UTC."""
    document = zyron_document(
        [_message(str(uuid.uuid4()), None, created_at="2026-01-01T01:30:00+01:00")]
    )
    imported(http, alice, as_json(document))
    chat = sessions(http, alice)[0]
    page = http.get(f"/sessions/{chat['id']}/messages", headers=alice.headers).json()
    assert page[0]["created_at"].startswith("2026-01-01T00:30:00")


@pytest.mark.parametrize("field", ["create_time", "update_time", "node"])
def test_chatgpt_times_out_of_range_are_a_422(
    http: httpx.Client, env: Env, alice: Account, field: str
) -> None:
    """A ChatGPT time in the year 9999 (or before 1970): refused, path named."""
    conversation = chatgpt_conversation("conv-far")
    if field == "node":
        node_id, node = next(
            (k, v)
            for k, v in conversation["mapping"].items()
            if v["message"] is not None and v["message"]["author"]["role"] == "user"
        )
        node["message"]["create_time"] = -1.0
        where = f"file[0].mapping.{node_id}.message.create_time"
    else:
        conversation[field] = 253_402_300_799.0  # 9999-12-31T23:59:59Z
        where = f"file[0].{field}"
    detail = _refused(http, env, alice, as_json([conversation]), 422, "invalid_import")
    assert where in detail


# Reasoning signatures: kept only under this server's seal, over unchanged thinking.
def _thinking_export(http: httpx.Client, account: Account, upstream: FakeAnthropic) -> bytes:
    upstream.enqueue(ThinkingReply(thinking=("Hmm.",), chunks=("Yes.",), signature="sig-1"))
    events = stream_chat(
        http,
        {"message": "Sure?", "model": "claude-haiku-4-5", "reasoning": {"budget_tokens": 2048}},
        account.headers,
    )
    assert events[-1].event == "done", events[-1].data
    response = http.get("/export", headers=account.headers)
    assert response.status_code == 200
    return response.content


def _edited(body: bytes, change: Any) -> bytes:
    """The zip with its document changed by `change(reasoning part)`."""
    source = zipfile.ZipFile(io.BytesIO(body))
    document = json.loads(source.read("zyron-export.json"))
    for chat in document["sessions"]:
        for message in chat["messages"]:
            for part in message["parts"]:
                if part["type"] == "reasoning":
                    change(part)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name in source.namelist():
            data = source.read(name)
            archive.writestr(name, json.dumps(document) if name == "zyron-export.json" else data)
    return out.getvalue()


def _stored_reasoning(env: Env, account: Account) -> list[dict[str, Any]]:
    rows = env.server.query(
        "SELECT parts FROM messages WHERE user_id = :u AND role = 'assistant'",
        u=env.server.id(account.id),
    )
    found = []
    for (parts,) in rows:
        parts = json.loads(parts) if isinstance(parts, str) else parts
        found += [p for p in parts if p["type"] == "reasoning"]
    return found


def _no_seal(part: dict[str, Any]) -> None:
    del part["seal"]


def _other_seal(part: dict[str, Any]) -> None:
    part["seal"] = "0" * 64


def _edited_text(part: dict[str, Any]) -> None:
    part["text"] = "Edited thinking."


def _edited_signature(part: dict[str, Any]) -> None:
    part["signature"] = "sig-forged"


@pytest.mark.parametrize("change", [_no_seal, _other_seal, _edited_text, _edited_signature])
def test_unsealed_signatures_are_dropped(
    http: httpx.Client,
    env: Env,
    alice: Account,
    bob: Account,
    upstream: FakeAnthropic,
    change: Any,
) -> None:
    """Another server's file (no seal, another's) or an edited one: the thinking is kept as
    text, its signature dropped, so it is never sent back to the provider."""
    body = _thinking_export(http, alice, upstream)
    imported(http, bob, _edited(body, change))
    [part] = _stored_reasoning(env, bob)
    assert "signature" not in part
    assert "seal" not in part
    assert part["text"] == ("Edited thinking." if change is _edited_text else "Hmm.")


def test_sealed_signatures_are_kept_and_sent_back(
    http: httpx.Client, env: Env, alice: Account, bob: Account, upstream: FakeAnthropic
) -> None:
    """This server's export, unchanged: the signature is stored (not the seal) and the next
    reply with thinking sends the block back as it was signed."""
    body = _thinking_export(http, alice, upstream)
    imported(http, bob, body)
    [part] = _stored_reasoning(env, bob)
    assert (part["signature"], "seal" in part) == ("sig-1", False)
    chat = sessions(http, bob)[0]
    upstream.enqueue(ThinkingReply(thinking=("More.",), chunks=("Still yes.",), signature="s2"))
    events = stream_chat(
        http,
        {"message": "Really?", "session_id": chat["id"], "reasoning": {"budget_tokens": 2048}},
        bob.headers,
    )
    assert events[-1].event == "done", events[-1].data
    sent = upstream.requests[-1].body["messages"][1]["content"]
    assert {"type": "thinking", "thinking": "Hmm.", "signature": "sig-1"} in sent


# In-process, on the server's database: the SQL the routes run, with real errors.
def _claims(account: Account) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(account.access_token, options={"verify_signature": False})
    return claims


@asynccontextmanager
async def _database(env: Env, *, owner: bool = False) -> AsyncIterator[Any]:
    url = env.server.settings.resolved_database_url
    engine = create_engine(ADMIN_URLS.get(url, url) if owner else url)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


def _session_row(user_id: uuid.UUID, client_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "user_id": user_id,
        "title": "Imported",
        "title_pending": False,
        "model": None,
        "system_prompt": None,
        "created_at": utcnow(),
        "updated_at": utcnow(),
        "client_id": client_id,
        **extra,
    }


def test_only_a_taken_key_is_an_import_conflict(env: Env, alice: Account) -> None:
    """The session key's unique index: ImportConflict. A foreign key (the account gone) or
    another unique column: the IntegrityError itself, a 500, not a 409."""

    async def add(rows: list[dict[str, Any]]) -> None:
        async with _database(env, owner=True) as sessionmaker, unit_of_work(sessionmaker) as db:
            await repo.add_sessions(db, rows)

    async def run() -> None:
        first = _session_row(alice.id, "import:test:key")
        await add([first])
        with pytest.raises(ImportConflict):
            await add([_session_row(alice.id, "import:test:key")])
        with pytest.raises(IntegrityError):  # the account is gone: a foreign key
            await add([_session_row(uuid.uuid4(), "import:test:other")])
        with pytest.raises(IntegrityError):  # another unique index: the primary key
            await add([_session_row(alice.id, "import:test:third", id=first["id"])])

    asyncio.run(run())


def test_export_reads_one_snapshot(http: httpx.Client, env: Env, alice: Account) -> None:
    """A session created while the export's transaction is open is not seen by it: on
    Postgres REPEATABLE READ READ ONLY (SQLite's transactions are serializable)."""
    http.post("/sessions", json={"title": "Before"}, headers=alice.headers)

    async def count(db: AsyncSession) -> int:
        return len(await repo.sessions_of(db, alice.id))

    async def run() -> None:
        async with _database(env) as sessionmaker:
            async with export.snapshot(sessionmaker, _claims(alice)) as db:
                assert await count(db) == 1  # as the user, under RLS
                if env.server.dialect == "postgresql":
                    level = (await db.execute(text("SHOW transaction_isolation"))).scalar()
                    read_only = (await db.execute(text("SHOW transaction_read_only"))).scalar()
                    assert (level, read_only) == ("repeatable read", "on")
                    created = await asyncio.to_thread(
                        http.post, "/sessions", json={"title": "During"}, headers=alice.headers
                    )
                    assert created.status_code == 201
                    assert await count(db) == 1
            # The pooled connection is back to the default for everyone else.
            async with unit_of_work(
                sessionmaker, role="authenticated", claims=_claims(alice)
            ) as db:
                if env.server.dialect == "postgresql":
                    level = (await db.execute(text("SHOW transaction_isolation"))).scalar()
                    assert level == "read committed"
                    assert await count(db) == 2

    asyncio.run(run())


class _WatchedStorage(LocalStorage):
    """The server's local storage, noting whether a transaction was open at each download."""

    def __init__(self, env: Env, admin: async_sessionmaker[AsyncSession]) -> None:
        super().__init__(env.server.settings.data_dir)
        self.admin = admin
        self.open_at_get: list[int] = []

    async def get(self, key: str) -> bytes:
        async with self.admin() as db:
            open_now = await db.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'"
                )
            )
            self.open_at_get.append(int(open_now.scalar() or 0))
        return await super().get(key)


# Postgres only: pg_stat_activity tells open transactions apart; SQLite has none to see.
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_export_downloads_files_after_its_transaction(
    http: httpx.Client, env: Env, alice: Account
) -> None:
    """Files' bytes are fetched once the snapshot is over: no transaction waits on storage."""
    for name in ("a.txt", "b.txt"):
        response = http.post(
            "/files", files={"file": (name, b"some text\n", "text/plain")}, headers=alice.headers
        )
        assert response.status_code == 201, response.text

    async def run() -> list[int]:
        async with _database(env) as sessionmaker, _database(env, owner=True) as admin:
            storage = _WatchedStorage(env, admin)
            spool = await export.account_zip(
                sessionmaker, storage, alice.id, _claims(alice), env.server.settings.signing_key()
            )
            with spool, zipfile.ZipFile(spool) as archive:
                document = json.loads(archive.read("zyron-export.json"))
                assert len(document["files"]) == 2
                assert all(archive.read(f["path"]) == b"some text\n" for f in document["files"])
            return storage.open_at_get

    assert asyncio.run(run()) == [0, 0]


# Run on the event loop, these would stall every request of the process.
OFF_LOOP = {"parse", "read_upload", "check_file", "pdf_pages", "_checked_files", "_rows_of"}


def test_import_parses_hashes_and_counts_pages_off_the_event_loop(env: Env, alice: Account) -> None:
    """A profiler on the event loop's thread (only) sees none of the CPU-bound steps, nor a
    SHA-256; the import did run them, in worker threads: its PDF and text file are stored."""
    files, entries = [], {}
    for name, data, kind in (
        ("a.pdf", pdf(2), "application/pdf"),
        ("b.txt", b"hi\n", "text/plain"),
    ):
        file_id = str(uuid.uuid4())
        files.append(
            {
                "id": file_id,
                "filename": name,
                "media_type": kind,
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "created_at": AT,
                "path": f"files/{file_id}",
            }
        )
        entries[f"files/{file_id}"] = data
    document = zyron_document([_message(str(uuid.uuid4()), None)], files=files)
    upload = zipped({"zyron-export.json": as_json(document), **entries})
    settings = env.server.settings
    assert settings.max_pdf_pages  # so the pages are counted

    seen: set[str] = set()

    def profile(frame: Any, event: str, arg: Any) -> None:
        ours = str(frame.f_globals.get("__name__", "")).startswith("zyron.")
        if event == "call" and ours and frame.f_code.co_name in OFF_LOOP:
            seen.add(frame.f_code.co_name)
        elif event == "c_call" and "sha256" in getattr(arg, "__name__", ""):
            seen.add("sha256")

    async def run() -> dict[str, Any]:
        work = StorageWork(LocalStorage(settings.data_dir))
        async with (
            _database(env) as sessionmaker,
            unit_of_work(sessionmaker, role="authenticated", claims=_claims(alice)) as db,
        ):
            sys.setprofile(profile)
            try:
                summary = await service.import_file(db, work, settings, alice.id, upload)
            finally:
                sys.setprofile(None)
        return summary.model_dump()

    summary = asyncio.run(run())
    assert (summary["sessions_created"], summary["files_created"]) == (1, 2)
    assert seen == set()
