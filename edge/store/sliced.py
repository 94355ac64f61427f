"""A sliced object in any Store: one record under the object's id, one entry per slice.

The record (status SLICED_STATUS, no body) carries what the object's clients see and what
every slice is checked against: the 200 head, ETag, Last-Modified, freshness, tags, the total
length and the slice size. Slice k is an ordinary entry with its own body, length and xxh3
checksum (so the disk tier's crash safety and restart checks cover it), stored under an id
derived from the object id, the object's version (validators and total) and k. A slice of
another version of the object therefore never has the id a record asks for, and a slice is
also checked against the record when read: a mismatch is a miss, never a mixed body.

Eviction: each slice is its own entry in the tier's policy (S3-FIFO), so it is weighed by
its own use. Heads of videos, read by every player, stay; tails read once leave first; a
partial object is still served, its missing slices fetched again on demand. The record is
tiny and read on every request, so it outlives its slices; without its record a slice is
unreachable and leaves with the next evictions.
"""

from __future__ import annotations

import xxhash

from edge.store.base import RemoveReason, Store
from edge.store.entry import EntryMeta

__all__ = [
    "SLICED_STATUS",
    "SLICE_LIFETIME_S",
    "drop_object",
    "is_sliced",
    "record_of",
    "slice_id",
    "slice_length",
    "slice_matches",
    "slice_meta",
    "slice_total",
]

SLICE_LIFETIME_S = 10 * 365 * 86400.0  # slices never expire on their own: the record decides

# A stored entry with this status is a sliced object's record: the object's 200 head, its
# validators, total length and slice size; its body lives in slice entries.
SLICED_STATUS = 1


def is_sliced(meta: EntryMeta) -> bool:
    """Whether a stored entry is a sliced object's record."""
    return meta.status == SLICED_STATUS


def record_of(meta: EntryMeta, *, total: int, slice_bytes: int) -> EntryMeta:
    """The record of a sliced object whose head is `meta` (a 200 entry)."""
    return meta.replace(status=SLICED_STATUS, total_length=total, slice_bytes=slice_bytes)


def _version(record: EntryMeta) -> bytes:
    tag = f"{record.etag or ''}\n{record.last_modified or ''}\n{record.total_length}\n{record.slice_bytes}"
    return tag.encode("utf-8", "surrogateescape")


def slice_id(record: EntryMeta, index: int) -> bytes:
    """The store id of slice `index` of this version of the object."""
    return xxhash.xxh3_128_digest(record.key + b"\0slice\0" + _version(record) + index.to_bytes(8, "big"))


def slice_length(record: EntryMeta, index: int) -> int:
    """How many bytes slice `index` of the object holds (the last one may be short)."""
    start = index * record.slice_bytes
    return max(0, min(start + record.slice_bytes, record.total_length) - start)


def slice_total(record: EntryMeta) -> int:
    """How many slices the object has."""
    return -(-record.total_length // record.slice_bytes)


def slice_meta(record: EntryMeta, index: int, purge_gen: int) -> EntryMeta:
    """The entry of one slice: the object's URL, tags and validators, no headers of its own."""
    return record.replace(
        key=slice_id(record, index),
        status=206,
        headers=(),
        lifetime_s=SLICE_LIFETIME_S,
        vary=(),
        purge_gen=purge_gen,
        invalidated=False,
    )


def slice_matches(meta: EntryMeta, record: EntryMeta, index: int) -> bool:
    """Whether a stored slice belongs to this record (same version, the expected length)."""
    return (
        meta.status == 206
        and meta.etag == record.etag
        and meta.last_modified == record.last_modified
        and meta.total_length == record.total_length
        and meta.slice_bytes == record.slice_bytes
        and meta.body_length == slice_length(record, index)
    )


async def drop_object(store: Store, record: EntryMeta) -> None:
    """Removes a sliced object: its record, then every slice of this version."""
    await store.remove(record.key, RemoveReason.REPLACED)
    for index in range(slice_total(record)):
        await store.remove(slice_id(record, index), RemoveReason.REPLACED)
