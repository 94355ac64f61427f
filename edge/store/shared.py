"""SharedDiskStore: one worker's disk tier on a directory its sibling workers share.

Every worker process of a machine opens the same cache directory (docs/workers.md). Each one
indexes, writes, evicts and purges only its share of the objects (`owns`, decided by the
key's owner worker), within its share of the byte budget, and builds its files in its own
tmp directory, so a worker that restarts cleans only what it left behind. Any worker reads
any object: a key missing from this worker's index is opened straight from its
content-addressed path. That is safe without any lock between processes because a file
appears there only whole (fsync + rename, edge.store.diskfile) and its size is checked
against its header, an open descriptor keeps reading the file it opened when the owner
unlinks or replaces it, and whether the object may still be served is the purge rules'
question, which every worker answers for itself (edge.purge.invalidate).
"""

from __future__ import annotations

from edge.store import diskfile
from edge.store.disk import DiskHit, DiskStore
from edge.store.diskfile import OpenStatus

__all__ = ["SharedDiskStore"]


class SharedDiskStore(DiskStore):
    """A DiskStore that also serves the objects its sibling workers own, read-only."""

    shared_hits = 0  # lookups answered from a file another worker indexes
    shared_misses = 0  # lookups of keys outside the index that found no file

    async def lookup(self, key: bytes) -> DiskHit | None:
        """Own share through the index; anything else opened directly from its path."""
        if key in self:
            return await super().lookup(key)
        # The body checksum is left to the owner's verification pass; the header, the key
        # and the exact file size are checked here, so a torn file is never served.
        opened = await self.run_file_op(diskfile.open_for_read, self.root, key, False)
        if opened.status is OpenStatus.OK and opened.info is not None:
            self.shared_hits += 1
            return DiskHit(self, opened.fd, opened.info)
        self.shared_misses += 1
        return None
