"""Search the caller's messages and titles: check the query, run it, shape the page."""

from __future__ import annotations

import base64
import binascii
import math
import uuid
from datetime import UTC, datetime

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from zyron.errors import InvalidInput
from zyron.search import repository as repo
from zyron.search.query import parse
from zyron.search.schemas import SearchHit, SearchPage, SnippetPiece
from zyron.settings import Settings

_BAD_CURSOR = "before: not a cursor from a previous page of this search."


async def search(
    db: AsyncSession,
    settings: Settings,
    user_id: uuid.UUID,
    *,
    q: str,
    limit: int,
    before: str | None,
) -> SearchPage:
    """Return one page of the user's results for the query."""
    if limit > settings.max_search_page:
        raise InvalidInput(f"limit: at most {settings.max_search_page}")
    query = parse(q, settings.max_search_query_chars)
    after = decode_cursor(before) if before is not None else None
    hits = await repo.search(db, user_id, query, limit=limit, after=after)
    if not hits and after is None and not await repo.has_terms(db, query):
        raise InvalidInput("q: the query holds only words too common to search for.")
    next_before = encode_cursor(hits[-1]) if len(hits) == limit else None
    return SearchPage(results=[_hit(hit) for hit in hits], next_before=next_before)


def _hit(hit: repo.Hit) -> SearchHit:
    message = hit.kind == "message"
    return SearchHit(
        kind="message" if message else "title",
        session_id=hit.session_id,
        session_title=hit.session_title,
        message_id=hit.id if message else None,
        role="user" if hit.role == "user" else "assistant" if message else None,
        created_at=hit.created_at,
        snippet=pieces(hit.marked),
    )


def pieces(marked: str) -> list[SnippetPiece]:
    """Split marked text into runs, each a match or not."""
    out: list[SnippetPiece] = []
    for index, chunk in enumerate(marked.split(repo.START)):
        text, _, rest = chunk.partition(repo.STOP) if index else ("", "", chunk)
        if text:
            out.append(SnippetPiece(text=text, match=True))
        if rest:
            out.append(SnippetPiece(text=rest, match=False))
    return out


def encode_cursor(hit: repo.Hit) -> str:
    """Return the opaque cursor of a page ending at this hit."""
    raw = orjson.dumps([hit.rank, hit.created_at.isoformat(), hit.kind, str(hit.id)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# A rank is a float4 on Postgres: a cursor's must fit one to be compared with it.
_MAX_RANK = 3.4e38


def decode_cursor(value: str) -> repo.Cursor:
    """Read a cursor made by encode_cursor; 422 for anything else."""
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        rank, at, kind, hit_id = orjson.loads(raw)
        if not isinstance(rank, int | float) or isinstance(rank, bool):
            raise TypeError("rank")
        if not (isinstance(at, str) and isinstance(kind, str) and isinstance(hit_id, str)):
            raise TypeError("fields")
        created_at = datetime.fromisoformat(at)
        if created_at.tzinfo is None:
            raise ValueError("naive time")
        cursor = repo.Cursor(
            rank=float(rank),
            created_at=created_at.astimezone(UTC),
            kind=kind,
            id=uuid.UUID(hit_id),
        )
    except (binascii.Error, orjson.JSONDecodeError, TypeError, ValueError, OverflowError) as exc:
        raise InvalidInput(_BAD_CURSOR) from exc
    if cursor.kind not in ("message", "title") or not math.isfinite(cursor.rank):
        raise InvalidInput(_BAD_CURSOR)
    if abs(cursor.rank) > _MAX_RANK:
        raise InvalidInput(_BAD_CURSOR)
    return cursor
