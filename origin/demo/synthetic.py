"""Deterministic bodies for the demo origin's synthetic objects, cheap at any size.

A body is a sequence of 64 KiB blocks. Every block of one (name, version) shares a
pseudo-random base block (xxh3 of a counter, computed once and memoised), and each
block's first 16 bytes are replaced by a digest of its index. So a byte shifted by any
offset, inside a block or across blocks, compares unequal, and producing a block costs
one slice-and-join. The bytes do not depend on the size: a shorter body is a prefix of a
longer one, which makes ranges easy to check (`body(n, s, v)[a:b]`).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

import xxhash

__all__ = ["BLOCK_BYTES", "auto_etag", "body", "iter_body", "seed"]

BLOCK_BYTES = 64 * 1024
_TAG_BYTES = 16  # per-block index digest at the start of every block


def seed(name: str, version: str = "") -> bytes:
    """The 16-byte identity of one (name, version) pair's bytes."""
    return xxhash.xxh3_128_digest(f"{name}\x00{version}".encode("utf-8", "surrogateescape"))


@lru_cache(maxsize=256)
def _base_block(identity: bytes) -> bytes:
    # 4096 digests of 16 bytes: non-repeating within a block, so any shift shows.
    h = xxhash.xxh3_128_digest
    return b"".join(h(identity + i.to_bytes(4, "little")) for i in range(BLOCK_BYTES // 16))


def _block(identity: bytes, base: bytes, index: int) -> bytes:
    tag = xxhash.xxh3_128_digest(identity + b"blk" + index.to_bytes(8, "little"))
    return tag + base[_TAG_BYTES:]


def iter_body(
    name: str,
    size: int,
    version: str = "",
    chunk: int = BLOCK_BYTES,
    *,
    start: int = 0,
    end: int | None = None,
) -> Iterator[bytes]:
    """Yields bytes [start, end) of the body in chunks of `chunk` bytes (the last may be short)."""
    if size < 0 or chunk <= 0:
        raise ValueError("size must be >= 0 and chunk > 0")
    stop = size if end is None else min(end, size)
    if start >= stop:
        return
    identity = seed(name, version)
    base = _base_block(identity)
    pending = bytearray()
    pos = start
    while pos < stop:
        index, offset = divmod(pos, BLOCK_BYTES)
        take = min(BLOCK_BYTES - offset, stop - pos)
        block = _block(identity, base, index)
        piece = block if offset == 0 and take == BLOCK_BYTES else block[offset : offset + take]
        pos += take
        if not pending and len(piece) == chunk:
            yield piece  # the common aligned case: no copy
            continue
        pending += piece
        while len(pending) >= chunk:
            yield bytes(pending[:chunk])
            del pending[:chunk]
    if pending:
        yield bytes(pending)


def body(name: str, size: int, version: str = "") -> bytes:
    """Returns the whole body of `size` bytes (for small objects and for tests)."""
    return b"".join(iter_body(name, size, version))


def auto_etag(name: str, size: int, version: str = "") -> str:
    """The strong ETag the demo origin sends for `etag=auto`; changes with name, size, version."""
    text = f"{name}\x00{size}\x00{version}"
    digest = xxhash.xxh3_64_hexdigest(text.encode("utf-8", "surrogateescape"))
    return f'"{digest}"'
