"""RFC 9111 caching rules as a real edge process applies them in front of a real origin.

Each test asks the edge for a synthetic object whose query makes the demo origin send the
directive under test, then asserts on three things: how many requests reached the origin,
the Cache-Status the edge reported, and the body (checked against origin.demo.synthetic). The
few responses the demo origin cannot produce (no Date, CDN-Cache-Control) come from a
ScriptedOrigin in the test process. Revalidation, Vary and the stale windows are in
test_revalidation.py.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from origin.demo import synthetic
from tests.integration.conftest import EdgeFactory
from tests.integration.harness import Proc, Reply, ScriptedOrigin, fetch, http_date, origin_count

pytestmark = pytest.mark.timeout(60)


def obj(name: str, query: str = "") -> str:
    """The raw target of a synthetic object (the demo origin counts requests by it)."""
    return f"/obj/{name}" + (f"?{query}" if query else "")


async def get_twice(
    client: aiohttp.ClientSession, edge: Proc, target: str, headers: dict[str, str] | None = None
) -> tuple[Reply, Reply]:
    """Two sequential GETs of one target."""
    first = await fetch(client, edge.url + target, headers=headers)
    second = await fetch(client, edge.url + target, headers=headers)
    return first, second


def body_of(name: str) -> bytes:
    """The body the demo origin sends for a synthetic object with no size in its query."""
    return synthetic.body(name, 1024)


def ttl(reply: Reply) -> int:
    return int(reply.cache_status["ttl"])


async def assert_cached(
    client: aiohttp.ClientSession,
    edge: Proc,
    origin: Proc,
    target: str,
    body: bytes,
    headers: dict[str, str] | None = None,
) -> tuple[Reply, Reply]:
    """GETs target twice: the first filled the cache with `body`, the second was a hit that
    never reached the origin. Returns both replies."""
    first, second = await get_twice(client, edge, target, headers)
    assert (first.status, second.status) == (200, 200)
    assert first.body == body and second.body == body
    assert "stored" in first.cache_status and "fwd" in first.cache_status, first.cache_status
    assert "hit" in second.cache_status, second.cache_status
    assert origin_count(origin, target) == 1
    return first, second


async def assert_not_stored(
    client: aiohttp.ClientSession,
    edge: Proc,
    origin: Proc,
    target: str,
    detail: str,
    headers: dict[str, str] | None = None,
) -> tuple[Reply, Reply]:
    """GETs target twice: both went to the origin; Cache-Status names why nothing was stored.

    The second request may be a remembered pass (hit-for-pass): the edge knows the URL's
    answers are unstorable and forwards without queueing behind another request's fill.
    Returns both replies.
    """
    first, second = await get_twice(client, edge, target, headers)
    assert (first.status, second.status) == (200, 200)
    assert first.cache_status.get("detail") == detail, first.cache_status
    assert second.cache_status.get("detail") in (detail, "hit-for-pass"), second.cache_status
    for reply in (first, second):
        assert "hit" not in reply.cache_status and "stored" not in reply.cache_status, (
            reply.cache_status
        )
    assert origin_count(origin, target) == 2
    return first, second


class TestFreshnessLifetime:
    async def test_max_age_serves_second_request_from_cache_when_fresh(
        self, edge: Proc, origin: Proc, client: aiohttp.ClientSession, unique_name: str
    ) -> None:
        target = obj(unique_name, "cc=max-age=60")
        _, second = await assert_cached(client, edge, origin, target, body_of(unique_name))
        assert 57 <= ttl(second) <= 60

    async def test_s_maxage_wins_over_max_age_when_both_present(
        self, edge: Proc, origin: Proc, client: aiohttp.ClientSession, unique_name: str
    ) -> None:
        longer_name = unique_name + "-long"
        longer = obj(longer_name, "cc=max-age=0,s-maxage=60")
        _, second = await assert_cached(client, edge, origin, longer, body_of(longer_name))
        assert 57 <= ttl(second) <= 60
        # the other way round: s-maxage=0 makes it stale at once although max-age says 60
        shorter = obj(unique_name + "-short", "cc=max-age=60,s-maxage=0")
        _, second = await get_twice(client, edge, shorter)
        assert "hit" not in second.cache_status, second.cache_status
        assert second.body == body_of(unique_name + "-short")
        assert origin_count(origin, shorter) == 2

    async def test_immutable_is_cached_fresh_when_max_age_given(
        self, edge: Proc, origin: Proc, client: aiohttp.ClientSession, unique_name: str
    ) -> None:
        target = obj(unique_name, "cc=max-age=60,immutable")
        await assert_cached(client, edge, origin, target, body_of(unique_name))

    async def test_expires_gives_lifetime_when_date_present(
        self, edge: Proc, origin: Proc, client: aiohttp.ClientSession, unique_name: str
    ) -> None:
        target = obj(unique_name, "expires=60")
        first, second = await assert_cached(client, edge, origin, target, body_of(unique_name))
        assert "Date" in first.headers and "Expires" in first.headers
        assert 57 <= ttl(second) <= 60

    async def test_unknown_directives_are_ignored_when_mixed_with_max_age(
        self, edge: Proc, origin: Proc, client: aiohttp.ClientSession, unique_name: str
    ) -> None:
        target = obj(unique_name, "cc=x-frobnicate,max-age=60,ext-token=%22a%20b%22,foo=1")
        _, second = await assert_cached(client, edge, origin, target, body_of(unique_name))
        assert 57 <= ttl(second) <= 60

    async def test_response_is_not_reused_when_no_freshness_and_no_validator(
        self, edge: Proc, origin: Proc, client: aiohttp.ClientSession, unique_name: str
    ) -> None:
        target = obj(unique_name)
        _, second = await assert_not_stored(client, edge, origin, target, "no-freshness")
        assert second.body == body_of(unique_name)

    async def test_heuristic_lifetime_is_capped_when_last_modified_is_old(
        self, edge: Proc, origin: Proc, client: aiohttp.ClientSession, unique_name: str
    ) -> None:
        target = obj(unique_name, "lm=auto")  # 2023-11-14: 10 % of that is far above one day
        _, second = await assert_cached(client, edge, origin, target, body_of(unique_name))
        assert 86390 <= ttl(second) <= 86400  # heuristic_max_s

    async def test_heuristic_lifetime_is_a_tenth_of_age_when_last_modified_is_recent(
        self, edge: Proc, origin: Proc, client: aiohttp.ClientSession, unique_name: str
    ) -> None:
        target = obj(unique_name, "lm=" + http_date(time.time() - 1000).replace(" ", "%20"))
        _, second = await assert_cached(client, edge, origin, target, body_of(unique_name))
        assert 95 <= ttl(second) <= 101  # 10 % of (Date - Last-Modified) ≈ 100 s

    async def test_upstream_age_is_honoured_when_origin_sends_it(
        self, edge: Proc, origin: Proc, client: aiohttp.ClientSession, unique_name: str
    ) -> None:
        target = obj(unique_name, "cc=max-age=100&age=30")
        first, second = await assert_cached(client, edge, origin, target, body_of(unique_name))
        for reply in (first, second):
            assert 30 <= int(reply.headers["Age"]) <= 33, reply.headers
            assert 66 <= ttl(reply) <= 70, reply.cache_status


class TestNotStored:
    async def test_no_store_reaches_origin_every_time_when_response_says_no_store(
        self, edge: Proc, origin: Proc, client: aiohttp.ClientSession, unique_name: str
    ) -> None:
        target = obj(unique_name, "cc=no-store,max-age=60")
        _, second = await assert_not_stored(client, edge, origin, target, "no-store")
        assert second.body == body_of(unique_name)

    async def test_private_is_not_shared_when_response_says_private(
        self, edge: Proc, origin: Proc, client: aiohttp.ClientSession, unique_name: str
    ) -> None:
        target = obj(unique_name, "cc=private,max-age=60")
        await assert_not_stored(client, edge, origin, target, "private")

    async def test_response_is_not_stored_when_request_had_authorization_and_no_public(
        self, edge: Proc, origin: Proc, client: aiohttp.ClientSession, unique_name: str
    ) -> None:
        target = obj(unique_name, "cc=max-age=60")
        alice = {"Authorization": "Bearer alice"}
        await assert_not_stored(client, edge, origin, target, "authorization", alice)
        # nor does a later anonymous request get the credentialed answer from the cache
        third = await fetch(client, edge.url + target)
        assert "hit" not in third.cache_status, third.cache_status
        assert origin_count(origin, target) == 3

    async def test_response_is_not_stored_when_it_sets_a_cookie(
        self, edge: Proc, origin: Proc, client: aiohttp.ClientSession, unique_name: str
    ) -> None:
        target = obj(unique_name, "cc=max-age=60&cookie=1")
        _, second = await assert_not_stored(client, edge, origin, target, "set-cookie")
        assert second.headers["Set-Cookie"].startswith(f"obj={unique_name}")


class TestStoredWithCredentials:
    async def test_public_is_stored_when_request_had_authorization(
        self, edge: Proc, origin: Proc, client: aiohttp.ClientSession, unique_name: str
    ) -> None:
        target = obj(unique_name, "cc=public,max-age=60")
        alice = {"Authorization": "Bearer alice"}
        await assert_cached(client, edge, origin, target, body_of(unique_name), alice)


class TestUnsafeMethodInvalidates:
    async def test_post_invalidates_cached_url_when_it_succeeds(
        self, edge: Proc, origin: Proc, client: aiohttp.ClientSession, unique_name: str
    ) -> None:
        target = obj(unique_name, "cc=max-age=60")
        await assert_cached(client, edge, origin, target, body_of(unique_name))
        posted = await fetch(client, edge.url + target, method="POST")
        assert posted.status == 200 and posted.cache_status.get("fwd") == "method", (
            posted.cache_status
        )
        assert origin_count(origin, target) == 2  # the POST went through
        after = await fetch(client, edge.url + target)
        assert after.cache_status.get("fwd") == "miss", after.cache_status
        assert after.body == body_of(unique_name)
        assert origin_count(origin, target) == 3


class TestCacheStatus:
    async def test_cache_status_is_sent_when_miss_hit_or_pass(
        self, edge: Proc, origin: Proc, client: aiohttp.ClientSession, unique_name: str
    ) -> None:
        target = obj(unique_name, "cc=max-age=60")
        miss, hit = await get_twice(client, edge, target)
        passed = await fetch(client, edge.url + "/echo/" + unique_name, method="PUT")
        assert miss.cache_status == {
            "edgecache": "",
            "fwd": "miss",
            "fwd-status": "200",
            "ttl": miss.cache_status["ttl"],
            "stored": "",
        }
        assert set(hit.cache_status) == {"edgecache", "hit", "ttl"}
        assert passed.status == 200
        assert passed.cache_status == {"edgecache": "", "fwd": "method", "fwd-status": "200"}
        # (the error case, 502 with Cache-Status, is in test_revalidation.py: origin stopped)


@pytest.fixture
async def scripted() -> AsyncIterator[ScriptedOrigin]:
    """A raw origin in the test process for the responses the demo origin cannot produce."""
    scripted_origin = await ScriptedOrigin().start()
    try:
        yield scripted_origin
    finally:
        await scripted_origin.close()


class TestScriptedResponses:
    async def test_cdn_cache_control_allows_store_when_cache_control_says_no_store(
        self, edge_factory: EdgeFactory, scripted: ScriptedOrigin, client: aiohttp.ClientSession
    ) -> None:
        scripted.script(
            "/cdn", [("Cache-Control", "no-store"), ("CDN-Cache-Control", "max-age=600")], b"cdn"
        )
        edge = edge_factory(origin_url=scripted.url)
        first, second = await get_twice(client, edge, "/cdn")
        assert (first.body, second.body) == (b"cdn", b"cdn")
        assert "hit" in second.cache_status, second.cache_status
        assert 590 <= ttl(second) <= 600
        assert scripted.counts["/cdn"] == 1

    async def test_cdn_cache_control_forbids_store_when_cache_control_allows(
        self, edge_factory: EdgeFactory, scripted: ScriptedOrigin, client: aiohttp.ClientSession
    ) -> None:
        scripted.script(
            "/cdn", [("Cache-Control", "max-age=600"), ("CDN-Cache-Control", "no-store")], b"cdn"
        )
        scripted.script(
            "/cdn-short",
            [("Cache-Control", "max-age=600"), ("CDN-Cache-Control", "max-age=30")],
            b"short",
        )
        edge = edge_factory(origin_url=scripted.url)
        first, second = await get_twice(client, edge, "/cdn")
        assert second.body == b"cdn" and "hit" not in second.cache_status, second.cache_status
        assert first.cache_status.get("detail") == "no-store", first.cache_status
        assert scripted.counts["/cdn"] == 2
        _, short = await get_twice(client, edge, "/cdn-short")
        assert "hit" in short.cache_status and ttl(short) <= 30, short.cache_status
        assert scripted.counts["/cdn-short"] == 1

    async def test_expires_lifetime_counts_from_arrival_when_date_is_absent(
        self, edge_factory: EdgeFactory, scripted: ScriptedOrigin, client: aiohttp.ClientSession
    ) -> None:
        scripted.script("/expires", [("Expires", http_date(time.time() + 60))], b"expires")
        edge = edge_factory(origin_url=scripted.url)
        first, second = await get_twice(client, edge, "/expires")
        assert "Date" not in first.headers  # the edge adds none: it forwards what it got
        assert "stored" in first.cache_status and "hit" in second.cache_status, second.cache_status
        assert 56 <= ttl(second) <= 60
        assert second.body == b"expires" and scripted.counts["/expires"] == 1


class TestTargetedFields:
    async def test_surrogate_max_age_wins_and_never_reaches_clients_when_origin_sends_it(
        self, edge: Proc, origin: Proc, client: aiohttp.ClientSession, unique_name: str
    ) -> None:
        target = obj(unique_name, "cc=max-age=1&sc=max-age=600")
        first, second = await assert_cached(client, edge, origin, target, body_of(unique_name))
        assert 590 <= ttl(second) <= 600  # Surrogate-Control's lifetime, not Cache-Control's
        assert [r.headers.get("surrogate-control") for r in (first, second)] == [None, None]
        assert first.headers.get("cache-control") == "max-age=1"  # the client's own lifetime is kept

    async def test_surrogate_no_store_stops_storing_when_cache_control_allows(
        self, edge: Proc, origin: Proc, client: aiohttp.ClientSession, unique_name: str
    ) -> None:
        target = obj(unique_name, "cc=max-age=600&sc=no-store")
        first, _ = await assert_not_stored(client, edge, origin, target, "no-store")
        assert first.headers.get("surrogate-control") is None

    async def test_quoted_cdn_max_age_is_ignored_when_cache_control_says_no_store(
        self, edge_factory: EdgeFactory, scripted: ScriptedOrigin, client: aiohttp.ClientSession
    ) -> None:
        scripted.script(
            "/quoted", [("Cache-Control", "no-store"), ("CDN-Cache-Control", 'max-age="600"')], b"q"
        )
        edge = edge_factory(origin_url=scripted.url)
        first, second = await get_twice(client, edge, "/quoted")
        assert (first.body, second.body) == (b"q", b"q")
        assert "hit" not in second.cache_status, second.cache_status
        assert scripted.counts["/quoted"] == 2

    async def test_malformed_expires_is_already_expired_when_it_looks_almost_like_a_date(
        self, edge_factory: EdgeFactory, scripted: ScriptedOrigin, client: aiohttp.ClientSession
    ) -> None:
        headers = [("Date", http_date(time.time())), ("Expires", "Thu, 18-Aug-2050 02:01:18 GMT")]
        scripted.script("/expires", headers, b"e")
        edge = edge_factory(origin_url=scripted.url)
        _, second = await get_twice(client, edge, "/expires")
        assert "hit" not in second.cache_status, second.cache_status
        assert scripted.counts["/expires"] == 2

    async def test_age_list_is_read_by_its_first_value_when_origin_appends_zero(
        self, edge_factory: EdgeFactory, scripted: ScriptedOrigin, client: aiohttp.ClientSession
    ) -> None:
        headers = [("Date", http_date(time.time())), ("Cache-Control", "max-age=3600"), ("Age", "7200, 0")]
        scripted.script("/aged", headers, b"a")
        edge = edge_factory(origin_url=scripted.url)
        _, second = await get_twice(client, edge, "/aged")
        assert "hit" not in second.cache_status, second.cache_status
        assert scripted.counts["/aged"] == 2
