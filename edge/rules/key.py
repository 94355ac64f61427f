"""CacheKey: the normalised request identity and its fixed-width xxh3-128 id.

The id, never the URL, names files on disk, so no request can name a path outside the
cache directory. The target is kept byte-for-byte as the client sent it: `/a%3Fx` and
`/a?x` are different keys, and `%2e%2e` is never resolved. Vary turns a primary key into
a secondary (variant) key by hashing the selected request header values under it.

`url_id` and `variant_id` are the only places ids are hashed: `make_key` and the hot path
(which hashes the request's own bytes without building a CacheKey) both call them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import xxhash

__all__ = [
    "CacheKey",
    "lower_host",
    "make_key",
    "normalise_field_value",
    "url_bytes",
    "url_id",
    "variant_id",
]


@dataclass(frozen=True, slots=True)
class CacheKey:
    """The identity of a cached object; `id` is what stores are indexed by."""

    id: bytes  # 16-byte xxh3-128 digest
    url: str  # "scheme://host/raw-target": what the id was computed from (primary part)
    host: str  # lower-cased host[:port]
    target: str  # raw request target as sent: path and query, undecoded

    @property
    def hex(self) -> str:
        """The id as 32 hex digits (file names, logs)."""
        return self.id.hex()

    def variant(self, vary: Iterable[str], headers: Mapping[str, str]) -> CacheKey:
        """Returns the secondary key for the request header values named by Vary."""
        return CacheKey(variant_id(self.id, vary, headers), self.url, self.host, self.target)


# url_id(url) -> the 16-byte id of a primary key: xxh3-128 of its "scheme://host/raw-target"
# bytes. The C function itself, not a wrapper: the fast path calls it on every hit.
url_id: Callable[[bytes], bytes] = xxhash.xxh3_128_digest


def variant_id(primary_id: bytes, vary: Iterable[str], headers: Mapping[str, str]) -> bytes:
    """The id of the variant that the header values named by Vary select under a primary id."""
    h = xxhash.xxh3_128(primary_id)
    for name in vary:
        h.update(b"\x00")
        h.update(name.encode("latin-1"))
        h.update(b"\x01")
        h.update(normalise_field_value(headers.get(name)).encode("latin-1", "replace"))
    return h.digest()


def normalise_field_value(value: str | None) -> str:
    """Folds whitespace around list separators so equivalent header values match (RFC 9111 §4.1)."""
    if value is None:
        return "\x02absent"
    return ",".join(part.strip() for part in value.split(",")).lower()


def url_bytes(url: str) -> bytes:
    """The bytes an id is computed from: the request's own bytes (latin-1 round trip).

    Targets and Host values arrive as bytes and are decoded as latin-1, so encoding back
    gives exactly what the client sent; the hot path hashes those bytes without decoding.
    Text that never was bytes (an operator's purge URL with other characters) uses UTF-8.
    """
    try:
        return url.encode("latin-1")
    except UnicodeEncodeError:
        return url.encode("utf-8", "surrogateescape")


def lower_host(host: str) -> str:
    """ASCII-only lower-casing, the same as bytes.lower() on the hot path."""
    if host.isascii():
        return host.lower()
    try:
        return host.encode("latin-1").lower().decode("latin-1")
    except UnicodeEncodeError:
        return host.lower()


def make_key(scheme: str, host: str, target: str) -> CacheKey:
    """Builds the primary key from scheme, host and the raw request target."""
    host = lower_host(host)
    url = f"{scheme}://{host}{target}"
    return CacheKey(url_id(url_bytes(url)), url, host, target)
