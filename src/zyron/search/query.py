"""Read a search query the way web search engines do, and check it before any SQL runs.

The syntax is Postgres's websearch_to_tsquery: words, "quoted phrases", `OR` between
alternatives, `-` before what must not appear. Postgres parses it itself; for SQLite the same
query becomes an FTS5 expression, every term quoted so no FTS5 operator can come from input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from zyron.errors import InvalidInput

_TOKEN = re.compile(r'(-?)"([^"]*)"?|(\S+)')
_WORD = re.compile(r"[^\W_]")  # a letter or a digit: what a tokenizer keeps


@dataclass(frozen=True, slots=True)
class Query:
    """A checked query: its text as sent, and its positive and negated terms."""

    text: str
    # Each group holds alternatives joined by OR; the groups must all match.
    groups: tuple[tuple[str, ...], ...]
    negated: tuple[str, ...]

    def fts5(self) -> str:
        """Return the query as an FTS5 MATCH expression."""
        positive = " AND ".join(
            "(" + " OR ".join(_quoted(term) for term in group) + ")" for group in self.groups
        )
        if not self.negated:
            return positive
        return f"({positive}) NOT (" + " OR ".join(_quoted(term) for term in self.negated) + ")"


def _quoted(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


def parse(raw: str, max_chars: int) -> Query:
    """Return the query, or raise a 422 that says why it cannot be searched for."""
    # No stored text holds NUL (Postgres refuses it): between words it only separates them.
    text = raw.replace("\x00", " ").strip()
    if not text:
        raise InvalidInput("q: give a word or a phrase to search for.")
    if len(text) > max_chars:
        raise InvalidInput(
            f"q: the query has {len(text)} characters; at most {max_chars} "
            "(MAX_SEARCH_QUERY_CHARS)."
        )
    groups: list[list[str]] = []
    negated: list[str] = []
    join_next = False
    for match in _TOKEN.finditer(text):
        minus, phrase, bare = match.group(1), match.group(2), match.group(3)
        if bare is not None and bare.upper() == "OR":
            join_next = bool(groups)
            continue
        if bare is not None and bare.startswith("-"):
            minus, bare = "-", bare[1:]
        term = (phrase if phrase is not None else bare or "").strip()
        if not _WORD.search(term):
            continue  # punctuation alone: nothing any index holds
        if minus:
            negated.append(term)
        elif join_next:
            groups[-1].append(term)
        else:
            groups.append([term])
        join_next = False
    if not groups:
        raise InvalidInput(
            "q: the query has no word to look for, only operators or excluded words."
        )
    return Query(text, tuple(tuple(group) for group in groups), tuple(negated))
