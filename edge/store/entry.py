"""EntryMeta: everything a store keeps about one cached response besides its body.

The metadata is what the hot path needs without re-parsing headers: the RFC 9111 §4.2.3
age inputs, the lifetime and stale windows computed when the response was stored, the
validators, the tags used by purge, and the body's length and checksum. It is serialised
with msgpack behind a version number so an old cache directory is either read or dropped,
never misread.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import msgpack

__all__ = ["META_VERSION", "EntryMeta", "MetaFormatError", "pack_meta", "unpack_meta"]

META_VERSION = 3  # 2: purge_gen; 3: slice_bytes, total_length

Headers = tuple[tuple[str, str], ...]


class MetaFormatError(ValueError):
    """Stored metadata cannot be decoded (corrupt, truncated or another version)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryMeta:
    """Metadata of one stored response (one variant when the response varies)."""

    key: bytes  # the store id: 16-byte xxh3-128 digest (the variant id when Vary applies)
    url: str  # normalised absolute URL, "scheme://host/raw-target", for purge and status
    status: int
    headers: Headers  # response headers to replay, hop-by-hop and per-hop headers removed
    request_time: float  # wall clock when the upstream request was sent (RFC 9111 §4.2.3)
    response_time: float  # wall clock when the response head arrived
    initial_age_s: float  # corrected_initial_age (RFC 9111 §4.2.3), fixed at store time
    lifetime_s: float  # freshness lifetime (§4.2.1) or heuristic lifetime (§4.2.2); 0 = stale
    swr_s: float = 0.0  # stale-while-revalidate window after expiry (RFC 5861)
    sie_s: float = 0.0  # stale-if-error window after expiry (RFC 5861); 0 when forbidden
    must_revalidate: bool = False  # must-revalidate / proxy-revalidate / s-maxage: never serve stale
    no_cache: bool = False  # stored but must be validated before every reuse (§5.2.2.4)
    etag: str | None = None
    last_modified: str | None = None
    vary: tuple[str, ...] = ()  # lower-cased Vary field names this variant was selected on
    tags: tuple[str, ...] = ()  # Surrogate-Key / Cache-Tag values, for purge by tag
    body_length: int = 0
    checksum: int = 0  # xxh3_64 of the body
    invalidated: bool = False  # soft purge: treat as stale whatever the lifetime says
    purge_gen: int = 0  # the node's purge generation when the fill began (edge.purge.invalidate)
    slice_bytes: int = 0  # sliced objects (edge.store.sliced): the slice size; 0 = stored whole
    total_length: int = 0  # sliced objects: the whole object's length (body_length is the slice's)

    def replace(self, **changes: Any) -> EntryMeta:
        """Returns a copy with the given fields changed."""
        return dataclasses.replace(self, **changes)

    def same_version(self, other: EntryMeta) -> bool:
        """Whether `other` describes the same stored object in the same state as this meta.

        A new fill or a 304 refresh gives a new response_time, a soft purge sets invalidated;
        update_meta compares with this so it never writes over a change it did not see.
        """
        return (
            self.response_time == other.response_time
            and self.request_time == other.request_time
            and self.invalidated == other.invalidated
        )

    def age(self, now: float) -> float:
        """Current age in seconds (RFC 9111 §4.2.3)."""
        return self.initial_age_s + max(0.0, now - self.response_time)

    def ttl(self, now: float) -> float:
        """Seconds of freshness left; negative once stale."""
        if self.invalidated:
            return -1.0
        return self.lifetime_s - self.age(now)


_FIELDS = [f.name for f in dataclasses.fields(EntryMeta)]


def pack_meta(meta: EntryMeta) -> bytes:
    """Serialises metadata as msgpack, prefixed by the format version."""
    values = [getattr(meta, name) for name in _FIELDS]
    return msgpack.packb([META_VERSION, values], use_bin_type=True)  # type: ignore[no-any-return]


def unpack_meta(data: bytes) -> EntryMeta:
    """Parses metadata written by pack_meta; raises MetaFormatError on anything else."""
    try:
        version, values = msgpack.unpackb(data, raw=False, use_list=True)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise MetaFormatError(f"undecodable metadata: {exc}") from exc
    if version != META_VERSION or not isinstance(values, list) or len(values) != len(_FIELDS):
        raise MetaFormatError(f"metadata version {version!r} is not {META_VERSION}")
    fields = dict(zip(_FIELDS, values, strict=False))
    try:
        fields["headers"] = tuple((str(n), str(v)) for n, v in fields["headers"])
        fields["vary"] = tuple(fields["vary"])
        fields["tags"] = tuple(fields["tags"])
        if not isinstance(fields["key"], bytes) or len(fields["key"]) != 16:
            raise MetaFormatError("metadata key is not a 16-byte id")
        return EntryMeta(**fields)
    except (TypeError, ValueError) as exc:
        raise MetaFormatError(f"malformed metadata: {exc}") from exc
