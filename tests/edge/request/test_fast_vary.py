"""The fast path selects Vary variants from raw header bytes exactly as the slow path does."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from edge.request.fast import FirstFields
from edge.rules.accept_encoding import normalise_accept_encoding
from edge.rules.key import make_key

RAW = [
    [(b"Host", b"a"), (b"Accept-Encoding", b"gzip, br")],
    [(b"Host", b"a"), (b"accept-encoding", b"gzip,br"), (b"Accept-Encoding", b"identity")],
    [(b"Host", b"a")],
    [(b"Host", b"a"), (b"Accept-Language", b"fr"), (b"ACCEPT-ENCODING", b"\xe9t\xe9")],
]


@pytest.mark.parametrize("raw", RAW)
def test_variant_id_matches_slow_path_when_fields_arrive_as_bytes(raw: list[tuple[bytes, bytes]]) -> None:
    key = make_key("http", "a", "/x")
    vary = ("accept-encoding", "accept-language")
    slow = CIMultiDict((n.decode("latin-1"), v.decode("latin-1")) for n, v in raw)
    # the slow path's _recv folds Accept-Encoding to br, gzip or identity first (issue 12)
    slow["Accept-Encoding"] = normalise_accept_encoding(",".join(slow.getall("accept-encoding", ())) or None)
    assert key.variant(vary, FirstFields(raw, vary)).id == key.variant(vary, slow).id


def test_different_values_select_different_variants_when_vary_names_them() -> None:
    key = make_key("http", "a", "/x")
    vary = ("accept-encoding",)
    gzip = key.variant(vary, FirstFields([(b"Accept-Encoding", b"gzip")], vary)).id
    br = key.variant(vary, FirstFields([(b"Accept-Encoding", b"br")], vary)).id
    assert gzip != br


def test_fast_path_serves_each_variant_and_declines_unknown_one_when_object_varies(tmp_path: object) -> None:
    import tempfile
    import time
    from pathlib import Path

    from edge.config.deployment import CacheConfig
    from edge.fill.coalesce import Coalescer
    from edge.fill.producer import VARY_MARKER_STATUS, Filler
    from edge.request.handler import Handler
    from edge.store.entry import EntryMeta
    from edge.store.memory import MemoryStore
    from edge.store.tiered import TieredStore
    from origin.config import RouteRule
    from origin.routes import Router

    memory = MemoryStore(max_bytes=64 << 20, max_object_bytes=8 << 20)
    key = make_key("http", "h", "/v")
    now = time.time()
    common = {"url": key.url, "request_time": now, "response_time": now, "initial_age_s": 0.0,
              "lifetime_s": 3600.0, "vary": ("accept-encoding",)}
    for enc in ("gzip", "br"):
        variant = key.variant(("accept-encoding",), CIMultiDict([("Accept-Encoding", enc)]))
        memory.put(EntryMeta(key=variant.id, status=200, headers=(("Content-Encoding", enc),), **common),
                   enc.encode() * 10)
    memory.put(EntryMeta(key=key.id, status=VARY_MARKER_STATUS, headers=(), **common), b"")
    handler = Handler(store=TieredStore(memory, None),
                      coalescer=Coalescer(spool_dir=Path(tempfile.mkdtemp()), head_timeout_s=1, idle_timeout_s=1),
                      filler=Filler(cache=CacheConfig(), max_object_bytes=8 << 20),
                      router=Router((RouteRule(host="*", path_prefix="/", pool="p"),)), upstreams={}, allowlists={},
                      access_log=None)

    def ask(enc: bytes) -> bytes | None:
        answer = handler.try_fast(False, b"h", b"/v", [(b"Host", b"h"), (b"Accept-Encoding", enc)], "127.0.0.1")
        assert answer is None or isinstance(answer, bytes)
        return answer

    gzip, br = ask(b"gzip"), ask(b"br")
    assert gzip is not None and gzip.endswith(b"gzip" * 10) and b"Content-Encoding: gzip" in gzip
    assert br is not None and br.endswith(b"br" * 10) and b"Content-Encoding: br" in br
    assert ask(b"zstd") is None  # no such variant stored: the slow path fetches it


def test_fast_path_counts_a_hit_only_when_it_answers(tmp_path: object) -> None:
    import tempfile
    import time
    from pathlib import Path

    from edge.config.deployment import CacheConfig
    from edge.fill.coalesce import Coalescer
    from edge.fill.producer import Filler
    from edge.request.handler import Handler
    from edge.store.entry import EntryMeta
    from edge.store.memory import MemoryStore
    from edge.store.tiered import TieredStore
    from origin.config import RouteRule
    from origin.routes import Router

    memory = MemoryStore(max_bytes=64 << 20, max_object_bytes=8 << 20)
    now = time.time()
    for path, lifetime in (("/fresh", 3600.0), ("/stale", 0.0)):
        key = make_key("http", "h", path)
        memory.put(EntryMeta(key=key.id, url=key.url, status=200, headers=(), request_time=now, response_time=now,
                             initial_age_s=0.0, lifetime_s=lifetime), b"x")
    handler = Handler(store=TieredStore(memory, None),
                      coalescer=Coalescer(spool_dir=Path(tempfile.mkdtemp()), head_timeout_s=1, idle_timeout_s=1),
                      filler=Filler(cache=CacheConfig(), max_object_bytes=8 << 20),
                      router=Router((RouteRule(host="*", path_prefix="/", pool="p"),)), upstreams={}, allowlists={},
                      access_log=None)
    raw = [(b"Host", b"h")]
    assert handler.try_fast(False, b"h", b"/stale", raw, "127.0.0.1") is None
    assert handler.try_fast(False, b"h", b"/missing", raw, "127.0.0.1") is None
    assert memory.stats.hits == 0 and memory.stats.misses == 0  # the slow path will count these
    assert handler.try_fast(False, b"h", b"/fresh", raw, "127.0.0.1") is not None
    assert memory.stats.hits == 1
