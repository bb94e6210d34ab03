"""Zyron's own export (version 1): sessions with every branch, and the files of its zip."""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import ValidationError

from zyron.portability.archive import SafeZip
from zyron.portability.imported import (
    ImportBatch,
    ImportedConversation,
    ImportedFile,
    ImportedMessage,
    in_tree_order,
    refuse,
    validation_problem,
)
from zyron.portability.schemas import ExportSession, ImportDocument
from zyron.portability.seal import unsealed


def read(document: dict[str, Any], archive: SafeZip | None, name: str, key: str) -> ImportBatch:
    """Read a Zyron export; with its zip, the files' bytes, checked against their sha256.

    Reasoning signatures are kept only under this server's seal (`key`: zyron.portability.seal).
    """
    try:
        parsed = ImportDocument.model_validate(document)
    except ValidationError as exc:
        raise validation_problem(exc, name) from exc
    files: dict[str, ImportedFile] = {}
    names = archive.names if archive is not None else set()
    for index, file in enumerate(parsed.files):
        here = f"{name}.files[{index}]"
        if str(file.id) in files:
            raise refuse(here, f"the id {file.id} is used twice")
        if archive is None or file.path is None:
            continue  # metadata only: its parts are imported as missing files
        if file.path not in names:
            raise refuse(f"{here}.path", f"{file.path!r} is not in the zip")
        data = archive.read(file.path)
        if len(data) != file.size or hashlib.sha256(data).hexdigest() != file.sha256:
            raise refuse(here, f"the bytes of {file.path!r} do not match its size and sha256")
        files[str(file.id)] = ImportedFile(
            ref=str(file.id),
            filename=file.filename,
            media_type=file.media_type,
            data=data,
            created_at=file.created_at,
            where=here,
        )
    conversations = [
        _conversation(session, f"{name}.sessions[{index}]", key)
        for index, session in enumerate(parsed.sessions)
    ]
    return ImportBatch("zyron", conversations, files)


def _conversation(session: ExportSession, where: str, key: str) -> ImportedConversation:
    messages = []
    for index, message in enumerate(session.messages):
        parts = [part.model_dump(mode="json", exclude_none=True) for part in message.parts]
        parts = [unsealed(key, part) for part in parts]
        if not parts and message.content:
            parts = [{"type": "text", "text": message.content}]
        messages.append(
            ImportedMessage(
                ref=str(message.id),
                parent_ref=None if message.parent_id is None else str(message.parent_id),
                role=message.role,
                parts=parts,
                created_at=message.created_at,
                where=f"{where}.messages[{index}]",
                # Nothing on this server produces it: a reply exported mid-stream ended there.
                status="interrupted" if message.status == "streaming" else message.status,
                model=message.model,
                stop_reason=message.stop_reason,
                usage=message.usage.model_dump(),
                cost_nanousd=message.cost_nanousd,
                client_id=message.client_id,
            )
        )
    return ImportedConversation(
        key=session.client_id or f"import:zyron:{session.id}",
        title=session.title,
        created_at=session.created_at,
        updated_at=session.updated_at,
        messages=in_tree_order(messages, where),
        where=where,
        model=session.model,
        system_prompt=session.system_prompt,
        original_id=session.id,
    )
