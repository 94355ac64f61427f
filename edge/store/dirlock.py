"""DirLock: one node per disk directory, held with an advisory lock for the node's whole life.

Two nodes on one disk directory would clean each other's tmp/ files, evict each other's
objects and interleave index rebuilds. So before the disk tier touches anything, the node
takes an exclusive `flock` on `<disk_dir>/edgecache.lock` (created if missing, never
deleted) and writes its pid into it. The kernel drops the lock when the process ends, even
on kill -9, so a crash never leaves a stale lock behind; a second node finds the lock held
and refuses to start with one line naming the holder's pid.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from edge.store.diskfile import DiskUnusable

__all__ = ["LOCK_NAME", "DirLock"]

LOCK_NAME = "edgecache.lock"


class DirLock:
    """An exclusive lock on a disk directory; `release()` (or process exit) lets it go."""

    __slots__ = ("_fd", "path")

    def __init__(self, fd: int, path: Path) -> None:
        self._fd = fd
        self.path = path

    @classmethod
    def acquire(cls, root: Path) -> DirLock | None:
        """Locks `root` (blocking file I/O: call from a thread).

        Raises DiskUnusable when another process holds the lock. Returns None when the lock
        file cannot even be created: the directory is unusable, and opening the disk tier
        next says why in its own words.
        """
        path = root / LOCK_NAME
        try:
            root.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise DiskUnusable(
                f"{root} is in use by another edgecache node (pid {holder}, lock {path}); "
                "give each node its own disk_dir"
            ) from None
        except OSError:
            os.close(fd)
            return None  # a filesystem without flock: the disk tier's own checks decide
        with contextlib.suppress(OSError):  # the pid is for the message only
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        return cls(fd, path)

    def release(self) -> None:
        """Unlocks; idempotent. The file stays (the next node reuses it)."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
