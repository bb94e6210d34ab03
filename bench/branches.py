"""Time the branch reads of message trees against the time-ordered reads they replace.

`python -m bench.branches` creates a scratch database on a Postgres server (a superuser DSN,
default the local server), seeds one user with sessions of --messages messages (linear,
branchy, forked far back), then prints the median latency of each read, run as the user
under RLS in the app's own code path (SQLAlchemy, asyncpg, unit_of_work), and the
EXPLAIN ANALYZE plans of the statements the branch reads send. The database is dropped
afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bench.seed import _literal, create_database, drop_database, migrate
from zyron.db.engine import create_engine, create_sessionmaker
from zyron.db.unit_of_work import unit_of_work
from zyron.sessions import branches, repository

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
COLUMNS = (
    "id", "session_id", "user_id", "parent_id", "role", "content", "status", "model",
    "created_at",
)  # fmt: skip

Read = Callable[[AsyncSession], Awaitable[object]]


@dataclass
class Tree:
    """A session's messages as (id, parent_id, role) in the order they were written."""

    rows: list[tuple[uuid.UUID, uuid.UUID | None, str]]

    def add(self, parent: uuid.UUID | None, role: str) -> uuid.UUID:
        """Append a message and return its id."""
        message_id = uuid.uuid4()
        self.rows.append((message_id, parent, role))
        return message_id

    def path(self, leaf: uuid.UUID) -> list[uuid.UUID]:
        """Return the ids from `leaf` up to its root."""
        parents = {m: p for m, p, _ in self.rows}
        out: list[uuid.UUID] = []
        cursor: uuid.UUID | None = leaf
        while cursor is not None:
            out.append(cursor)
            cursor = parents[cursor]
        return out


def linear(n: int) -> Tree:
    """A session without edits: each message follows the one before."""
    tree, parent = Tree([]), None
    for k in range(n):
        parent = tree.add(parent, "assistant" if k % 2 else "user")
    return tree


def branchy(n: int, rng: random.Random, *, regenerate: float, edit: float) -> Tree:
    """A session where replies are regenerated and questions edited now and then."""
    tree = Tree([])
    leaf: uuid.UUID | None = None  # the last assistant reply on the active branch
    while len(tree.rows) < n:
        question = tree.add(leaf, "user")
        if rng.random() < edit and len(tree.rows) < n:  # ask again, differently
            question = tree.add(leaf, "user")
        reply = tree.add(question, "assistant")
        while rng.random() < regenerate and len(tree.rows) < n:
            reply = tree.add(question, "assistant")
        leaf = reply
    del tree.rows[n:]
    return tree


def forked(n: int, *, at: int, after: int) -> Tree:
    """A linear session where message `at` was edited, followed by `after` more messages."""
    tree = linear(n)
    parent: uuid.UUID | None = tree.rows[at][1]
    for k in range(after):
        parent = tree.add(parent, "assistant" if k % 2 else "user")
    return tree


async def _seed(dsn: str, user_id: uuid.UUID, sessions: dict[str, Tree]) -> dict[str, uuid.UUID]:
    """Write the user and the sessions, as the superuser; return the session ids by name."""
    ids = {name: uuid.uuid4() for name in sessions}
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO users (id, email, created_at) VALUES ($1, 'bench@example.com', now())",
            user_id,
        )
        for name, tree in sessions.items():
            await conn.execute(
                "INSERT INTO chat_sessions (id, user_id, title, created_at, updated_at) "
                "VALUES ($1, $2, $3, now(), now())",
                ids[name],
                user_id,
                name,
            )
            records = [
                (
                    m, ids[name], user_id, p, role, "lorem ipsum dolor sit amet " * 20,
                    "complete", "claude-bench" if role == "assistant" else None,
                    EPOCH + timedelta(seconds=k),
                )
                for k, (m, p, role) in enumerate(tree.rows)
            ]  # fmt: skip
            await conn.copy_records_to_table("messages", records=records, columns=COLUMNS)
        await conn.execute("VACUUM ANALYZE messages")
    finally:
        await conn.close()
    return ids


def reads(
    user_id: uuid.UUID, session_id: uuid.UUID, before: uuid.UUID
) -> dict[str, tuple[Read, Read, Read]]:
    """Each read as (today's time-ordered query, the branch read, the recursive query alone)."""
    u, s = user_id, session_id
    turns, page = branches.TURN_COLUMNS, repository.MESSAGE_COLUMNS

    async def page_before_today(db: AsyncSession) -> object:
        anchor = await repository.message_by_id(db, u, before)
        assert anchor is not None
        return await repository.list_messages(db, u, s, limit=100, before=anchor.created_at)

    return {
        "prompt history, 200": (
            lambda db: repository.history_turns(db, u, s, limit=200),
            lambda db: branches.branch(db, u, s, leaf_id=None, limit=200),
            lambda db: branches.walk_up(db, u, s, start_id=None, limit=200, columns=turns),
        ),
        "message page, 100": (
            lambda db: repository.list_messages(db, u, s, limit=100),
            lambda db: branches.active_branch(db, u, s, limit=100),
            lambda db: branches.walk_up(db, u, s, start_id=None, limit=100, columns=page),
        ),
        "page before, 100": (
            page_before_today,
            lambda db: branches.active_branch(db, u, s, limit=100, before=before),
            lambda db: branches.walk_up(db, u, s, start_id=before, limit=101, columns=page),
        ),
    }


async def time_reads(
    engine: AsyncEngine, user_id: uuid.UUID, variants: Sequence[Read], repeats: int
) -> list[float]:
    """Return the median seconds of each read, timed inside its own transaction as the user."""
    sessionmaker = create_sessionmaker(engine)
    claims = {"sub": str(user_id), "role": "authenticated"}
    samples: list[list[float]] = [[] for _ in variants]
    for round_ in range(repeats + 20):  # the first 20 rounds warm caches and prepared plans
        order = list(range(len(variants)))
        order = order[round_ % len(order) :] + order[: round_ % len(order)]
        for i in order:
            async with unit_of_work(sessionmaker, role="authenticated", claims=claims) as db:
                began = time.perf_counter()
                await variants[i](db)
                elapsed = time.perf_counter() - began
            if round_ >= 20:
                samples[i].append(elapsed)
    return [statistics.median(s) for s in samples]


async def statements(engine: AsyncEngine, user_id: uuid.UUID, read: Read) -> list[Any]:
    """Return the (SQL, parameters) a read sends, in order."""
    sent: list[Any] = []

    def record(_c: object, _cur: object, sql: str, params: Any, *_: object) -> None:
        if not sql.lstrip().upper().startswith(("BEGIN", "SELECT SET_CONFIG")):
            sent.append((sql, params))

    claims = {"sub": str(user_id), "role": "authenticated"}
    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        async with unit_of_work(
            create_sessionmaker(engine), role="authenticated", claims=claims
        ) as db:
            await read(db)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
    return sent


async def explain(admin_dsn: str, user_id: uuid.UUID, sql: str, params: Sequence[Any]) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) a statement as the user under RLS, custom and generic plan."""
    conn = await asyncpg.connect(admin_dsn)
    out = []
    claims = f'{{"sub":"{user_id}","role":"authenticated"}}'
    try:
        for mode in ("force_custom_plan", "force_generic_plan"):
            async with conn.transaction():
                await conn.execute(
                    "SELECT set_config('role', 'authenticated', true), "
                    f"set_config('request.jwt.claims', '{claims}', true)"
                )
                await conn.execute(f"SET LOCAL plan_cache_mode = {mode}")
                await conn.execute(f"PREPARE q AS {sql}")
                args = ", ".join(map(_literal, params))
                for _ in range(2):  # the second run is the one shown: caches are warm
                    rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE q({args})")
                await conn.execute("DEALLOCATE q")
            out.append(f"[{mode}]\n" + "\n".join(row[0] for row in rows))
    finally:
        await conn.close()
    return "\n".join(out)


async def _main(args: argparse.Namespace) -> None:
    """Create, migrate and seed a scratch database; print latencies and plans."""
    n, rng = args.messages, random.Random(7)
    trees = {
        "linear": linear(n),
        "branchy": branchy(n, rng, regenerate=0.1, edit=0.05),
        "forked early": forked(n, at=100, after=60),
        "forked late": forked(n, at=n - 150, after=60),
    }
    user_id = uuid.uuid4()
    dsn = await create_database(args.admin_dsn, args.database)
    engine = create_engine("postgresql+asyncpg://" + dsn.split("://", 1)[1])
    try:
        await migrate(dsn)
        session_ids = await _seed(dsn, user_id, trees)
        print(f"{n:,} messages per session, {args.repeats} timed rounds, medians in ms;")
        print("today = repository (time order), branch = branches (window + walk), ")
        print("recursive = branches.walk_up alone\n")
        print(f"{'session':14} {'read':22} {'today':>7} {'branch':>7} {'recursive':>9} "
              f"{'branch len':>10}")  # fmt: skip
        for name, tree in trees.items():
            leaf = tree.rows[-1][0]
            path = tree.path(leaf)
            before = path[min(len(path) - 1, 1000)]
            for read, variants in reads(user_id, session_ids[name], before).items():
                medians = await time_reads(engine, user_id, variants, args.repeats)
                today, hybrid, recursive = (f"{m * 1000:.3f}" for m in medians)
                print(f"{name:14} {read:22} {today:>7} {hybrid:>7} {recursive:>9} "
                      f"{len(path):>10}")  # fmt: skip
        if args.plans:
            # The statements each branch read sends: the window alone (linear), the window
            # bounded by `before`, the window then the walk (forked), the walk alone.
            shown = (
                ("linear", "prompt history, 200", 1),
                ("linear", "page before, 100", 1),
                ("forked early", "prompt history, 200", 1),
                ("linear", "prompt history, 200", 2),
            )
            for name, read, variant in shown:
                path = trees[name].path(trees[name].rows[-1][0])
                before = path[min(len(path) - 1, 1000)]
                timed = reads(user_id, session_ids[name], before)[read][variant]
                label = f"{name}, {read}, {'branch' if variant == 1 else 'recursive'}"
                for sql, params in await statements(engine, user_id, timed):
                    print(f"\n--- {label}\n{sql}\n")
                    print(await explain(dsn, user_id, sql, params))
    finally:
        await engine.dispose()
        if not args.keep:
            await drop_database(args.admin_dsn, args.database)


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line and run."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--admin-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--database", default="zyron_branches_bench", help="scratch database")
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--plans", action="store_true", help="print EXPLAIN ANALYZE plans")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
