"""OwnedFile, Storage and StorageWork: what the files routes (and session deletion) depend on."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncGenerator
from typing import Annotated

from fastapi import Depends, Request

from zyron.auth.deps import CurrentUser
from zyron.db.deps import UserDb
from zyron.db.models import File
from zyron.errors import NotFound
from zyron.files import repository as repo
from zyron.files.storage import Storage, StorageError
from zyron.state import get_state

log = logging.getLogger("zyron.files")


class StorageWork:
    """Storage changes that follow the request's transaction.

    An object stored for a row that is never committed is deleted (`stored`); an object whose
    row was deleted goes once the deletion is committed (`orphaned`), so a failed commit never
    leaves a row pointing at nothing.
    """

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._stored: list[str] = []
        self._orphaned: list[str] = []

    def stored(self, key: str) -> None:
        """Remember an object written for a row of this transaction."""
        self._stored.append(key)

    def orphaned(self, keys: list[str]) -> None:
        """Remember objects whose rows this transaction deletes."""
        self._orphaned.extend(keys)

    async def rolled_back(self) -> None:
        """Delete the objects written for rows that were not committed."""
        await remove_objects(self.storage, self._stored)

    async def committed(self) -> None:
        """Delete the objects whose rows are gone."""
        await remove_objects(self.storage, self._orphaned)


async def remove_objects(storage: Storage, keys: list[str]) -> None:
    """Delete objects; a failure is logged (the object is then an orphan), never raised."""
    for key in keys:
        try:
            await storage.delete(key)
        except StorageError as exc:
            log.warning("stored object not deleted", extra={"reason": exc.reason})


async def _storage_work(request: Request) -> AsyncGenerator[StorageWork, None]:
    work = StorageWork(get_state(request).storage)
    try:
        yield work
    except BaseException:
        await work.rolled_back()
        raise
    await work.committed()


# scope="request": this ends after the request's unit of work (scope="function") has
# committed or rolled back, whatever the order of a route's parameters.
AfterCommit = Annotated[StorageWork, Depends(_storage_work, scope="request")]
"""Storage changes made final, or undone, with the request's transaction."""


def _storage(request: Request) -> Storage:
    return get_state(request).storage


FileStorage = Annotated[Storage, Depends(_storage)]
"""The application's file storage."""


async def _owned_file(file_id: uuid.UUID, principal: CurrentUser, db: UserDb) -> File:
    found = await repo.owned_file(db, principal.user_id, file_id)
    if found is None:
        # 404, not 403: nobody learns that someone else's id exists.
        raise NotFound("No such file.")
    return found


OwnedFile = Annotated[File, Depends(_owned_file)]
"""The file named in the path, if the caller owns it (404 otherwise)."""
