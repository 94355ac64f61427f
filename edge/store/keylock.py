"""KeyLocks: one asyncio.Lock per store key, created on demand and dropped when unused.

A store holds a key's lock around every step that changes that key's files and index entry
together (publish + index update, remove + unlink, meta rewrite), so two commits of one key
can never publish in one order and index in the other.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

__all__ = ["KeyLocks"]


class KeyLocks:
    """A lazily populated map of per-key locks; a lock is freed once nobody holds or awaits it."""

    __slots__ = ("_locks",)

    def __init__(self) -> None:
        # key -> (lock, number of coroutines holding or waiting for it)
        self._locks: dict[bytes, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: bytes) -> AsyncIterator[None]:
        """Holds the lock for `key` for the duration of the block."""
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)
