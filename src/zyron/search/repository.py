"""The search queries: Postgres full text search, or SQLite FTS5; filtered by the owner."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Float, String, Uuid, bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from zyron.db.types import UTCDateTime
from zyron.search.query import Query

# Matches are marked with two control characters, removed from the text beforehand, so a
# snippet can be split into pieces without any markup a client might render.
START, STOP = "\x02", "\x03"
MARKS = START + STOP


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ended: the last hit's place in the order."""

    rank: float
    created_at: datetime
    kind: str
    id: uuid.UUID


@dataclass(frozen=True, slots=True)
class Hit:
    """A row of a page, with its snippet as marked text."""

    kind: str
    id: uuid.UUID
    session_id: uuid.UUID
    session_title: str
    role: str | None
    created_at: datetime
    rank: float
    marked: str


_COLUMNS: dict[str, Any] = {
    "kind": String,
    "id": Uuid,
    "session_id": Uuid,
    "session_title": String,
    "role": String,
    "created_at": UTCDateTime,
    "rank": Float,
    "marked": String,
}

# ts_rank_cd reads only the row and the query, so a row's rank never drifts as others are
# added: a cursor stays valid. The snippet (ts_headline, which re-parses the text) is made
# for the page's rows only.
# The order is by rank, then time, all descending, so one row comparison says "after the
# cursor"; `kind` and `id` only break ties.
_POSTGRES = """
WITH parsed AS (SELECT websearch_to_tsquery(zyron_search_config(), :q) AS query),
-- A query of stop words and exclusions only (`the -zebra`) would match nearly everything:
-- querytree() is 'T' when no positive term is left; such a query finds nothing.
q AS (SELECT query FROM parsed WHERE querytree(query) <> 'T'),
hits AS (
    SELECT 'message' AS kind, m.id, m.session_id, m.role, m.created_at,
           ts_rank_cd(m.search_vector, q.query) AS rank
    FROM messages m, q
    WHERE m.user_id = :user_id AND m.search_vector @@ q.query
    UNION ALL
    SELECT 'title', s.id, s.id, NULL, s.created_at, ts_rank_cd(s.search_vector, q.query)
    FROM chat_sessions s, q
    WHERE s.user_id = :user_id AND s.search_vector @@ q.query
),
page AS (
    SELECT * FROM hits
    WHERE (CAST(:has_cursor AS boolean) IS FALSE OR
           (rank, created_at, kind, id) < (CAST(:c_rank AS real), :c_at, :c_kind, :c_id))
    ORDER BY rank DESC, created_at DESC, kind DESC, id DESC LIMIT :limit
)
SELECT page.kind, page.id, page.session_id, s.title AS session_title, page.role,
       page.created_at, page.rank,
       ts_headline(zyron_search_config(),
                   translate(CASE WHEN page.kind = 'message' THEN m.content ELSE s.title END,
                             :marks, ''),
                   q.query, :headline) AS marked
FROM page CROSS JOIN q
JOIN chat_sessions s ON s.id = page.session_id
LEFT JOIN messages m ON page.kind = 'message' AND m.id = page.id
ORDER BY page.rank DESC, page.created_at DESC, page.kind DESC, page.id DESC
"""

_HEADLINE = f'StartSel="{START}", StopSel="{STOP}", MaxWords=35, MinWords=15, ShortWord=0'

# FTS5's bm25() weighs a row against the whole index, so it moves as rows are added and
# could not anchor a cursor. The rank is instead how many times the query matched the row:
# highlight() marks each match with two characters, so the added length counts them.
_SQLITE = """
WITH hits AS (
    SELECT 'message' AS kind, m.id, m.session_id, m.role, m.created_at,
           (length(highlight(messages_fts, 0, char(2), char(3))) - length(messages_fts.content))
               / 2 AS rank
    FROM messages_fts JOIN messages m ON m.rowid = messages_fts.rowid
    WHERE messages_fts MATCH :expr AND m.user_id = :user_id
    UNION ALL
    SELECT 'title', s.id, s.id, NULL, s.created_at,
           (length(highlight(chat_sessions_fts, 0, char(2), char(3)))
               - length(chat_sessions_fts.title)) / 2
    FROM chat_sessions_fts JOIN chat_sessions s ON s.rowid = chat_sessions_fts.rowid
    WHERE chat_sessions_fts MATCH :expr AND s.user_id = :user_id
)
SELECT hits.kind, hits.id, hits.session_id, s.title AS session_title, hits.role,
       hits.created_at, hits.rank, '' AS marked
FROM hits JOIN chat_sessions s ON s.id = hits.session_id
WHERE (CAST(:has_cursor AS boolean) IS FALSE OR
       (hits.rank, hits.created_at, hits.kind, hits.id)
           < (CAST(:c_rank AS real), :c_at, :c_kind, :c_id))
ORDER BY hits.rank DESC, hits.created_at DESC, hits.kind DESC, hits.id DESC LIMIT :limit
"""

_SQLITE_SNIPPETS = {
    "message": "SELECT m.id, snippet(messages_fts, 0, char(2), char(3), ' … ', 30) AS marked "
    "FROM messages_fts JOIN messages m ON m.rowid = messages_fts.rowid "
    "WHERE messages_fts MATCH :expr AND m.id IN :ids",
    "title": "SELECT s.id, highlight(chat_sessions_fts, 0, char(2), char(3)) AS marked "
    "FROM chat_sessions_fts JOIN chat_sessions s ON s.rowid = chat_sessions_fts.rowid "
    "WHERE chat_sessions_fts MATCH :expr AND s.id IN :ids",
}


def _typed(sql: str) -> Any:
    return (
        text(sql)
        .bindparams(
            bindparam("user_id", type_=Uuid),
            bindparam("c_id", type_=Uuid),
            bindparam("c_at", type_=UTCDateTime),
        )
        .columns(**_COLUMNS)
    )


_POSTGRES_QUERY = _typed(_POSTGRES)
_SQLITE_QUERY = _typed(_SQLITE)


async def search(
    db: AsyncSession, user_id: uuid.UUID, query: Query, *, limit: int, after: Cursor | None
) -> list[Hit]:
    """Return a page of the user's hits, best first, after the cursor."""
    params: dict[str, Any] = {
        "user_id": user_id,
        "limit": limit,
        "has_cursor": after is not None,
        "c_rank": after.rank if after else 0.0,
        "c_at": after.created_at if after else datetime(1970, 1, 1, tzinfo=UTC),
        "c_kind": after.kind if after else "",
        "c_id": after.id if after else uuid.UUID(int=0),
    }
    if db.get_bind().dialect.name == "postgresql":
        params |= {"q": query.text, "marks": MARKS, "headline": _HEADLINE}
        rows = (await db.execute(_POSTGRES_QUERY, params)).all()
        return [Hit(**row._mapping) for row in rows]
    params["expr"] = query.fts5()
    rows = (await db.execute(_SQLITE_QUERY, params)).all()
    marked = await _sqlite_snippets(db, params["expr"], rows)
    return [Hit(**{**row._mapping, "marked": marked.get(row.id, "")}) for row in rows]


async def _sqlite_snippets(
    db: AsyncSession, expr: str, rows: Sequence[Any]
) -> dict[uuid.UUID, str]:
    """Make the page's snippets: FTS5 makes them only inside a MATCH of its own table."""
    marked: dict[uuid.UUID, str] = {}
    for kind, sql in _SQLITE_SNIPPETS.items():
        ids = [row.id for row in rows if row.kind == kind]
        if not ids:
            continue
        statement = (
            text(sql)
            .bindparams(bindparam("ids", type_=Uuid, expanding=True))
            .columns(id=Uuid, marked=String)
        )
        for found in (await db.execute(statement, {"expr": expr, "ids": ids})).all():
            marked[found.id] = found.marked
    return marked


async def has_terms(db: AsyncSession, query: Query) -> bool:
    """Tell whether Postgres finds a word to look for (not with stop words and exclusions alone)."""
    if db.get_bind().dialect.name != "postgresql":
        return True
    usable = await db.scalar(
        text(
            "SELECT numnode(query) > 0 AND querytree(query) <> 'T' "
            "FROM websearch_to_tsquery(zyron_search_config(), :q) AS query"
        ),
        {"q": query.text},
    )
    return bool(usable)
