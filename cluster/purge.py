"""The purge journal: every purge this node knows, durable before it is applied or acknowledged.

A `Purge` is named by the node that accepted it and that node's sequence number (`id` is
"node:seq"); sequences are contiguous per accepting node. `PurgeLog` appends one msgpack
record per purge to a file and fsyncs it in the same executor call before `append()` or
`record()` returns, so an acknowledged purge survives kill -9. Each record also carries
the node's local arrival generation (1, 2, 3...): the order in which this node applies
purges. Reopening replays the file; a torn or corrupt tail (a crash mid-append, zeros after
a power cut) fails its checksum and is cut off, so the next append starts on a clean end.

The cursor a peer sends for catch-up is, per accepting node, the highest sequence below
which it has seen every purge (a watermark, not a maximum: a purge that was lost while a
later one arrived is still asked for). `since(cursor)` is what such a peer is missing.
`PurgeTarget` is the consumer (edge.purge.invalidate) that applies a purge to the caches.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import os
from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

import msgpack
import xxhash

__all__ = [
    "JournalError",
    "Purge",
    "PurgeKind",
    "PurgeLog",
    "PurgeTarget",
    "pack_purge",
    "read_journal",
    "unpack_purge",
]

log = logging.getLogger(__name__)


class PurgeKind(Enum):
    """What a purge names."""

    URL = "url"  # one URL, all its Vary variants
    PREFIX = "prefix"  # every URL starting with the value
    TAG = "tag"  # every object tagged so (Surrogate-Key / Cache-Tag) on one host
    ALL = "all"  # everything of one host


class JournalError(OSError):
    """The journal cannot be written; the purge was not accepted."""


@dataclass(frozen=True, slots=True)
class Purge:
    """One purge, as accepted by `node`."""

    node: str  # the node that accepted it from the admin API
    seq: int  # that node's sequence number, 1, 2, 3...
    kind: PurgeKind
    value: str  # the normalised URL or prefix ("http://host/target"), the tag, or the host
    host: str  # the host whose objects it concerns (lower-cased)
    soft: bool  # mark stale instead of removing
    at: float  # wall clock when it was accepted

    @property
    def id(self) -> str:
        """Unique across the deployment: "node:seq"."""
        return f"{self.node}:{self.seq}"


def pack_purge(p: Purge) -> list[Any]:
    """The purge as a msgpack-ready list (journal and wire format)."""
    return [p.node, p.seq, p.kind.value, p.value, p.host, p.soft, p.at]


def unpack_purge(fields: object) -> Purge:
    """Parses pack_purge's list; raises ValueError on anything else."""
    if not isinstance(fields, list | tuple) or len(fields) != 7:
        raise ValueError("a purge is a list of 7 fields")
    node, seq, kind, value, host, soft, at = fields
    if not (
        isinstance(node, str)
        and node
        and isinstance(seq, int)
        and not isinstance(seq, bool)
        and seq > 0
        and isinstance(value, str)
        and isinstance(host, str)
        and isinstance(soft, bool)
        and isinstance(at, int | float)
        and not isinstance(at, bool)
    ):
        raise ValueError("a purge field has the wrong type")
    return Purge(node, seq, PurgeKind(kind), value, host, soft, float(at))


class PurgeTarget(Protocol):
    """Applies purges to this node's caches (edge.purge.invalidate.Invalidator).

    Called once per purge, in increasing `gen` (the local arrival generation), after the
    purge is journaled. Returns how many objects it invalidated at once (a background sweep
    may invalidate more later).
    """

    async def apply(self, purge: Purge, gen: int) -> int: ...


def _frame(gen: int, purge: Purge) -> bytes:
    body = [gen, *pack_purge(purge)]
    check = xxhash.xxh32_intdigest(msgpack.packb(body, use_bin_type=True))
    return msgpack.packb([*body, check], use_bin_type=True)  # type: ignore[no-any-return]


def _read(path: Path) -> tuple[list[Purge], int]:
    """Runs in an executor: every intact record in order, and the byte length they span."""
    if not path.exists():
        return [], 0
    data = path.read_bytes()
    unpacker = msgpack.Unpacker(raw=False, use_list=True, strict_map_key=True)
    unpacker.feed(data)
    purges: list[Purge] = []
    good = 0
    try:
        for record in unpacker:
            if not isinstance(record, list) or len(record) != 9:
                break
            *body, check = record
            if check != xxhash.xxh32_intdigest(msgpack.packb(body, use_bin_type=True)):
                break
            if body[0] != len(purges) + 1:
                break
            purges.append(unpack_purge(body[1:]))
            good = unpacker.tell()
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        pass  # corrupt record: everything from here on is cut off
    return purges, good


def read_journal(path: Path) -> list[Purge]:
    """Blocking: a journal file's intact records in arrival order, read only (a sibling worker's replica)."""
    return _read(path)[0]


def _truncate(path: Path, length: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(length)
        os.fsync(f.fileno())


def _append(path: Path, data: bytes) -> None:
    """Runs in an executor: one write and one fsync."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


class PurgeLog:
    """Append-only journal of purges with per-node watermarks; open with `await PurgeLog.open()`.

    `path` None keeps the journal in memory only (a node without any state directory: its
    own sequence numbers are then recovered from its peers' journals at catch-up).
    """

    def __init__(self, path: Path | None, node_name: str, *, executor: Executor | None = None) -> None:
        self.path = path
        self.node_name = node_name
        self._executor = executor
        self._by_gen: list[Purge] = []  # index gen-1: local arrival order
        self._by_node: dict[str, list[int]] = {}  # node -> sorted seqs seen
        self._purges: dict[tuple[str, int], Purge] = {}
        self._marks: dict[str, int] = {}  # node -> every seq <= mark seen
        self._lock = asyncio.Lock()  # guards the file end: records are written in gen order

    @classmethod
    async def open(cls, path: Path | None, node_name: str, *, executor: Executor | None = None) -> PurgeLog:
        """Replays the journal file (creating its directory), cutting a torn tail off."""
        journal = cls(path, node_name, executor=executor)
        if path is None:
            return journal
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(executor, lambda: path.parent.mkdir(parents=True, exist_ok=True))
        purges, good = await loop.run_in_executor(executor, _read, path)
        size = await loop.run_in_executor(executor, lambda: path.stat().st_size if path.exists() else 0)
        if good < size:
            log.warning("purge journal %s: cutting %d bytes of torn or corrupt tail", path, size - good)
            await loop.run_in_executor(executor, _truncate, path, good)
        for purge in purges:
            journal._remember(purge)
        return journal

    @property
    def generation(self) -> int:
        """How many purges this node has journaled (the last local arrival generation)."""
        return len(self._by_gen)

    def seen(self, node: str, seq: int) -> bool:
        """Whether the purge node:seq is journaled here."""
        return (node, seq) in self._purges

    def cursor(self) -> dict[str, int]:
        """Per accepting node, the sequence up to which every purge is journaled here."""
        return dict(self._marks)

    def since(self, cursor: Mapping[str, int], limit: int = 1000) -> list[Purge]:
        """The purges a peer with `cursor` is missing, by node then seq, at most `limit`."""
        out: list[Purge] = []
        for node in sorted(self._by_node):
            seqs = self._by_node[node]
            start = bisect.bisect_right(seqs, cursor.get(node, 0))
            for seq in seqs[start:]:
                if len(out) >= limit:
                    return out
                out.append(self._purges[(node, seq)])
        return out

    def after(self, gen: int) -> list[tuple[int, Purge]]:
        """(gen, purge) of every purge that arrived after generation `gen`, in arrival order."""
        return [(i + 1, p) for i, p in enumerate(self._by_gen[gen:], start=gen)]

    async def append(
        self, kind: PurgeKind, value: str, host: str, soft: bool, *, now: float
    ) -> tuple[Purge, int]:
        """Journals a new purge accepted here (next own seq); returns it and its gen after fsync."""
        async with self._lock:
            own = self._by_node.get(self.node_name)
            purge = Purge(self.node_name, (own[-1] if own else 0) + 1, kind, value, host, soft, now)
            gen = await self._write(purge)
        return purge, gen

    async def record(self, purge: Purge) -> int | None:
        """Journals a purge from another node if new; returns its local gen, or None if seen."""
        async with self._lock:
            if (purge.node, purge.seq) in self._purges:
                return None
            return await self._write(purge)

    async def _write(self, purge: Purge) -> int:
        gen = len(self._by_gen) + 1
        if self.path is not None:
            try:
                await asyncio.get_running_loop().run_in_executor(
                    self._executor, _append, self.path, _frame(gen, purge)
                )
            except OSError as exc:
                raise JournalError(f"cannot journal purge {purge.id} to {self.path}: {exc}") from exc
        self._remember(purge)
        return gen

    def _remember(self, purge: Purge) -> None:
        self._by_gen.append(purge)
        self._purges[(purge.node, purge.seq)] = purge
        seqs = self._by_node.setdefault(purge.node, [])
        bisect.insort(seqs, purge.seq)
        mark = self._marks.get(purge.node, 0)
        while (purge.node, mark + 1) in self._purges:
            mark += 1
        self._marks[purge.node] = mark
