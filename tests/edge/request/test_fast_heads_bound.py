"""FastHeads (prebuilt fast-hit responses) holds a bounded number of bytes, not only of entries:
the whole responses it keeps are copies of small bodies, memory beside the store's budget
(issue 10, found with bench/load/soak.py and tracemalloc)."""

from __future__ import annotations

import pytest

from edge.request.deliver import INLINE_BODY_MAX, FastHeads
from edge.store.entry import EntryMeta

pytestmark = pytest.mark.timeout(10)

MiB = 1024 * 1024
NOW = 1_000.0


def meta(i: int) -> EntryMeta:
    return EntryMeta(
        key=i.to_bytes(16, "big"),
        url=f"http://demo.test/obj/{i}",
        status=200,
        headers=(("Content-Type", "text/plain"),),
        request_time=NOW,
        response_time=NOW,
        initial_age_s=0.0,
        lifetime_s=600.0,
        body_length=INLINE_BODY_MAX,
    )


def test_held_bytes_stay_under_the_byte_limit_when_many_large_small_objects_are_hit() -> None:
    heads = FastHeads(byte_limit=1 * MiB)
    body = b"x" * INLINE_BODY_MAX
    peak = 0
    for i in range(200):  # 200 x 64 KiB = 12.5 MiB of distinct whole responses
        answer = heads.get(meta(i), body, NOW, head_only=False)
        assert isinstance(answer, bytes) and answer.endswith(body)
        peak = max(peak, heads.held_bytes)
    assert peak <= 1 * MiB + INLINE_BODY_MAX + 1024  # the limit plus the one entry that crossed it


def test_held_bytes_count_replacements_and_drops_when_entries_change() -> None:
    heads = FastHeads()
    first, body = meta(1), b"y" * 1000
    heads.get(first, body, NOW, head_only=False)
    one = heads.held_bytes
    assert 1000 < one < 2 * 1000 + 1024  # a head plus head + body
    heads.get(first, body, NOW + 1, head_only=False)  # rebuilt the next second: replaced, not added
    assert heads.held_bytes == one
    heads.drop(first.key)
    heads.drop(first.key)
    assert heads.held_bytes == 0
