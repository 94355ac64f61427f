"""FastHeads patches each second's Age and Cache-Status ttl into a head built once per entry: the
bytes are those of a head built whole, field by field, at that moment."""

from __future__ import annotations

import pytest

from edge.request.deliver import INLINE_BODY_MAX, FastHeads
from edge.rules.outcome import CacheOutcome, cache_status
from edge.server.writer import build_head
from edge.store.entry import EntryMeta

pytestmark = pytest.mark.timeout(10)

NOW = 1_000.25
FIELDS = (("Content-Type", "text/plain"), ("ETag", '"v1"'), ("Cache-Control", "max-age=60"))


def meta(
    lifetime_s: float = 60.0, initial_age_s: float = 0.0, fields: tuple[tuple[str, str], ...] = FIELDS
) -> EntryMeta:
    return EntryMeta(
        key=b"k" * 16,
        url="http://demo.test/obj/a",
        status=200,
        headers=fields,
        request_time=NOW,
        response_time=NOW,
        initial_age_s=initial_age_s,
        lifetime_s=lifetime_s,
        body_length=5,
    )


def whole_head(m: EntryMeta, body: bytes, now: float) -> bytes:
    """The head as built field by field at `now` (what the slow path's rules give a fresh hit)."""
    fields = [
        *m.headers,
        ("Accept-Ranges", "bytes"),
        ("Age", str(int(m.age(now)))),
        ("Cache-Status", cache_status(CacheOutcome.HIT, ttl=m.ttl(now), name="edgecache")),
        ("Content-Length", str(len(body))),
    ]
    return build_head(m.status, fields)


@pytest.mark.parametrize("later", [0.0, 0.5, 0.74, 0.75, 1.0, 2.5, 55.0])
def test_head_matches_a_whole_build_at_each_moment(later: float) -> None:
    heads, m, body = FastHeads("edgecache"), meta(initial_age_s=3.0), b"hello"
    assert heads.get(m, body, NOW, head_only=False) == whole_head(m, body, NOW) + body
    rebuilt = FastHeads("edgecache")  # built at that moment: the patched fields of that moment
    assert rebuilt.get(m, body, NOW + later, head_only=True) == whole_head(m, body, NOW + later)
    assert rebuilt.get(m, body, NOW + later, head_only=False) == whole_head(m, body, NOW + later) + body
    if int(NOW + later) != int(NOW):  # the first table, a second later: rebuilt the same way
        assert heads.get(m, body, NOW + later, head_only=True) == whole_head(m, body, NOW + later)


def test_same_second_reuses_the_bytes_and_a_new_second_changes_age() -> None:
    heads, m, body = FastHeads(), meta(), b"hello"
    first = heads.get(m, body, NOW, head_only=True)
    assert heads.get(m, body, NOW + 0.5, head_only=True) is first
    later = heads.get(m, body, NOW + 1.0, head_only=True)
    assert isinstance(later, bytes) and b"\r\nAge: 1\r\n" in later and b"\r\nAge: 0\r\n" in first


def test_replaced_entry_is_rebuilt_from_its_own_fields() -> None:
    heads, body = FastHeads(), b"hello"
    heads.get(meta(), body, NOW, head_only=True)
    changed = meta(fields=(("Content-Type", "text/html"),))
    answer = heads.get(changed, body, NOW + 0.1, head_only=True)
    assert answer == whole_head(changed, body, NOW + 0.1)
    assert isinstance(answer, bytes) and b"text/html" in answer and b'"v1"' not in answer


def test_entry_going_stale_within_a_second_is_declined() -> None:
    heads, m, body = FastHeads(), meta(lifetime_s=1.5), b"hello"
    assert heads.get(m, body, NOW + 1.2, head_only=True) is not None  # ttl 0.3: fresh until NOW + 1.5
    assert heads.get(m, body, NOW + 1.6, head_only=True) is None  # the same second, now stale


def test_large_body_goes_apart_from_the_head() -> None:
    heads, body = FastHeads(), b"x" * (INLINE_BODY_MAX + 1)
    answer = heads.get(meta(), body, NOW, head_only=False)
    assert isinstance(answer, tuple) and answer[1] is body
    assert answer[0] == whole_head(meta(), body, NOW)
