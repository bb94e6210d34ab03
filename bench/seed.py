"""Seed a migrated Postgres database with realistic chat data; explain and time the hot reads."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import re
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ClauseElement, Executable
from sqlalchemy.sql.compiler import SQLCompiler

from zyron.db.engine import create_engine
from zyron.db.migrate import upgrade
from zyron.db.unit_of_work import _SET_IDENTITY
from zyron.sessions import repository

Progress = Callable[[str], None]

# Fixed, so a seed is reproducible: every timestamp falls in the year before WINDOW_END.
WINDOW_END = datetime(2026, 11, 1, tzinfo=UTC)
WINDOW_US = 365 * 24 * 3600 * 1_000_000
EPOCH = WINDOW_END - timedelta(microseconds=WINDOW_US)

LONG_THRESHOLD = 100  # GET /sessions/{id}/messages?limit=100: longer sessions exercise the limit
LONG_LENGTHS = (150, 650)  # message count range of a long session
LONG_SHARE = 0.4  # at most this share of all messages sits in long sessions
SESSIONS_PAGE = 50  # GET /sessions: the router's default `limit`
MESSAGES_PAGE = 100
BATCH = 100_000  # messages per COPY

MODELS = ("claude-sonnet-4-5", "claude-opus-4-1", "claude-haiku-4-5")
TOPICS = (
    "asyncpg pool timeouts", "a birthday dinner menu", "Postgres row level security",
    "my resume", "a trip to Lisbon", "React state management", "tax deductions",
    "a short story about a lighthouse", "Kubernetes liveness probes", "learning Japanese",
    "a marathon training plan", "SQL window functions", "a cover letter", "garden pests",
    "the French Revolution", "a wedding toast", "Rust lifetimes", "a budget spreadsheet",
    "sourdough starter", "unit tests for a parser", "a job interview", "climate data",
)  # fmt: skip
VERBS = ("Help with", "Questions about", "Notes on", "Ideas for", "Fixing", "Planning")
_WORD_TEXT = (
    "the of and to in is that for it as with on be this by are from at or an was which "
    "can will not but have all if more one has their there what when would about so into "
    "than them these some other then only its also use could time new like should each "
    "data query index table row user session message reply model token stream request "
    "response server client error retry timeout cache pool connection transaction commit "
    "function value list string number result example code test build deploy version "
    "because however first next finally instead usually often probably simply quickly "
    "make take give find think know want need try start keep show help work call return "
    "good better best small large fast slow simple clear common important different same "
    "people world year day week plan trip food recipe story idea question answer note"
)
WORDS = tuple(_WORD_TEXT.split())

USER_COLUMNS = ("id", "email", "display_name", "password_hash", "created_at")
SESSION_COLUMNS = (
    "id", "user_id", "title", "model", "system_prompt", "created_at", "updated_at",
)  # fmt: skip
MESSAGE_COLUMNS = (
    "id", "session_id", "user_id", "parent_id", "role", "content", "status", "model",
    "input_tokens", "output_tokens", "stop_reason", "created_at",
)  # fmt: skip

_DIALECT = make_url("postgresql+asyncpg://").get_dialect()()
_DB_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


@dataclass(frozen=True, slots=True)
class SeedResult:
    """What seed() wrote: ids, per-session message counts, totals and timings."""

    user_ids: tuple[uuid.UUID, ...]
    # user -> their session ids, most recently updated first (the order of GET /sessions)
    session_ids: Mapping[uuid.UUID, tuple[uuid.UUID, ...]]
    # user -> the session with the most messages
    busiest_session: Mapping[uuid.UUID, uuid.UUID]
    message_counts: Mapping[uuid.UUID, int]  # session -> number of messages
    long_sessions: tuple[tuple[uuid.UUID, uuid.UUID], ...]  # (user, session), > 100 messages
    users: int
    sessions: int
    messages: int
    seconds: float
    phases: Mapping[str, float] = field(default_factory=dict)  # phase -> seconds

    def sample_pairs(
        self, n: int, *, seed: int = 0, long_only: bool = False
    ) -> list[tuple[uuid.UUID, uuid.UUID]]:
        """Return `n` random (user, session) pairs: busiest sessions, or only long ones."""
        rng = random.Random(seed)
        if long_only:
            return [rng.choice(self.long_sessions) for _ in range(n)]
        return [
            (user, self.busiest_session[user])
            for user in (rng.choice(self.user_ids) for _ in range(n))
        ]


def _uuid4(rng: random.Random) -> uuid.UUID:
    """Return a version-4 UUID drawn from `rng` (so seeding is reproducible)."""
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _corpus(rng: random.Random, size: int) -> tuple[str, list[int]]:
    """Return pseudo-English text of about `size` characters and where its sentences start."""
    parts: list[str] = []
    length = 0
    while length < size:
        words = [rng.choice(WORDS) for _ in range(rng.randint(6, 22))]
        sentence = " ".join(words).capitalize() + rng.choice((". ", ". ", ". ", "? ", ".\n\n"))
        parts.append(sentence)
        length += len(sentence)
    text = "".join(parts)
    starts = [0, *(m.end() for m in re.finditer(r"[.?] |\n\n", text[: len(text) - 2100]))]
    return text, starts


def _message_counts(
    rng: random.Random, users: int, per_user: int, messages: int
) -> tuple[list[int], set[int]]:
    """Spread `messages` over the sessions: some long ones, the rest heavy-tailed short ones."""
    n_sessions = users * per_user
    counts = [0] * n_sessions
    long: set[int] = set()
    budget = int(messages * LONG_SHARE)
    for user in rng.sample(range(users), users):
        if budget < LONG_LENGTHS[0]:
            break
        length = min(budget, rng.randrange(LONG_LENGTHS[0], LONG_LENGTHS[1] + 1, 2))
        session = user * per_user + rng.randrange(per_user)
        counts[session] = length
        long.add(session)
        budget -= length
    rest = messages - sum(counts)
    others = [s for s in range(n_sessions) if s not in long] or list(range(n_sessions))
    weights = [rng.lognormvariate(0.0, 1.0) for _ in others]
    total = sum(weights)
    for s, w in zip(others, weights, strict=True):
        counts[s] += int(rest * w / total)
    for _ in range(messages - sum(counts)):
        counts[others[rng.randrange(len(others))]] += 1
    return counts, long


# Message ids: a random base per session plus k steps of an odd constant, so any message's id
# (and so its parent's) follows from (session, k) alone and batches can be built in any order.
ID_STEP = 0x9E3779B97F4A7C15F39CC0605CEDC835
ID_MASK = (1 << 128) - 1
HOUR_US = 3600 * 1_000_000


def _message_id(base: int, k: int) -> uuid.UUID:
    """Return the id of message `k` of the session whose id base is `base`."""
    return uuid.UUID(int=(base + k * ID_STEP) & ID_MASK, version=4)


def _at(us: int) -> datetime:
    """Return the timestamp `us` microseconds after EPOCH."""
    return EPOCH + timedelta(microseconds=us)


@dataclass(slots=True)
class _Plan:
    """Everything about the messages, decided up front: rows are then pure functions of it."""

    user_ids: list[uuid.UUID]
    session_ids: list[uuid.UUID]
    per_user: int
    counts: list[int]  # messages per session
    models: list[str]  # per session
    id_bases: list[int]  # per session, see _message_id
    first_index: list[int]  # per session: where its messages start in the flat lists below
    offsets: list[int] = field(default_factory=list)  # per message: microseconds after EPOCH
    lengths: list[int] = field(default_factory=list)  # per message: content length
    starts: list[int] = field(default_factory=list)  # per message: where content starts in corpus
    context: list[int] = field(default_factory=list)  # per message: session characters before it
    keys: list[int] = field(default_factory=list)  # every message as (time, session, k), sorted
    k_bits: int = 0
    shift: int = 0
    corpus: str = ""

    def add_session(self, rng: random.Random, s: int, sentence_starts: list[int]) -> None:
        """Decide the times, lengths and content of session `s`'s messages."""
        n = self.counts[s]
        t = context = 0
        times = []
        for k in range(n):
            if k % 2:  # the assistant answers within seconds, at length
                t += rng.randint(2_000_000, 45_000_000)
                length = min(2000, 200 + int(rng.expovariate(1 / 600)))
            else:  # the user thinks a while, now and then coming back hours or days later
                r = rng.random()
                if not k:
                    pass
                elif r < 0.9:
                    t += 5_000_000 + int(rng.expovariate(1 / 120_000_000))
                elif r < 0.98:
                    t += rng.randint(HOUR_US, 8 * HOUR_US)
                else:
                    t += rng.randint(24 * HOUR_US, 7 * 24 * HOUR_US)
                length = min(400, 20 + int(rng.expovariate(1 / 100)))
            times.append(t)
            self.lengths.append(length)
            self.starts.append(sentence_starts[rng.randrange(len(sentence_starts))])
            self.context.append(context)
            context += length
        begin = rng.randrange(max(1, WINDOW_US - t))
        self.offsets.extend(begin + time_ for time_ in times)
        if n == 0:
            self.offsets.append(begin)  # a placeholder: an empty session's only timestamp
            self.lengths.append(0)
            self.starts.append(0)
            self.context.append(0)

    def first_at(self, s: int) -> int:
        """Return the time of session `s`'s first message (or of its creation, if empty)."""
        return self.offsets[self.first_index[s]]

    def last_at(self, s: int) -> int:
        """Return the time of session `s`'s last message (or of its creation, if empty)."""
        return self.offsets[self.first_index[s] + max(0, self.counts[s] - 1)]

    def rows(self, begin: int, end: int) -> Iterator[tuple[Any, ...]]:
        """Yield the rows of messages begin..end in time order, lazily, for COPY."""
        k_mask = (1 << self.k_bits) - 1
        s_mask = (1 << (self.shift - self.k_bits)) - 1
        k_bits, per_user, corpus = self.k_bits, self.per_user, self.corpus
        for key in self.keys[begin:end]:
            k = key & k_mask
            s = (key >> k_bits) & s_mask
            i = self.first_index[s] + k
            base = self.id_bases[s]
            start = self.starts[i]
            length = self.lengths[i]
            common = (
                _message_id(base, k),
                self.session_ids[s],
                self.user_ids[s // per_user],
                _message_id(base, k - 1) if k else None,
            )
            content = corpus[start : start + length]
            at = _at(self.offsets[i])
            if k % 2:
                stop = "max_tokens" if length == 2000 else "end_turn"
                tokens_in = (self.context[i] + 40) // 4
                yield (
                    *common, "assistant", content, "complete", self.models[s], tokens_in,
                    length // 4, stop, at,
                )  # fmt: skip
            else:
                yield (*common, "user", content, "complete", None, None, None, None, at)


def _make_plan(
    rng: random.Random, users: int, per_user: int, messages: int
) -> tuple[_Plan, set[int]]:
    """Draw ids, counts, times and contents; return the plan and the long sessions."""
    n_sessions = users * per_user
    counts, long = _message_counts(rng, users, per_user, messages)
    plan = _Plan(
        user_ids=[_uuid4(rng) for _ in range(users)],
        session_ids=[_uuid4(rng) for _ in range(n_sessions)],
        per_user=per_user,
        counts=counts,
        models=[rng.choice(MODELS) for _ in range(n_sessions)],
        id_bases=[rng.getrandbits(128) for _ in range(n_sessions)],
        first_index=[],
    )
    plan.corpus, sentence_starts = _corpus(rng, 1 << 20)
    for s in range(n_sessions):
        plan.first_index.append(len(plan.offsets))
        plan.add_session(rng, s, sentence_starts)
    # Every message in global time order, as an app would have written them: a session's
    # rows end up scattered over the heap among everyone else's.
    plan.k_bits = max(1, max(counts).bit_length())
    plan.shift = plan.k_bits + max(1, n_sessions.bit_length())
    offsets, first_index = plan.offsets, plan.first_index
    for s, n in enumerate(counts):
        i, high = first_index[s], s << plan.k_bits
        plan.keys.extend((offsets[i + k] << plan.shift) | high | k for k in range(n))
    plan.keys.sort()
    return plan, long


async def _connect(dsn: str) -> Any:
    """Connect for loading: no waiting on commit flushes, no per-row trigger (FK) checks."""
    conn = await asyncpg.connect(dsn)
    # Foreign keys are checked once, set-based, after the load (_verify): per-row RI triggers
    # would double the load time. session_replication_role needs a superuser.
    await conn.execute("SET synchronous_commit = off; SET session_replication_role = replica")
    return conn


async def _verify(conn: Any) -> None:
    """Check what the foreign keys would have, for the whole load at once; raise if broken."""
    broken = await conn.fetchrow(
        """
        SELECT
          (SELECT count(*) FROM chat_sessions c
            WHERE NOT EXISTS (SELECT FROM users u WHERE u.id = c.user_id)) AS sessions,
          (SELECT count(*) FROM messages m
            WHERE NOT EXISTS (SELECT FROM chat_sessions c
                               WHERE c.id = m.session_id AND c.user_id = m.user_id)) AS messages,
          (SELECT count(*) FROM messages m
            WHERE m.parent_id IS NOT NULL AND NOT EXISTS (
              SELECT FROM messages p WHERE p.id = m.parent_id AND p.session_id = m.session_id
            )) AS parents
        """
    )
    if any(broken.values()):
        raise RuntimeError(f"seeded rows break foreign keys: {dict(broken)}")


async def seed(
    dsn: str,
    *,
    users: int,
    sessions_per_user: int,
    messages: int,
    progress: Progress | None = None,
    random_seed: int = 20261124,
    workers: int = 1,
) -> SeedResult:
    """Fill users, chat_sessions and messages of a migrated, empty database; ANALYZE them.

    Needs a superuser DSN (it loads with session_replication_role = replica and checks the
    foreign keys afterwards). The rows are the same for the same arguments. `workers` > 1
    copies messages over that many connections (their physical order then varies a little);
    on a 2-core machine it gains nothing, as the Python side is half the work.
    """
    if users < 1 or sessions_per_user < 1 or messages < 0 or workers < 1:
        raise ValueError("need users >= 1, sessions_per_user >= 1, messages >= 0, workers >= 1")
    say = progress or (lambda _message: None)
    started = time.perf_counter()
    phases: dict[str, float] = {}
    rng = random.Random(random_seed)
    plan, long = _make_plan(rng, users, sessions_per_user, messages)
    n_sessions = users * sessions_per_user
    user_rows = []
    for u, user_id in enumerate(plan.user_ids):
        own = range(u * sessions_per_user, (u + 1) * sessions_per_user)
        joined = min(map(plan.first_at, own)) - rng.randrange(30 * 24 * HOUR_US)
        email = f"user{u:06d}@bench.zyron.test"
        user_rows.append((joined, (user_id, email, f"Bench User {u}", None, _at(joined))))
    session_rows = []
    for s, session_id in enumerate(plan.session_ids):
        title = f"{rng.choice(VERBS)} {rng.choice(TOPICS)}" if plan.counts[s] else "New chat"
        prompt = "You are a concise, friendly assistant." if rng.random() < 0.1 else None
        created = plan.first_at(s) - (rng.randint(500_000, 5_000_000) if plan.counts[s] else 0)
        owner = plan.user_ids[s // sessions_per_user]
        row = (session_id, owner, title, plan.models[s], prompt, _at(created), _at(plan.last_at(s)))
        session_rows.append((created, row))
    user_rows.sort(key=lambda pair: pair[0])
    session_rows.sort(key=lambda pair: pair[0])
    phases["plan"] = time.perf_counter() - started
    say(f"planned {len(plan.keys):,} messages in {n_sessions:,} sessions ({phases['plan']:.1f}s)")

    conn = await _connect(dsn)
    try:
        mark = time.perf_counter()
        async with conn.transaction():
            await conn.copy_records_to_table(
                "users", records=[row for _, row in user_rows], columns=USER_COLUMNS
            )
            await conn.copy_records_to_table(
                "chat_sessions", records=[row for _, row in session_rows], columns=SESSION_COLUMNS
            )
        phases["users+sessions"] = time.perf_counter() - mark
        say(f"copied {users:,} users, {n_sessions:,} sessions ({phases['users+sessions']:.1f}s)")

        mark = time.perf_counter()
        batches = range(0, len(plan.keys), BATCH)
        copied = 0

        async def load(worker: int) -> None:
            nonlocal copied
            loader = await _connect(dsn)
            try:
                async with loader.transaction():
                    for at in batches[worker::workers]:
                        records = plan.rows(at, at + BATCH)
                        await loader.copy_records_to_table(
                            "messages", records=records, columns=MESSAGE_COLUMNS
                        )
                        copied += len(plan.keys[at : at + BATCH])
                        took = time.perf_counter() - mark
                        say(f"copied {copied:,}/{len(plan.keys):,} messages ({took:.1f}s)")
            finally:
                await loader.close()

        async with asyncio.TaskGroup() as group:
            for worker in range(workers):
                group.create_task(load(worker))
        phases["messages"] = time.perf_counter() - mark

        mark = time.perf_counter()
        await _verify(conn)
        phases["verify"] = time.perf_counter() - mark
        mark = time.perf_counter()
        # VACUUM sets hint bits and the visibility map now, so neither they nor autovacuum's
        # insert-triggered pass land in a benchmark; ANALYZE gives the planner its statistics.
        for table in ("users", "chat_sessions", "messages"):
            await conn.execute(f"VACUUM (ANALYZE) {table}")
        phases["vacuum+analyze"] = time.perf_counter() - mark
        say(f"checked foreign keys ({phases['verify']:.1f}s), vacuumed and analyzed "
            f"({phases['vacuum+analyze']:.1f}s)")  # fmt: skip
    finally:
        await conn.close()

    session_lists: dict[uuid.UUID, tuple[uuid.UUID, ...]] = {}
    busiest: dict[uuid.UUID, uuid.UUID] = {}
    for u, user_id in enumerate(plan.user_ids):
        own = range(u * sessions_per_user, (u + 1) * sessions_per_user)
        recent = sorted(own, key=lambda s: (plan.last_at(s), plan.session_ids[s]), reverse=True)
        session_lists[user_id] = tuple(plan.session_ids[s] for s in recent)
        busiest[user_id] = plan.session_ids[max(own, key=lambda s: plan.counts[s])]
    return SeedResult(
        user_ids=tuple(plan.user_ids),
        session_ids=session_lists,
        busiest_session=busiest,
        message_counts=dict(zip(plan.session_ids, plan.counts, strict=True)),
        long_sessions=tuple(
            (plan.user_ids[s // sessions_per_user], plan.session_ids[s])
            for s in sorted(long)
            if plan.counts[s] > LONG_THRESHOLD
        ),
        users=users,
        sessions=n_sessions,
        messages=len(plan.keys),
        seconds=time.perf_counter() - started,
        phases=phases,
    )


# --- the two reads, as Zyron runs them ----------------------------------------------------


class _Recorder:
    """Stands in for an AsyncSession: records the statements a repository function executes."""

    def __init__(self) -> None:
        self.statements: list[Executable] = []

    async def execute(self, statement: Executable, *_args: object, **_kwargs: object) -> _Empty:
        """Record the statement and return an empty result."""
        self.statements.append(statement)
        return _Empty()


class _Empty:
    """An empty result, enough for what the repository functions call on one."""

    def scalars(self) -> _Empty:
        """Return itself."""
        return self

    def all(self) -> list[object]:
        """Return no rows."""
        return []

    def scalar_one_or_none(self) -> object:
        """Return no row."""
        return None


@dataclass(frozen=True, slots=True)
class Query:
    """One SQL statement in the form Zyron's asyncpg dialect sends it, with its parameters."""

    sql: str
    params: tuple[Any, ...]


def _compile(statement: Executable) -> Query:
    """Compile a statement with the postgresql+asyncpg dialect into $n SQL and parameters."""
    if not isinstance(statement, ClauseElement):
        raise TypeError(f"cannot compile {statement!r}")
    compiled = statement.compile(dialect=_DIALECT)
    if not isinstance(compiled, SQLCompiler):
        raise TypeError(f"not an SQL statement: {statement!r}")
    values = compiled.params
    return Query(str(compiled), tuple(values[name] for name in compiled.positiontup or ()))


async def zyron_queries(user_id: uuid.UUID, session_id: uuid.UUID) -> dict[str, Query]:
    """Return the SQL the repository runs for GET /sessions and GET /sessions/{id}/messages."""
    recorder = _Recorder()
    db = cast(AsyncSession, recorder)
    await repository.list_sessions(db, user_id, SESSIONS_PAGE)
    await repository.owned_session(db, user_id, session_id)  # the OwnedSession dependency
    await repository.list_messages(db, user_id, session_id, limit=MESSAGES_PAGE)
    names = ("list_sessions", "owned_session", "list_messages")
    return dict(zip(names, map(_compile, recorder.statements), strict=True))


def claims_for(user_id: uuid.UUID) -> str:
    """Return the JSON claims unit_of_work sets for a built-in access token of `user_id`."""
    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "role": "authenticated",
        "aud": "authenticated",
        "iss": "zyron",
        "iat": now,
        "exp": now + 900,
        "session_id": str(uuid.uuid5(uuid.NAMESPACE_OID, str(user_id))),
        "email": None,
        "is_anonymous": False,
    }
    return json.dumps(claims, separators=(",", ":"))


IDENTITY_SQL = str(_SET_IDENTITY.compile(dialect=_DIALECT))


async def _as_user(conn: Any, user_id: uuid.UUID) -> None:
    """Take the identity of `user_id` for the current transaction, as unit_of_work does."""
    await conn.fetchrow(IDENTITY_SQL, "authenticated", claims_for(user_id))


def _literal(value: object) -> str:
    """Render a UUID or an int as an SQL literal (for EXECUTE of a prepared statement)."""
    if isinstance(value, uuid.UUID):
        return f"'{value}'"
    if isinstance(value, int):
        return str(value)
    raise TypeError(f"no literal form for {type(value).__name__}")


async def explain(
    dsn: str, user_id: uuid.UUID, session_id: uuid.UUID, *, generic: bool = True
) -> dict[str, str]:
    """Return EXPLAIN (ANALYZE, BUFFERS) of each read, run as the user under RLS.

    Keys: list_sessions, owned_session, list_messages (the custom plan a statement gets on its
    first executions), and with `generic` the same names plus "/generic": the generic plan
    Postgres may switch a prepared statement to after five executions on a connection.
    """
    queries = await zyron_queries(user_id, session_id)
    plans: dict[str, str] = {}
    conn = await asyncpg.connect(dsn)
    try:
        for name, query in queries.items():
            async with conn.transaction():
                await _as_user(conn, user_id)
                await conn.fetch(query.sql, *query.params)  # warm the cache first
                rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {query.sql}", *query.params)
            plans[name] = "\n".join(row[0] for row in rows)
            if not generic:
                continue
            async with conn.transaction():
                await _as_user(conn, user_id)
                await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
                await conn.execute(f"PREPARE bench_generic AS {query.sql}")
                try:
                    args = ", ".join(map(_literal, query.params))
                    rows = await conn.fetch(
                        f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE bench_generic({args})"
                    )
                finally:
                    await conn.execute("DEALLOCATE bench_generic")
            plans[f"{name}/generic"] = "\n".join(row[0] for row in rows)
    finally:
        await conn.close()
    return plans


async def direct_latency(
    dsn: str, pairs: Sequence[tuple[uuid.UUID, uuid.UUID]], repeats: int
) -> dict[str, list[float]]:
    """Time the reads over one asyncpg connection: BEGIN, set_config, the query, COMMIT.

    Keys (seconds per transaction): list_sessions (GET /sessions), list_messages (the
    list_messages query alone) and session_messages (what GET /sessions/{id}/messages runs:
    owned_session then list_messages, in one transaction). Statements are prepared and
    cached as SQLAlchemy's asyncpg dialect does; a short warm-up pass is not counted.
    """
    steps = [
        ("list_sessions", ("list_sessions",)),
        ("list_messages", ("list_messages",)),
        ("session_messages", ("owned_session", "list_messages")),
    ]
    results: dict[str, list[float]] = {key: [] for key, _ in steps}
    conn = await asyncpg.connect(dsn)
    try:
        for round_ in range(repeats + 1):
            chosen = pairs[:20] if round_ == 0 else pairs
            for i, (user_id, session_id) in enumerate(chosen):
                queries = await zyron_queries(user_id, session_id)
                # Rotate the order, so no key always pays for fetching a pair's pages first.
                turn = i % len(steps)
                for key, names in steps[turn:] + steps[:turn]:
                    began = time.perf_counter()
                    async with conn.transaction():
                        await _as_user(conn, user_id)
                        for name in names:
                            await conn.fetch(queries[name].sql, *queries[name].params)
                    if round_:
                        results[key].append(time.perf_counter() - began)
    finally:
        await conn.close()
    return results


# --- scratch databases ---------------------------------------------------------------------


def with_database(dsn: str, name: str) -> str:
    """Return `dsn` pointing at database `name`."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _checked(name: str) -> str:
    """Return `name` if it is a plain lower-case identifier, else raise ValueError."""
    if not _DB_NAME.fullmatch(name):
        raise ValueError(f"not a plain database name: {name!r}")
    return name


async def create_database(admin_dsn: str, name: str) -> str:
    """(Re)create an empty database `name` and return its DSN."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{_checked(name)}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(admin_dsn, name)


async def drop_database(admin_dsn: str, name: str) -> None:
    """Drop database `name` if it exists."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{_checked(name)}" WITH (FORCE)')
    finally:
        await conn.close()


async def migrate(dsn: str) -> None:
    """Upgrade the database to Zyron's newest schema, as `zyron migrate` does."""
    engine = create_engine("postgresql+asyncpg://" + dsn.split("://", 1)[1])
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


async def database_size(dsn: str) -> int:
    """Return pg_database_size of the database `dsn` names, in bytes."""
    conn = await asyncpg.connect(dsn)
    try:
        return cast(int, await conn.fetchval("SELECT pg_database_size(current_database())"))
    finally:
        await conn.close()


# --- by hand -------------------------------------------------------------------------------


def _summary(samples: Iterable[float]) -> str:
    """Return the median and p99 of `samples` (seconds) in milliseconds."""
    ordered = sorted(samples)
    if not ordered:
        return "no samples"
    p99 = ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]
    median = statistics.median(ordered)
    return f"median {median * 1000:.3f} ms, p99 {p99 * 1000:.3f} ms (n={len(ordered)})"


async def _main(args: argparse.Namespace) -> None:
    """Create, migrate and seed a scratch database; print timings, plans and latencies."""

    def say(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    dsn = await create_database(args.admin_dsn, args.database)
    try:
        await migrate(dsn)
        say(f"migrated {args.database}")
        result = await seed(
            dsn,
            users=args.users,
            sessions_per_user=args.sessions_per_user,
            messages=args.messages,
            progress=say,
        )
        size = await database_size(dsn)
        print(f"seeded {result.users:,} users, {result.sessions:,} sessions, "
              f"{result.messages:,} messages in {result.seconds:.1f}s "
              f"({', '.join(f'{k} {v:.1f}s' for k, v in result.phases.items())})")  # fmt: skip
        print(f"long sessions (> {LONG_THRESHOLD} messages): {len(result.long_sessions):,}")
        print(f"database size: {size / 2**20:.0f} MiB")
        has_long = bool(result.long_sessions)
        user_id, session_id = result.sample_pairs(1, seed=1, long_only=has_long)[0]
        print(f"\nplans for user {user_id}, session {session_id} "
              f"({result.message_counts[session_id]} messages):")  # fmt: skip
        for name, plan in (await explain(dsn, user_id, session_id)).items():
            print(f"\n--- {name}\n{plan}")
        for label, long_only in (
            ("busiest session of random users", False),
            ("long sessions", True),
        ):
            if long_only and not has_long:
                continue
            pairs = result.sample_pairs(args.pairs, seed=2, long_only=long_only)
            latencies = await direct_latency(dsn, pairs, args.repeats)
            print(f"\ndirect latency, {label}, {len(pairs)} random pairs x {args.repeats}:")
            for name, samples in latencies.items():
                print(f"  {name}: {_summary(samples)}")
    finally:
        if not args.keep:
            await drop_database(args.admin_dsn, args.database)
            say(f"dropped {args.database}")


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line and run."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--admin-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--database", default="zyron_seed_dev", help="scratch database name")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--sessions-per-user", type=int, default=5)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--pairs", type=int, default=300, help="random pairs to time")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
