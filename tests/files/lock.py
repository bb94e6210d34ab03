"""Hold a user's file lock (zyron.files.repository.lock_files_of) while a request queues on it."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from zyron.files.repository import FILES_LOCK_NAMESPACE, file_lock_key


async def queued_behind_file_lock(
    dsn: str,
    user_id: uuid.UUID,
    start: Callable[[], Any],
    *,
    meanwhile: Callable[[asyncpg.Connection], Awaitable[object]] | None = None,
) -> Any:
    """Hold the user's lock, run `start` in a thread, and see it wait for the lock.

    Waiting is read in pg_locks, never timed. `meanwhile` then runs in the holder's
    transaction, which commits; the thread's result is returned once it finishes.
    """
    holder = await asyncpg.connect(dsn)
    result: dict[str, Any] = {}
    try:
        async with holder.transaction():
            await holder.execute(
                "SELECT pg_advisory_xact_lock($1, $2)", FILES_LOCK_NAMESPACE, file_lock_key(user_id)
            )
            thread = threading.Thread(target=lambda: result.setdefault("done", start()))
            thread.start()
            waiting = 0
            for _ in range(400):  # up to 20 s for the request to reach the lock
                waiting = await holder.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                    "AND classid = $1 AND objid = $2",
                    FILES_LOCK_NAMESPACE,
                    file_lock_key(user_id) & 0xFFFFFFFF,
                )
                if waiting:
                    break
                await asyncio.sleep(0.05)
            assert waiting == 1, "the request never waited for the user's file lock"
            assert "done" not in result  # it cannot have finished past the lock
            if meanwhile is not None:
                await meanwhile(holder)
        await asyncio.to_thread(thread.join, 30)
    finally:
        await holder.close()
    return result["done"]
