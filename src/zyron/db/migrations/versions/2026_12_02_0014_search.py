"""Full text search over messages and session titles, built without locking the tables.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02

Postgres: a `search_vector` column on messages and chat_sessions, kept by triggers (not a
STORED generated column, whose ADD COLUMN rewrites the table under an exclusive lock). A
reply is indexed when it is saved: its progress writes, while it streams, do not fire the
trigger. The text search configuration is the function zyron_search_config(), set from
SEARCH_CONFIG at start-up (zyron.search.reindex). The rows written before are filled, and
the indexes built, by 0015, which may be run again if it is interrupted.

SQLite: FTS5 tables over the same text (external content: the text is not stored twice),
kept by triggers with the same rule, and filled here.
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

MAINTENANCE = "current_setting('zyron.maintenance', true) = 'search'"

POSTGRES_SCHEMA = (
    # Nullable and without a default: adding either column changes the catalog only.
    "ALTER TABLE messages ADD COLUMN search_vector tsvector",
    "ALTER TABLE chat_sessions ADD COLUMN search_vector tsvector",
    "CREATE OR REPLACE FUNCTION zyron_search_config() RETURNS regconfig "
    "LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 'english'::regconfig $$",
    "CREATE OR REPLACE FUNCTION zyron_messages_search_vector() RETURNS trigger "
    "LANGUAGE plpgsql AS $$ BEGIN "
    "NEW.search_vector := CASE WHEN NEW.status = 'streaming' THEN NULL "
    "ELSE to_tsvector(zyron_search_config(), NEW.content) END; RETURN NEW; "
    "END $$",
    "CREATE OR REPLACE FUNCTION zyron_chat_sessions_search_vector() RETURNS trigger "
    "LANGUAGE plpgsql AS $$ BEGIN "
    "NEW.search_vector := CASE WHEN NEW.title_pending THEN NULL "
    "ELSE to_tsvector(zyron_search_config(), NEW.title) END; RETURN NEW; "
    "END $$",
    # A streaming reply is left out until it is saved; its progress writes change `content`
    # with the status still `streaming`, so they do not fire the trigger at all. Taken back
    # into `streaming` (a reply resumed after its process died), it leaves the index.
    "CREATE TRIGGER messages_search_vector_insert BEFORE INSERT ON messages "
    "FOR EACH ROW WHEN (NEW.status <> 'streaming') "
    "EXECUTE FUNCTION zyron_messages_search_vector()",
    "CREATE TRIGGER messages_search_vector_update BEFORE UPDATE OF content, status "
    "ON messages FOR EACH ROW WHEN (NEW.status IS DISTINCT FROM OLD.status OR "
    "(NEW.status <> 'streaming' AND NEW.content IS DISTINCT FROM OLD.content)) "
    "EXECUTE FUNCTION zyron_messages_search_vector()",
    "CREATE TRIGGER chat_sessions_search_vector BEFORE INSERT OR UPDATE OF title, "
    "title_pending ON chat_sessions FOR EACH ROW "
    "EXECUTE FUNCTION zyron_chat_sessions_search_vector()",
    # Forced RLS hides every row from the tables' owner too. The fill (0015, and a re-index
    # after SEARCH_CONFIG changes) runs as the owner with this setting on its own connection,
    # for as long as the fill lasts: nothing is lifted for anyone else, and nothing stays
    # lifted if the process dies.
    *(
        f"CREATE POLICY {table}_search_maintenance ON {table} AS PERMISSIVE FOR ALL "
        f"TO CURRENT_USER USING ({MAINTENANCE}) WITH CHECK ({MAINTENANCE})"
        for table in ("messages", "chat_sessions")
    ),
)

POSTGRES_DROP = (
    "DROP POLICY IF EXISTS messages_search_maintenance ON messages",
    "DROP POLICY IF EXISTS chat_sessions_search_maintenance ON chat_sessions",
    "DROP INDEX IF EXISTS ix_messages_search_vector",
    "DROP INDEX IF EXISTS ix_chat_sessions_search_vector",
    "DROP TRIGGER IF EXISTS messages_search_vector_insert ON messages",
    "DROP TRIGGER IF EXISTS messages_search_vector_update ON messages",
    "DROP TRIGGER IF EXISTS chat_sessions_search_vector ON chat_sessions",
    "DROP FUNCTION IF EXISTS zyron_messages_search_vector()",
    "DROP FUNCTION IF EXISTS zyron_chat_sessions_search_vector()",
    "DROP FUNCTION IF EXISTS zyron_search_config()",
    "ALTER TABLE messages DROP COLUMN IF EXISTS search_vector",
    "ALTER TABLE chat_sessions DROP COLUMN IF EXISTS search_vector",
)

# The rowid of `messages` and `chat_sessions` (both are rowid tables) keys their FTS rows.
SQLITE_SCHEMA = (
    "CREATE VIRTUAL TABLE messages_fts USING fts5(content, content='messages', "
    "content_rowid='rowid', tokenize='porter unicode61 remove_diacritics 2')",
    "CREATE VIRTUAL TABLE chat_sessions_fts USING fts5(title, content='chat_sessions', "
    "content_rowid='rowid', tokenize='porter unicode61 remove_diacritics 2')",
    # External content: a row is removed from the index with the exact text it was added
    # with, so each trigger adds and removes only what the indexing rule covers.
    "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages "
    "WHEN new.status <> 'streaming' BEGIN "
    "INSERT INTO messages_fts(rowid, content) VALUES (new.rowid, new.content); END",
    "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages "
    "WHEN old.status <> 'streaming' BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, content) "
    "VALUES ('delete', old.rowid, old.content); END",
    # One trigger per update, in this order: the old text out, then the new in. (Two
    # triggers would fire newest first, and the 'delete' of the old text would then take
    # the words both texts share out of the index.)
    # A progress write (streaming before and after) does not fire it at all.
    "CREATE TRIGGER messages_fts_update AFTER UPDATE OF content, status ON messages "
    "WHEN old.status <> 'streaming' OR new.status <> 'streaming' BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, content) "
    "SELECT 'delete', old.rowid, old.content WHERE old.status <> 'streaming' "
    "AND (new.status = 'streaming' OR old.content IS NOT new.content); "
    "INSERT INTO messages_fts(rowid, content) SELECT new.rowid, new.content "
    "WHERE new.status <> 'streaming' "
    "AND (old.status = 'streaming' OR old.content IS NOT new.content); END",
    "CREATE TRIGGER chat_sessions_fts_insert AFTER INSERT ON chat_sessions "
    "WHEN NOT new.title_pending BEGIN "
    "INSERT INTO chat_sessions_fts(rowid, title) VALUES (new.rowid, new.title); END",
    "CREATE TRIGGER chat_sessions_fts_delete AFTER DELETE ON chat_sessions "
    "WHEN NOT old.title_pending BEGIN "
    "INSERT INTO chat_sessions_fts(chat_sessions_fts, rowid, title) "
    "VALUES ('delete', old.rowid, old.title); END",
    "CREATE TRIGGER chat_sessions_fts_update AFTER UPDATE OF title, title_pending "
    "ON chat_sessions BEGIN "
    "INSERT INTO chat_sessions_fts(chat_sessions_fts, rowid, title) "
    "SELECT 'delete', old.rowid, old.title WHERE NOT old.title_pending; "
    "INSERT INTO chat_sessions_fts(rowid, title) SELECT new.rowid, new.title "
    "WHERE NOT new.title_pending; END",
)

SQLITE_FILL = (
    "INSERT INTO messages_fts(rowid, content) "
    "SELECT rowid, content FROM messages WHERE status <> 'streaming'",
    "INSERT INTO chat_sessions_fts(rowid, title) "
    "SELECT rowid, title FROM chat_sessions WHERE NOT title_pending",
)

SQLITE_DROP = (
    *(
        f"DROP TRIGGER IF EXISTS {name}"
        for table in ("messages", "chat_sessions")
        for name in (f"{table}_fts_{verb}" for verb in ("insert", "delete", "update"))
    ),
    "DROP TABLE IF EXISTS messages_fts",
    "DROP TABLE IF EXISTS chat_sessions_fts",
)


def upgrade() -> None:
    """Add the search columns and triggers (Postgres), or the FTS5 tables, filled (SQLite)."""
    if op.get_context().dialect.name != "postgresql":
        for statement in (*SQLITE_SCHEMA, *SQLITE_FILL):
            op.execute(statement)
        return
    for statement in POSTGRES_SCHEMA:
        op.execute(statement)


def downgrade() -> None:
    """Drop the search columns or tables, their triggers and functions."""
    postgres = op.get_context().dialect.name == "postgresql"
    for statement in POSTGRES_DROP if postgres else SQLITE_DROP:
        op.execute(statement)
