"""Read an upload: a zip (checked against bombs and odd names) or JSON, and tell its format."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from zyron.errors import InvalidImport, PayloadTooLarge
from zyron.portability.schemas import DOCUMENT_NAME, FORMAT, VERSION
from zyron.settings import Settings

# Entries a zip may list: its directory is read whole, about a kilobyte of memory each.
# A ChatGPT export with more images than this imports from its conversations.json alone.
MAX_ZIP_ENTRIES = 10_000
CONVERSATIONS_NAME = "conversations.json"
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")

Format = Literal["zyron", "chatgpt", "claude"]


class SafeZip:
    """A zip read in memory: entries only by name, each within what is left of the budget."""

    def __init__(self, data: bytes, settings: Settings) -> None:
        try:
            self._zip = zipfile.ZipFile(io.BytesIO(data))
            infos = self._zip.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError) as exc:
            raise InvalidImport(f"file: not a readable zip ({exc}).") from exc
        if len(infos) > MAX_ZIP_ENTRIES:
            raise InvalidImport(
                f"file: the zip lists {len(infos)} entries; at most {MAX_ZIP_ENTRIES}. "
                f"Import the {CONVERSATIONS_NAME} inside it on its own."
            )
        for info in infos:
            _check_name(info.filename)
        self._infos = {info.filename: info for info in infos if not info.is_dir()}
        self._cap = self._budget = settings.max_import_unpacked_bytes

    @property
    def names(self) -> set[str]:
        """The names of the zip's files."""
        return set(self._infos)

    def read(self, name: str) -> bytes:
        """Return an entry's bytes, refusing one that unpacks past the budget (or lies)."""
        info = self._infos[name]
        too_big = PayloadTooLarge(
            f"{name}: the zip's entries unpack to more than {self._cap} bytes "
            "(MAX_IMPORT_UNPACKED_BYTES)."
        )
        if info.file_size > self._budget:
            raise too_big
        try:
            with self._zip.open(info) as entry:
                # One byte more than allowed: a header that understates the size is caught.
                data = entry.read(self._budget + 1)
        # RuntimeError: encrypted; NotImplementedError: a compression method zipfile lacks.
        except (
            zipfile.BadZipFile,
            EOFError,
            ValueError,
            OSError,
            RuntimeError,
            NotImplementedError,
        ) as exc:
            raise InvalidImport(f"{name}: the zip entry cannot be read ({exc}).") from exc
        if len(data) > self._budget:
            raise too_big
        self._budget -= len(data)
        return data


def _check_name(name: str) -> None:
    """Refuse names that would leave a directory if the zip were unpacked: no such zip is ours."""
    steps = name.split("/")
    if (
        name.startswith("/")
        or "\\" in name
        or "\x00" in name
        or ".." in steps
        or (steps and ":" in steps[0])
    ):
        raise InvalidImport(f"file: the zip holds an entry with an unsafe name ({name[:100]!r}).")


@dataclass
class Upload:
    """The document of an upload, the format it is in, and the zip it came in (if any)."""

    format: Format
    document: Any
    zip: SafeZip | None


def read_upload(data: bytes, settings: Settings) -> Upload:
    """Parse the upload and tell its format; 422 naming what is wrong, 413 over a cap."""
    if not data:
        raise InvalidImport("file: the file is empty.")
    archive: SafeZip | None = None
    name = "file"
    if data.startswith(_ZIP_MAGIC):
        archive = SafeZip(data, settings)
        name = _document_name(archive)
        data = archive.read(name)
    document = _json(data, name)
    kind, document = _detect(document, name)
    count = len(document["sessions"]) if kind == "zyron" else len(document)
    if count > settings.max_import_sessions:
        raise PayloadTooLarge(
            f"{name}: {count} conversations; one import may hold at most "
            f"{settings.max_import_sessions} (MAX_IMPORT_SESSIONS)."
        )
    messages = _message_count(kind, document)
    if messages > settings.max_import_messages:
        raise PayloadTooLarge(
            f"{name}: {messages} messages; one import may hold at most "
            f"{settings.max_import_messages} (MAX_IMPORT_MESSAGES)."
        )
    return Upload(kind, document, archive)


def _message_count(kind: Format, document: Any) -> int:
    """Count the messages before any is validated: the parse's cost grows with them."""
    conversations = document["sessions"] if kind == "zyron" else document
    field = {"zyron": "messages", "chatgpt": "mapping", "claude": "chat_messages"}[kind]
    count = 0
    for conversation in conversations:
        if isinstance(conversation, dict):
            items = conversation.get(field)
            if isinstance(items, list | dict):
                count += len(items)
    return count


def _document_name(archive: SafeZip) -> str:
    """Find the document of a zip: ours, or a conversations.json (at the top or one level in)."""
    names = archive.names
    if DOCUMENT_NAME in names:
        return DOCUMENT_NAME
    if CONVERSATIONS_NAME in names:
        return CONVERSATIONS_NAME
    nested = sorted(n for n in names if n.count("/") == 1 and n.endswith(f"/{CONVERSATIONS_NAME}"))
    if len(nested) == 1:
        return nested[0]
    raise InvalidImport(
        f"file: the zip holds neither {DOCUMENT_NAME} (a Zyron export) nor "
        f"{CONVERSATIONS_NAME} (a ChatGPT or Claude.ai export)."
    )


def _json(data: bytes, name: str) -> Any:
    """Parse JSON (a UTF-8 byte order mark allowed), naming the problem."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidImport(
            f"{name}: neither a zip nor valid UTF-8 JSON ({exc.msg} at byte {exc.pos})."
        ) from exc


def _detect(document: Any, name: str) -> tuple[Format, Any]:
    """Tell the format from the content; a single conversation is taken as a list of one."""
    if isinstance(document, dict):
        if "format" in document or "version" in document:
            if document.get("format") != FORMAT:
                raise InvalidImport(f"{name}: format: expected {FORMAT!r}.")
            version = document.get("version")
            if version != VERSION:
                raise InvalidImport(
                    f"{name}: version: {version!r} is not a version this server reads "
                    f"(it reads version {VERSION})."
                )
            if not isinstance(document.get("sessions"), list):
                raise InvalidImport(f"{name}: sessions: a list is required.")
            return "zyron", document
        if "mapping" in document or "chat_messages" in document:
            document = [document]
        else:
            raise InvalidImport(
                f'{name}: a JSON object that is neither a Zyron export (no "format") nor a '
                "ChatGPT or Claude.ai conversation."
            )
    if not isinstance(document, list):
        raise InvalidImport(f"{name}: expected a JSON object or a list of conversations.")
    if not document:
        raise InvalidImport(f"{name}: the list holds no conversations.")
    first = document[0]
    if not isinstance(first, dict):
        raise InvalidImport(f"{name}: [0]: a conversation must be a JSON object.")
    if "mapping" in first:
        return "chatgpt", document
    if "chat_messages" in first:
        return "claude", document
    raise InvalidImport(
        f'{name}: [0]: neither a ChatGPT conversation (no "mapping") nor a Claude.ai one '
        '(no "chat_messages").'
    )
