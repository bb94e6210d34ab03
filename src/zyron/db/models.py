"""The tables: users, chat sessions, messages (made of parts), files and refresh tokens."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Text,
    Uuid,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import JSON

from zyron.db.types import UTCDateTime, utcnow

# A naming convention makes constraint names stable, so migrations can drop them by name.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Role(StrEnum):
    """Who wrote a message."""

    USER = "user"
    ASSISTANT = "assistant"


class Status(StrEnum):
    """Where a message is in its life."""

    STREAMING = "streaming"
    COMPLETE = "complete"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    ERROR = "error"


# JSON on SQLite, JSONB on Postgres: stored parsed, so it can be indexed and queried later.
PartsJSON = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    """Declarative base with the naming convention and portable column types."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime, uuid.UUID: Uuid}


class UserRole(StrEnum):
    """What an account may do: use the API, or also administer it (docs/admin.md)."""

    USER = "user"
    ADMIN = "admin"


class User(Base):
    """An account: built-in (with a password hash) or a Supabase Auth user (without)."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('user', 'admin')", name="role"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    # Stored lower-cased, so the unique index makes emails case-insensitive.
    email: Mapped[str | None] = mapped_column(String(320), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    role: Mapped[str] = mapped_column(String(16), default=UserRole.USER, server_default="user")
    # Set while an administrator has disabled the account: its tokens are refused (403).
    disabled_at: Mapped[datetime | None]


class ChatSession(Base):
    """A conversation owned by one user."""

    __tablename__ = "chat_sessions"
    __table_args__ = (
        Index(None, "user_id", "updated_at"),
        Index(
            "ix_chat_sessions_user_id_client_id",
            "user_id",
            "client_id",
            unique=True,
            postgresql_where=text("client_id IS NOT NULL"),
            sqlite_where=text("client_id IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200))
    # Created without a title: the placeholder stands until one is generated or given.
    title_pending: Mapped[bool] = mapped_column(default=False, server_default=false())
    model: Mapped[str | None] = mapped_column(String(200))
    system_prompt: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The id a front end gave the chat (useChat makes its own), unique per user.
    client_id: Mapped[str | None] = mapped_column(String(200))


class Message(Base):
    """One turn of a conversation; an assistant reply carries its status and usage."""

    __tablename__ = "messages"
    __table_args__ = (
        # A page of a session's messages: both filters, then the order, straight off the index.
        Index(None, "session_id", "user_id", "created_at", "id"),
        Index(None, "user_id"),
        Index(None, "parent_id"),
        Index(
            "ix_messages_session_id_client_id",
            "session_id",
            "client_id",
            postgresql_where=text("client_id IS NOT NULL"),
            sqlite_where=text("client_id IS NOT NULL"),
        ),
        Index(
            "ix_messages_streaming_lease",
            "lease_expires_at",
            postgresql_where=text("status = 'streaming'"),
            sqlite_where=text("status = 'streaming'"),
        ),
        CheckConstraint("role IN ('user', 'assistant')", name="role"),
        CheckConstraint(
            "status IN ('streaming', 'complete', 'cancelled', 'interrupted', 'error')",
            name="status",
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("chat_sessions.id", ondelete="CASCADE")
    )
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL")
    )
    role: Mapped[str] = mapped_column(String(16))
    # The text parts joined: what the seed's clients read, and what search will index.
    content: Mapped[str] = mapped_column(Text, default="")
    # The message in order: text, reasoning (with its provider signature, kept server-side)
    # and file parts (zyron.chat.parts). A streaming reply without reasoning writes only
    # `content` until its final save; readers take `[text]` from `content` while it is empty.
    parts: Mapped[list[dict[str, Any]]] = mapped_column(
        PartsJSON, default=list, server_default=text("'[]'")
    )
    status: Mapped[str] = mapped_column(String(16))
    model: Mapped[str | None] = mapped_column(String(200))
    # What the reply was billed, by kind (zyron.llm.base.TokenUsage): input is the uncached
    # part; null where the provider reported nothing (or the reply did not complete).
    input_tokens: Mapped[int | None]
    output_tokens: Mapped[int | None]
    cache_creation_input_tokens: Mapped[int | None]
    cache_read_input_tokens: Mapped[int | None]
    reasoning_tokens: Mapped[int | None]
    # What the reply cost, in nano-dollars (zyron.llm.prices); null: an unpriced model.
    cost_nanousd: Mapped[int | None] = mapped_column(BigInteger)
    stop_reason: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The id a front end gave the message (useChat makes its own), beside Zyron's.
    client_id: Mapped[str | None] = mapped_column(String(200))
    # While streaming: the producing process renews this; past it, the process is presumed dead.
    lease_expires_at: Mapped[datetime | None]
    # Set by POST /chat/{id}/cancel; the producing process, wherever it runs, notices it.
    cancel_requested_at: Mapped[datetime | None]


class File(Base):
    """An uploaded file: its metadata here, its bytes in the storage backend under `storage_key`."""

    __tablename__ = "files"
    __table_args__ = (Index(None, "user_id", "created_at", "id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # Display text only: never part of a storage key or a path.
    filename: Mapped[str] = mapped_column(String(255))
    # Decided from the bytes, never from the client.
    media_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    # Made by the server from ids alone (zyron.files.storage).
    storage_key: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MessageFile(Base):
    """A message that uses a file: what deleting a session or a file follows."""

    __tablename__ = "message_files"
    __table_args__ = (
        PrimaryKeyConstraint("message_id", "file_id"),
        Index(None, "file_id"),
        Index(None, "user_id"),
    )

    message_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    file_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))


class IdempotencyKey(Base):
    """A client's Idempotency-Key for POST /chat, tied to the exchange it produced."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (Index(None, "session_id"), Index(None, "assistant_message_id"))

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("chat_sessions.id", ondelete="CASCADE")
    )
    user_message_id: Mapped[uuid.UUID]
    assistant_message_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class UsageDaily(Base):
    """Tokens a user's replies used, per day (UTC) and model: kept when messages are deleted."""

    __tablename__ = "usage_daily"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    input_tokens: Mapped[int] = mapped_column(BigInteger)
    output_tokens: Mapped[int] = mapped_column(BigInteger)
    cache_creation_input_tokens: Mapped[int] = mapped_column(BigInteger, server_default="0")
    cache_read_input_tokens: Mapped[int] = mapped_column(BigInteger, server_default="0")
    reasoning_tokens: Mapped[int] = mapped_column(BigInteger, server_default="0")
    # Nano-dollars of the priced replies, and how many were of an unpriced model: while any
    # were, the row's cost is unknown (shown as null), but what is known still counts.
    cost_nanousd: Mapped[int] = mapped_column(BigInteger, server_default="0")
    unpriced_replies: Mapped[int] = mapped_column(Integer, server_default="0")
    replies: Mapped[int] = mapped_column(Integer)


class RefreshToken(Base):
    """A refresh token, stored as a hash; tokens rotated from one login share a family."""

    __tablename__ = "refresh_tokens"
    __table_args__ = (Index(None, "family"), Index(None, "user_id"))

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    family: Mapped[uuid.UUID]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Share(Base):
    """A read-only link to a snapshot of a session's active branch, found by its token's hash."""

    __tablename__ = "shares"
    __table_args__ = (Index(None, "user_id", "created_at"), Index(None, "session_id"))

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # Kept when the session is deleted: a snapshot outlives the conversation it was taken of.
    session_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("chat_sessions.id", ondelete="SET NULL")
    )
    # sha256 of the token: the token itself is shown once, at creation, and never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    up_to_message_id: Mapped[uuid.UUID | None]
    # The messages as they were, written once and never changed: read whole, so one value
    # (not one row per message, which suits a conversation that keeps changing).
    snapshot: Mapped[list[dict[str, Any]]] = mapped_column(PartsJSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ShareFile(Base):
    """A file a share shows: while any share shows it, deleting its session keeps it."""

    __tablename__ = "share_files"
    __table_args__ = (
        PrimaryKeyConstraint("share_id", "file_id"),
        Index(None, "file_id"),
        Index(None, "user_id"),
    )

    share_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("shares.id", ondelete="CASCADE"))
    file_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))


class DeletedAccount(Base):
    """An account deleted at `deleted_at`: tokens issued before then never bring it back."""

    __tablename__ = "deleted_accounts"

    # No foreign key: the user row is gone. Only the id is kept, nothing that names a person.
    user_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    deleted_at: Mapped[datetime]


class LimitOverride(Base):
    """One user's quotas and budgets where an administrator set them; null: the server's."""

    __tablename__ = "limit_overrides"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    # The same meaning as the settings they stand for: 0 turns that limit off for the user.
    daily_tokens: Mapped[int | None] = mapped_column(BigInteger)  # USER_DAILY_TOKENS
    daily_nanousd: Mapped[int | None] = mapped_column(BigInteger)  # USER_DAILY_USD
    monthly_nanousd: Mapped[int | None] = mapped_column(BigInteger)  # USER_MONTHLY_USD
    storage_bytes: Mapped[int | None] = mapped_column(BigInteger)  # MAX_STORAGE_BYTES_PER_USER
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
