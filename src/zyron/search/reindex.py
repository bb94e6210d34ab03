"""Fill Postgres's search columns in batches, build their indexes, follow SEARCH_CONFIG."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from zyron.db.engine import uses_transaction_pooler
from zyron.db.migrate import (
    NO_STATEMENT_TIMEOUT,
    NO_STATEMENT_TIMEOUT_IN_TRANSACTION,
    release_session_lock,
    take_session_lock,
)
from zyron.settings import ConfigError

log = logging.getLogger("zyron.search")

# Rows per UPDATE: each batch is its own short transaction, so writers wait on a row for
# milliseconds at most, and vacuum can reclaim what the previous batches left.
BATCH = 5000

# Any constant, unlike the migrations' own: a re-index runs after them, on its own lock.
REINDEX_LOCK_KEY = 0x7A797273  # "zyrs"


@dataclass(frozen=True, slots=True)
class GinIndex:
    """A GIN index on a table's search_vector."""

    table: str

    @property
    def name(self) -> str:
        """Return the index's name (the naming convention's)."""
        return f"ix_{self.table}_search_vector"

    def drop_if_invalid_sql(self) -> str:
        """Return a statement dropping the index if a failed CONCURRENTLY build left it invalid."""
        return (
            "DO $repair$ BEGIN IF EXISTS (SELECT FROM pg_index i JOIN pg_class c "
            f"ON c.oid = i.indexrelid WHERE c.relname = '{self.name}' AND NOT i.indisvalid) "
            f"THEN DROP INDEX {self.name}; END IF; END $repair$"
        )

    def create_sql(self, *, concurrently: bool) -> str:
        """Return the CREATE INDEX statement."""
        how = "CONCURRENTLY " if concurrently else ""
        return (
            f"CREATE INDEX {how}IF NOT EXISTS {self.name} ON {self.table} USING gin (search_vector)"
        )


INDEXES = (GinIndex("messages"), GinIndex("chat_sessions"))

_VECTORS = {
    "messages": (
        "to_tsvector(zyron_search_config(), content)",
        "status <> 'streaming'",
    ),
    "chat_sessions": (
        "CASE WHEN title_pending THEN NULL ELSE to_tsvector(zyron_search_config(), title) END",
        "true",
    ),
}

# What lets the tables' owner see their rows under forced RLS: the policies 0014 made.
_MAINTENANCE_ON = "SELECT set_config('zyron.maintenance', 'search', {local})"
_MAINTENANCE_OFF = "RESET zyron.maintenance"


def fill_all() -> list[str]:
    """Return one transaction's statements that fill every row: for `zyron migrate --sql`,
    and behind a transaction pooler, where batches cannot span transactions."""
    # The SQL is built from this module's constants only, never from input.
    return [
        _MAINTENANCE_ON.format(local="true"),
        *(
            f"UPDATE {table} SET search_vector = {vector} WHERE {indexed}"  # noqa: S608
            for table, (vector, indexed) in _VECTORS.items()
        ),
    ]


def fill(connection: Connection) -> int:
    """Set every row's search_vector, in batches that each commit; return the rows done.

    The connection must be in autocommit mode. It runs as the tables' owner, whom forced RLS
    shows no row but through the maintenance policies: the setting they read is on for this
    connection alone, and only while the fill runs (a connection that dies takes it along).
    """
    connection.exec_driver_sql(_MAINTENANCE_ON.format(local="false"))
    try:
        return sum(
            _fill_table(connection, table, vector, indexed)
            for table, (vector, indexed) in _VECTORS.items()
        )
    finally:
        connection.exec_driver_sql(_MAINTENANCE_OFF)


def _fill_table(connection: Connection, table: str, vector: str, indexed: str) -> int:
    # Walk the primary key: each batch starts where the last ended, so no row is read twice.
    boundary = text(
        f"SELECT id FROM {table} WHERE id > :after ORDER BY id OFFSET :skip LIMIT 1"  # noqa: S608
    )
    update = text(
        f"UPDATE {table} SET search_vector = {vector} "  # noqa: S608
        f"WHERE id > :after AND (CAST(:upto AS uuid) IS NULL OR id <= :upto) AND {indexed}"
    )
    after = uuid.UUID(int=0)
    done = 0
    while True:
        upto = connection.execute(boundary, {"after": after, "skip": BATCH - 1}).scalar()
        done += connection.execute(update, {"after": after, "upto": upto}).rowcount
        if upto is None:
            break
        after = upto
    log.info("search index filled", extra={"table": table, "rows": done})
    return done


def build_concurrently(connection: Connection, index: GinIndex) -> None:
    """Build the index without blocking writes; first drop one a failed build left invalid."""
    invalid = connection.execute(
        text(
            "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = :name AND NOT i.indisvalid"
        ),
        {"name": index.name},
    ).scalar()
    if invalid:
        connection.exec_driver_sql(f"DROP INDEX CONCURRENTLY IF EXISTS {index.name}")
    connection.exec_driver_sql(index.create_sql(concurrently=True))


# Set on zyron_search_config() while a re-index it asked for is unfinished.
PENDING = "reindex pending"


async def follow_setting(
    engine: AsyncEngine, config: str, *, transaction_pooler: bool | None = None
) -> None:
    """Re-index Postgres when SEARCH_CONFIG differs from the configuration the index was built with.

    Replicas starting together take turns on a lock; the one that changes the function
    re-indexes, the others then find it current. A re-index cut short is marked pending on
    the function, and the next start finishes it. Behind a transaction pooler, where no
    lock or setting outlives a transaction, all of it is one transaction.
    """
    if engine.dialect.name != "postgresql":
        return
    async with engine.connect() as conn:
        if uses_transaction_pooler(engine.url, transaction_pooler):
            await conn.run_sync(_follow_in_one_transaction, config)
        else:
            await conn.run_sync(_follow_setting, config)


def _state(connection: Connection) -> tuple[str, str | None]:
    current, note = connection.exec_driver_sql(
        "SELECT zyron_search_config()::text, "
        "obj_description('zyron_search_config()'::regprocedure, 'pg_proc')"
    ).one()
    return str(current), note


def _follow_setting(connection: Connection, config: str) -> None:
    take_session_lock(connection, REINDEX_LOCK_KEY)
    try:
        connection.exec_driver_sql(NO_STATEMENT_TIMEOUT)
        current, note = _state(connection)
        connection.commit()
        if current == config and note != PENDING:
            return
        if current != config:
            _switch(connection, current, config)
            connection.commit()
        # The same connection, its transactions now each a statement: the batches commit.
        connection.execution_options(isolation_level="AUTOCOMMIT")
        fill(connection)
        connection.exec_driver_sql("COMMENT ON FUNCTION zyron_search_config() IS NULL")
        log.info("search re-indexed", extra={"config": config})
    finally:
        release_session_lock(connection, REINDEX_LOCK_KEY)


def _follow_in_one_transaction(connection: Connection, config: str) -> None:
    connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({REINDEX_LOCK_KEY})")
    connection.exec_driver_sql(NO_STATEMENT_TIMEOUT_IN_TRANSACTION)
    current, note = _state(connection)
    if current == config and note != PENDING:
        connection.commit()
        return
    if current != config:
        _switch(connection, current, config)
    for statement in fill_all():
        connection.exec_driver_sql(statement)
    connection.exec_driver_sql("COMMENT ON FUNCTION zyron_search_config() IS NULL")
    connection.commit()
    log.info("search re-indexed", extra={"config": config})


def _switch(connection: Connection, current: str, config: str) -> None:
    """Point the function at the new configuration, marked pending until the fill is done."""
    # An unknown configuration is refused here, before anything changes.
    known = connection.execute(
        text("SELECT EXISTS (SELECT FROM pg_ts_config WHERE cfgname = :name)"), {"name": config}
    ).scalar()
    if not known:
        raise ConfigError(
            f"SEARCH_CONFIG={config!r} is not a text search configuration of this "
            "database (pg_ts_config lists those it has)"
        )
    log.warning("search configuration changed; re-indexing", extra={"from": current, "to": config})
    # SEARCH_CONFIG is checked against a pattern of identifier characters (zyron.settings).
    connection.exec_driver_sql(
        "CREATE OR REPLACE FUNCTION zyron_search_config() RETURNS regconfig "
        f"LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT '{config}'::regconfig $$"
    )
    connection.exec_driver_sql(f"COMMENT ON FUNCTION zyron_search_config() IS '{PENDING}'")
