"""Whether a fill's response is kept, as what entry, and who may read it (edge/fill/keep.py)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from multidict import CIMultiDict

from edge.config.deployment import CacheConfig
from edge.fill.keep import (
    VARY_MARKER_STATUS,
    KeepDecision,
    decide_keep,
    refreshed_meta,
    replay_headers,
    vary_names,
)
from edge.rules.key import make_key
from edge.rules.outcome import NoStoreReason
from edge.rules.site_policy import DEFAULT_POLICY, CachePolicy
from edge.store.entry import EntryMeta
from origin.hopbyhop import HOP_BY_HOP

pytestmark = pytest.mark.timeout(10)

KEY = make_key("http", "example.test", "/obj")
T0 = 1_700_000_000.0


@dataclass(frozen=True)
class Head:
    """A response head as the decision reads it (an UpstreamResponse without its body)."""

    status: int
    headers: tuple[tuple[str, str], ...]
    request_time: float = T0
    response_time: float = T0


def decide(
    status: int = 200,
    headers: tuple[tuple[str, str], ...] = (("Cache-Control", "max-age=60"),),
    *,
    request: dict[str, str] | None = None,
    authorization: bool = False,
    has_store: bool = True,
    max_object_bytes: int = 1 << 20,
    policy: CachePolicy = DEFAULT_POLICY,
) -> KeepDecision:
    return decide_keep(
        Head(status, headers),
        key=KEY,
        client_headers=CIMultiDict(request or {}),
        authorization=authorization,
        has_store=has_store,
        cache=CacheConfig(),
        max_object_bytes=max_object_bytes,
        policy=policy,
        purge_gen=7,
    )


class TestStored:
    def test_decide_keep_stores_typed_entry_when_response_is_fresh(self) -> None:
        keep = decide(headers=(("Cache-Control", "max-age=60"), ("ETag", '"v1"'), ("Cache-Tag", "a b")))
        assert keep.reason is None and keep.stored and keep.shareable
        assert keep.meta is not None
        assert (keep.meta.key, keep.meta.url, keep.meta.lifetime_s) == (KEY.id, KEY.url, 60.0)
        assert (keep.meta.etag, keep.meta.tags, keep.meta.purge_gen) == ('"v1"', ("a", "b"), 7)

    def test_decide_keep_makes_entry_but_stores_nothing_when_no_store_given(self) -> None:
        keep = decide(has_store=False)
        assert keep.meta is not None and keep.reason is None
        assert not keep.stored and keep.marker is None

    def test_decide_keep_uses_policy_lifetime_when_origin_is_silent(self) -> None:
        silent = (("Content-Type", "text/plain"),)
        assert decide(headers=silent).reason is NoStoreReason.NO_FRESHNESS
        keep = decide(headers=silent, policy=CachePolicy(default_ttl_s=30.0))
        assert keep.reason is None and keep.meta is not None and keep.meta.lifetime_s == 30.0

    def test_decide_keep_ignores_policy_lifetime_when_origin_set_one(self) -> None:
        keep = decide(policy=CachePolicy(default_ttl_s=30.0))
        assert keep.meta is not None and keep.meta.lifetime_s == 60.0


class TestNotStored:
    def test_decide_keep_names_status_and_shares_when_server_error_says_cacheable(self) -> None:
        keep = decide(503)
        assert keep.reason is NoStoreReason.STATUS and keep.meta is None
        assert keep.shareable and not keep.stored

    def test_decide_keep_names_too_large_when_length_exceeds_largest_object(self) -> None:
        keep = decide(headers=(("Cache-Control", "max-age=60"), ("Content-Length", "2048")), max_object_bytes=1024)
        assert keep.reason is NoStoreReason.TOO_LARGE and keep.length == 2048 and keep.shareable

    def test_decide_keep_gives_leader_only_when_response_is_private(self) -> None:
        keep = decide(headers=(("Cache-Control", "private, max-age=60"),))
        assert keep.reason is NoStoreReason.PRIVATE and not keep.shareable

    def test_decide_keep_shares_but_stores_nothing_when_client_said_no_store(self) -> None:
        keep = decide(request={"Cache-Control": "no-store"})
        assert keep.reason is NoStoreReason.REQUEST_NO_STORE and keep.shareable and not keep.stored

    def test_decide_keep_refuses_credentials_when_response_does_not_allow_them(self) -> None:
        assert decide(authorization=True).reason is NoStoreReason.AUTHORIZATION
        allowed = decide(headers=(("Cache-Control", "public, max-age=60"),), authorization=True)
        assert allowed.reason is None


class TestVary:
    def test_decide_keep_stores_variant_and_marker_when_response_varies(self) -> None:
        headers = (("Cache-Control", "max-age=60"), ("Vary", "Accept-Encoding"))
        keep = decide(headers=headers, request={"Accept-Encoding": "gzip"})
        variant = KEY.variant(("accept-encoding",), CIMultiDict({"Accept-Encoding": "gzip"}))
        assert keep.vary == ("accept-encoding",) and keep.variant_id == variant.id
        assert keep.meta is not None and keep.meta.key == variant.id
        assert keep.marker is not None
        assert (keep.marker.key, keep.marker.status, keep.marker.headers) == (KEY.id, VARY_MARKER_STATUS, ())

    def test_decide_keep_writes_no_marker_when_variant_is_not_stored(self) -> None:
        headers = (("Cache-Control", "max-age=60"), ("Vary", "Accept-Encoding"))
        assert decide(headers=headers, has_store=False).marker is None

    def test_vary_names_lower_cases_and_dedupes_when_listed_twice(self) -> None:
        assert vary_names((("Vary", "Accept-Encoding, Origin"), ("vary", "origin"))) == ("accept-encoding", "origin")


class TestReplay:
    @pytest.mark.parametrize("name", sorted(HOP_BY_HOP))
    def test_replay_headers_drops_field_when_hop_by_hop(self, name: str) -> None:
        assert replay_headers(((name.title(), "x"), ("ETag", '"1"'))) == (("ETag", '"1"'),)

    def test_replay_headers_drops_framing_and_age_when_replaying(self) -> None:
        fields = (("Content-Length", "3"), ("Age", "4"), ("Cache-Status", "x"), ("Accept-Ranges", "bytes"))
        assert replay_headers(fields + (("Content-Type", "a/b"),)) == (("Content-Type", "a/b"),)


class TestRefresh:
    def test_refreshed_meta_takes_304_fields_and_new_freshness_when_revalidated(self) -> None:
        stale = EntryMeta(
            key=KEY.id,
            url=KEY.url,
            status=200,
            headers=(("Cache-Control", "max-age=10"), ("ETag", '"v1"'), ("Content-Type", "a/b")),
            request_time=T0 - 100,
            response_time=T0 - 100,
            initial_age_s=0.0,
            lifetime_s=10.0,
            invalidated=True,
        )
        head = Head(304, (("Cache-Control", "max-age=99"), ("Connection", "close")), T0, T0)
        meta = refreshed_meta(stale, head, cache=CacheConfig(), policy=DEFAULT_POLICY, target="/obj", purge_gen=3)
        assert meta.lifetime_s == 99.0 and meta.response_time == T0 and not meta.invalidated
        assert meta.headers == (("Cache-Control", "max-age=99"), ("ETag", '"v1"'), ("Content-Type", "a/b"))
        assert (meta.etag, meta.status, meta.purge_gen) == ('"v1"', 200, 3)
