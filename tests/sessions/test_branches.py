"""Branches of message trees, read on SQLite and on Postgres as the user under RLS."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.backends import Backend
from tests.pg import APP_ROLE, migrate, sqlalchemy_url
from zyron.db.engine import create_engine, create_sessionmaker
from zyron.db.models import ChatSession, Message, User
from zyron.db.unit_of_work import unit_of_work
from zyron.sessions import branches

T = TypeVar("T")
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Database:
    """A migrated database: `url` as the application's role, `admin_url` to plant data."""

    url: str
    admin_url: str


@pytest.fixture(scope="module")
def database(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Database:
    """A fresh database of the backend's kind, built by the migrations."""
    if backend.postgres is not None:
        name = backend.postgres.create_database()
        url = sqlalchemy_url(backend.postgres.dsn(name, user=APP_ROLE))
        admin_url = sqlalchemy_url(backend.postgres.dsn(name))
    else:
        url = admin_url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('branches')}/zyron.db"
    asyncio.run(migrate(url, "head"))
    return Database(url, admin_url)


@dataclass
class Chat:
    """A session planted in the database; messages are named, and their content is the name."""

    database: Database
    user_id: uuid.UUID = field(default_factory=uuid.uuid4)
    session_id: uuid.UUID = field(default_factory=uuid.uuid4)
    ids: dict[str, uuid.UUID] = field(default_factory=dict)

    def plant(self, *turns: tuple[str, str | None], at: Sequence[datetime] | None = None) -> Chat:
        """Write the user (if new), the session and messages (name, parent name) in order.

        A name starting with "q" is the user's, any other the assistant's. Each message is a
        second newer than the one before, unless `at` gives the times.
        """
        start = EPOCH + timedelta(seconds=len(self.ids))
        times = at or [start + timedelta(seconds=i) for i in range(len(turns))]
        rows = []
        for (name, parent), created_at in zip(turns, times, strict=True):
            self.ids[name] = uuid.uuid4()
            rows.append(
                {
                    "id": self.ids[name],
                    "session_id": self.session_id,
                    "user_id": self.user_id,
                    "parent_id": None if parent is None else self.ids[parent],
                    "role": "user" if name.startswith("q") else "assistant",
                    "content": name,
                    "status": "complete",
                    "created_at": created_at,
                }
            )
        asyncio.run(_write(self.database, self.user_id, self.session_id, rows))
        return self

    def run(self, read: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run a read in a transaction of this chat's user (RLS applies on Postgres)."""
        return asyncio.run(_as_user(self.database, self.user_id, read))

    def branch(self, leaf: str | uuid.UUID | None = None, *, limit: int = 100) -> list[str]:
        """Name the messages branch() returns for a leaf (a name, an id, or None)."""
        leaf_id = self.ids[leaf] if isinstance(leaf, str) else leaf
        rows = self.run(
            lambda db: branches.branch(
                db, self.user_id, self.session_id, leaf_id=leaf_id, limit=limit
            )
        )
        return [row.content for row in rows]

    def page(self, *, limit: int = 100, before: str | uuid.UUID | None = None) -> list[str] | None:
        """Name the messages of an active_branch() page; None if it says "not found"."""
        before_id = self.ids[before] if isinstance(before, str) else before
        rows = self.run(
            lambda db: branches.active_branch(
                db, self.user_id, self.session_id, limit=limit, before=before_id
            )
        )
        return None if rows is None else [row.content for row in rows]

    def walk(self, start: str | uuid.UUID | None = None, *, limit: int = 100) -> list[str]:
        """Name the messages walk_up() returns, leaf first."""
        start_id = self.ids[start] if isinstance(start, str) else start
        rows = self.run(
            lambda db: branches.walk_up(
                db, self.user_id, self.session_id, start_id=start_id, limit=limit
            )
        )
        return [row.content for row in rows]

    def newest(self) -> uuid.UUID | None:
        """Return newest_message_id()."""
        return self.run(lambda db: branches.newest_message_id(db, self.user_id, self.session_id))


async def _write(
    database: Database, user_id: uuid.UUID, session_id: uuid.UUID, rows: list[dict[str, Any]]
) -> None:
    """Insert the user and session where missing, and the messages, bypassing RLS."""
    engine = create_engine(database.admin_url)
    try:
        async with engine.begin() as conn:
            if await conn.scalar(select(User.id).where(User.id == user_id)) is None:
                await conn.execute(insert(User), [{"id": user_id, "created_at": EPOCH}])
            if (
                await conn.scalar(select(ChatSession.id).where(ChatSession.id == session_id))
                is None
            ):
                await conn.execute(
                    insert(ChatSession),
                    [{"id": session_id, "user_id": user_id, "title": "t", "created_at": EPOCH,
                      "updated_at": EPOCH}],
                )  # fmt: skip
            if rows:
                await conn.execute(insert(Message), rows)
    finally:
        await engine.dispose()


async def _as_user(
    database: Database, user_id: uuid.UUID, read: Callable[[AsyncSession], Awaitable[T]]
) -> T:
    """Open a transaction as the app does for a signed-in user, and run `read` in it."""
    engine = create_engine(database.url)
    claims = {"sub": str(user_id), "role": "authenticated"}
    try:
        async with unit_of_work(
            create_sessionmaker(engine), role="authenticated", claims=claims
        ) as db:
            return await read(db)
    finally:
        await engine.dispose()


def linear(n: int, *, parent: str | None = None, suffix: str = "") -> list[tuple[str, str | None]]:
    """Return n alternating turns q1, a1, q2, a2, ... each following the one before."""
    turns: list[tuple[str, str | None]] = []
    for k in range(n):
        name = f"{'a' if k % 2 else 'q'}{k // 2 + 1}{suffix}"
        turns.append((name, parent))
        parent = name
    return turns


def test_linear_session(database: Database) -> None:
    """Without edits the active branch is the whole session, oldest first."""
    chat = Chat(database).plant(*linear(6))
    everything = ["q1", "a1", "q2", "a2", "q3", "a3"]
    assert chat.branch() == everything
    assert chat.page() == everything
    assert chat.branch("a3") == everything
    assert chat.branch("q2") == ["q1", "a1", "q2"]
    assert chat.newest() == chat.ids["a3"]


def test_page_rows_carry_the_api_columns(database: Database) -> None:
    """A page's rows hold every column the message list shows; a branch's what a prompt needs."""
    chat = Chat(database).plant(*linear(2))
    page = chat.run(lambda db: branches.active_branch(db, chat.user_id, chat.session_id, limit=5))
    assert page is not None
    reply = page[-1]
    assert (reply.id, reply.parent_id, reply.session_id) == (
        chat.ids["a1"],
        chat.ids["q1"],
        chat.session_id,
    )
    assert (reply.role, reply.content, reply.status) == ("assistant", "a1", "complete")
    assert reply.created_at == EPOCH + timedelta(seconds=1)
    assert reply.created_at.tzinfo is not None
    turns = chat.run(
        lambda db: branches.branch(db, chat.user_id, chat.session_id, leaf_id=None, limit=5)
    )
    assert [tuple(row._mapping) for row in turns] == [
        ("id", "parent_id", "role", "content", "parts", "status")
    ] * 2


def test_edit_makes_the_new_branch_active(database: Database) -> None:
    """A second user message with the same parent: its branch is active, the old one hidden."""
    chat = Chat(database).plant(*linear(4))
    chat.plant(("q2'", "a1"), ("a2'", "q2'"))
    assert chat.branch() == ["q1", "a1", "q2'", "a2'"]
    assert chat.page() == ["q1", "a1", "q2'", "a2'"]
    # The old branch is still there, read from its own leaf.
    assert chat.branch("a2") == ["q1", "a1", "q2", "a2"]
    # Right after the edit, before the reply: the edited message is the leaf.
    chat.plant(("q2''", "a1"))
    assert chat.branch() == ["q1", "a1", "q2''"]


def test_regenerate_makes_the_newest_reply_active(database: Database) -> None:
    """Two replies to one message: the newest reply's branch is active."""
    chat = Chat(database).plant(*linear(4))
    chat.plant(("a2'", "q2"))
    assert chat.branch() == ["q1", "a1", "q2", "a2'"]
    chat.plant(("a2''", "q2"))
    assert chat.page() == ["q1", "a1", "q2", "a2''"]
    # Regenerating an earlier reply drops everything after it from the active branch.
    chat.plant(("a1'", "q1"))
    assert chat.page() == ["q1", "a1'"]
    assert chat.branch("a2'") == ["q1", "a1", "q2", "a2'"]


def test_limit_counts_from_the_leaf(database: Database) -> None:
    """`limit` keeps the messages nearest the leaf."""
    chat = Chat(database).plant(*linear(6))
    assert chat.branch(limit=2) == ["q3", "a3"]
    assert chat.page(limit=1) == ["a3"]
    assert chat.branch("a2", limit=3) == ["a1", "q2", "a2"]
    assert chat.branch(limit=0) == []
    chat.plant(("q2'", "a1"), ("a2'", "q2'"))
    assert chat.branch(limit=3) == ["a1", "q2'", "a2'"]


def test_before_pages_back_along_the_branch_not_time(database: Database) -> None:
    """Paging back follows parent_id: the other branch's messages in between are skipped."""
    chat = Chat(database).plant(*linear(6))
    # q2 edited after a3 was written: in time order q2' comes after the whole old branch.
    chat.plant(("q2'", "a1"), ("a2'", "q2'"), ("q3'", "a2'"), ("a3'", "q3'"))
    assert chat.page(limit=2) == ["q3'", "a3'"]
    assert chat.page(limit=2, before="q3'") == ["q2'", "a2'"]
    assert chat.page(limit=10, before="q2'") == ["q1", "a1"]
    assert chat.page(limit=2, before="a1") == ["q1"]
    assert chat.page(before="q1") == []  # a root: nothing above it, yet it exists
    # From a message of the hidden branch, paging walks that branch.
    assert chat.page(limit=3, before="a3") == ["q2", "a2", "q3"]
    assert chat.page(before="a3") == ["q1", "a1", "q2", "a2", "q3"]


def test_foreign_ids_find_nothing(database: Database) -> None:
    """A leaf or `before` from another session, another user's, or nowhere: [] and None."""
    alice = Chat(database).plant(*linear(4))
    other_session = Chat(database, user_id=alice.user_id).plant(*linear(2))
    bob = Chat(database).plant(*linear(2))
    for stranger in (other_session.ids["a1"], bob.ids["a1"], uuid.uuid4()):
        assert alice.branch(stranger) == []
        assert alice.page(before=stranger) is None
        assert alice.walk(stranger) == []
    # Bob's own session, named by Alice: nothing, whatever ids she brings.
    assert (
        alice.run(
            lambda db: branches.branch(db, alice.user_id, bob.session_id, leaf_id=None, limit=10)
        )
        == []
    )
    assert (
        alice.run(
            lambda db: branches.branch(
                db, alice.user_id, bob.session_id, leaf_id=bob.ids["a1"], limit=10
            )
        )
        == []
    )
    assert (
        alice.run(
            lambda db: branches.active_branch(
                db, alice.user_id, bob.session_id, limit=10, before=bob.ids["a1"]
            )
        )
        is None
    )
    assert (
        alice.run(lambda db: branches.newest_message_id(db, alice.user_id, bob.session_id)) is None
    )


def test_a_walk_never_leaves_the_session(database: Database) -> None:
    """A parent_id pointing into another session ends the branch there."""
    alice = Chat(database).plant(*linear(2))
    elsewhere = Chat(database, user_id=alice.user_id).plant(("q9", None))
    alice.ids["q9"] = elsewhere.ids["q9"]
    alice.plant(("q2", "q9"), ("a2", "q2"))
    assert alice.branch() == ["q2", "a2"]
    assert alice.walk() == ["a2", "q2"]


def test_several_roots(database: Database) -> None:
    """Editing the first message makes a second root (parent NULL); each branch ends at its root."""
    chat = Chat(database).plant(*linear(4))
    chat.plant(("q1'", None), ("a1'", "q1'"))
    assert chat.branch() == ["q1'", "a1'"]
    assert chat.page(before="q1'") == []
    assert chat.branch("a2") == ["q1", "a1", "q2", "a2"]


def test_empty_session(database: Database) -> None:
    """A session without messages has an empty branch and no newest message."""
    chat = Chat(database).plant()
    assert chat.branch() == []
    assert chat.page() == []
    assert chat.newest() is None
    assert chat.walk() == []


def test_newest_breaks_time_ties_by_id(database: Database) -> None:
    """Messages written in the same microsecond: the larger id is the newer."""
    chat = Chat(database).plant(("q1", None), ("q1'", None), at=[EPOCH, EPOCH])
    newest = max(chat.ids.values())
    assert chat.newest() == newest
    assert chat.branch() == [name for name, id_ in chat.ids.items() if id_ == newest]


def test_columns_must_let_the_walk_follow_parents(database: Database) -> None:
    """A column set without id and parent_id is refused before any query."""
    chat = Chat(database).plant(*linear(2))
    with pytest.raises(ValueError, match="parent_id"):
        chat.run(
            lambda db: branches.branch(
                db, chat.user_id, chat.session_id, leaf_id=None, limit=5,
                columns=(Message.id, Message.content),
            )
        )  # fmt: skip


def _path(parents: dict[uuid.UUID, uuid.UUID | None], leaf: uuid.UUID) -> list[uuid.UUID]:
    """The reference: ids from `leaf` up to its root."""
    path: list[uuid.UUID] = []
    cursor: uuid.UUID | None = leaf
    while cursor is not None:
        path.append(cursor)
        cursor = parents[cursor]
    return path


@pytest.mark.parametrize("seed", range(4))
def test_random_trees_match_a_plain_walk(database: Database, seed: int) -> None:
    """On random trees with forks inside and before the window, tied and unordered times,
    every read equals following parent_id by hand."""
    rng = random.Random(seed)
    chat = Chat(database)
    turns: list[tuple[str, str | None]] = []
    for k in range(80):
        names = [name for name, _ in turns]
        r = rng.random()
        if not names or r < 0.05:
            parent = None
        elif r < 0.75:
            parent = names[-1]
        elif r < 0.9:
            parent = rng.choice(names[-6:])
        else:
            parent = rng.choice(names)
        turns.append((f"m{k}", parent))
    # Few distinct times, not in insertion order: ties, and children older than parents.
    times = [EPOCH + timedelta(seconds=rng.randrange(25)) for _ in turns]
    chat.plant(*turns, at=times)
    parents = {chat.ids[name]: (None if p is None else chat.ids[p]) for name, p in turns}
    created = {chat.ids[name]: at for (name, _), at in zip(turns, times, strict=True)}
    newest = max(parents, key=lambda id_: (created[id_], id_))
    leaves = [None, *rng.sample(sorted(parents), 12)]

    async def check(db: AsyncSession) -> None:
        u, s = chat.user_id, chat.session_id
        assert await branches.newest_message_id(db, u, s) == newest
        for leaf in leaves:
            expected = _path(parents, newest if leaf is None else leaf)
            for limit in (1, 2, 5, 17, 100):
                rows = await branches.branch(db, u, s, leaf_id=leaf, limit=limit)
                assert [row.id for row in rows] == expected[:limit][::-1], (leaf, limit)
                walked = await branches.walk_up(db, u, s, start_id=leaf, limit=limit)
                assert [row.id for row in walked] == expected[:limit], (leaf, limit)
                if leaf is None:
                    page = await branches.active_branch(db, u, s, limit=limit)
                    above = expected
                else:
                    page = await branches.active_branch(db, u, s, limit=limit, before=leaf)
                    above = expected[1:]
                assert page is not None
                assert [row.id for row in page] == above[:limit][::-1], (leaf, limit)

    chat.run(check)
