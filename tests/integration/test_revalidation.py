"""Revalidation, Vary and the stale windows, with a real edge process and a real origin.

Staleness comes from the origin's own `Age` (an object sent with `max-age=60&age=60` is
stale on arrival) wherever the test does not need the refreshed copy to be fresh; where it
does, the test waits for a short lifetime to run out (`let_expire`: waiting on the clock,
never on another task). The stale-if-error tests stop an origin, so they start their own
second demo origin and leave the module's one alone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from origin.demo import synthetic
from tests.integration.conftest import EdgeFactory
from tests.integration.harness import (
    Proc,
    Reply,
    fetch,
    origin_count,
    origin_requests,
    start_origin,
)

pytestmark = pytest.mark.timeout(60)

SWR_POLL_LIMIT = 200  # requests while waiting for a background refresh to land


def obj(name: str, query: str) -> str:
    return f"/obj/{name}?{query}"


async def first_get(
    client: aiohttp.ClientSession, edge: Proc, name: str, query: str
) -> tuple[str, Reply]:
    """The target of object `name` with `query`, and the edge's answer to a first GET of it."""
    target = obj(name, query)
    return target, await fetch(client, edge.url + target)


def ttl(reply: Reply) -> int:
    return int(reply.cache_status["ttl"])


def header(record: dict[str, object], name: str) -> str | None:
    """A header value from one of the demo origin's request records."""
    pairs = record["headers"]
    assert isinstance(pairs, list)
    return next((v for n, v in pairs if n.lower() == name.lower()), None)


async def let_expire(reply: Reply) -> None:
    """Waits until the entry `reply` reported on is stale (its ttl is floored, so +1 s)."""
    await asyncio.sleep(ttl(reply) + 1.05)


class TestVary:
    async def test_vary_caches_each_variant_separately_when_accept_encoding_differs(
        self, edge: Proc, origin: Proc, client: aiohttp.ClientSession, unique_name: str
    ) -> None:
        target = obj(unique_name, "cc=max-age=60&vary=Accept-Encoding")
        body = synthetic.body(unique_name, 1024)
        gzip, br = {"Accept-Encoding": "gzip"}, {"Accept-Encoding": "br"}
        cold = [await fetch(client, edge.url + target, headers=h) for h in (gzip, br)]
        assert [r.cache_status.get("fwd") for r in cold] == ["miss", "miss"]
        assert origin_count(origin, target) == 2
        assert [header(r, "Accept-Encoding") for r in origin_requests(origin, target)] == [
            "gzip",
            "br",
        ]
        warm = [await fetch(client, edge.url + target, headers=h) for h in (gzip, br, gzip)]
        assert all("hit" in r.cache_status for r in warm), [r.cache_status for r in warm]
        assert all(r.body == body for r in cold + warm)
        assert origin_count(origin, target) == 2  # the warm round reached the origin 0 times

    async def test_vary_star_is_not_stored_when_origin_sends_it(
        self, edge: Proc, origin: Proc, client: aiohttp.ClientSession, unique_name: str
    ) -> None:
        target, first = await first_get(client, edge, unique_name, "cc=max-age=60&vary=*")
        second = await fetch(client, edge.url + target)
        assert first.cache_status.get("detail") == "vary-star", first.cache_status
        assert "hit" not in second.cache_status and "stored" not in second.cache_status
        assert origin_count(origin, target) == 2


class TestRevalidationWithOrigin:
    async def test_stale_entry_is_refreshed_by_304_when_etag_still_matches(
        self, edge: Proc, origin: Proc, client: aiohttp.ClientSession, unique_name: str
    ) -> None:
        target, first = await first_get(client, edge, unique_name, "cc=max-age=2&age=1&etag=auto")
        body = synthetic.body(unique_name, 1024)
        await let_expire(first)
        refreshed = await fetch(client, edge.url + target)
        assert refreshed.status == 200 and refreshed.body == body
        status = refreshed.cache_status
        assert (status.get("fwd"), status.get("fwd-status")) == ("stale", "304"), status
        assert ttl(refreshed) >= 0 and int(refreshed.headers["Age"]) <= 1  # a new lifetime from now
        records = origin_requests(origin, target)
        assert len(records) == 2
        assert header(records[1], "If-None-Match") == synthetic.auto_etag(unique_name, 1024)
        again = await fetch(client, edge.url + target)
        assert "hit" in again.cache_status and again.body == body, again.cache_status
        assert origin_count(origin, target) == 2

    async def test_no_cache_is_revalidated_every_time_when_stored(
        self, edge: Proc, origin: Proc, client: aiohttp.ClientSession, unique_name: str
    ) -> None:
        no_cache = "cc=no-cache,max-age=60&etag=auto"
        target, first = await first_get(client, edge, unique_name, no_cache)
        body = synthetic.body(unique_name, 1024)
        assert "stored" in first.cache_status, first.cache_status
        for n in (2, 3):
            reply = await fetch(client, edge.url + target)
            assert reply.status == 200 and reply.body == body
            assert reply.cache_status.get("fwd-status") == "304", reply.cache_status
            assert origin_count(origin, target) == n
            last = origin_requests(origin, target)[-1]
            assert header(last, "If-None-Match") == synthetic.auto_etag(unique_name, 1024)


class TestConditionalFromCache:
    async def test_if_none_match_gets_304_from_cache_when_etag_matches(
        self, edge: Proc, origin: Proc, client: aiohttp.ClientSession, unique_name: str
    ) -> None:
        target, _ = await first_get(client, edge, unique_name, "cc=max-age=60&etag=auto")
        etag = synthetic.auto_etag(unique_name, 1024)
        not_modified = await fetch(client, edge.url + target, headers={"If-None-Match": etag})
        assert not_modified.status == 304 and not_modified.body == b""
        assert not_modified.headers["ETag"] == etag
        assert "hit" in not_modified.cache_status, not_modified.cache_status
        other = await fetch(client, edge.url + target, headers={"If-None-Match": '"other"'})
        assert other.status == 200 and other.body == synthetic.body(unique_name, 1024)
        assert origin_count(origin, target) == 1

    async def test_if_modified_since_gets_304_from_cache_when_not_modified(
        self, edge: Proc, origin: Proc, client: aiohttp.ClientSession, unique_name: str
    ) -> None:
        target, first = await first_get(client, edge, unique_name, "cc=max-age=60&lm=auto")
        last_modified = first.headers["Last-Modified"]
        not_modified = await fetch(
            client, edge.url + target, headers={"If-Modified-Since": last_modified}
        )
        assert not_modified.status == 304 and not_modified.body == b""
        assert "hit" in not_modified.cache_status, not_modified.cache_status
        older = "Mon, 01 Jan 2001 00:00:00 GMT"
        modified = await fetch(client, edge.url + target, headers={"If-Modified-Since": older})
        assert modified.status == 200 and modified.body == synthetic.body(unique_name, 1024)
        assert origin_count(origin, target) == 1


class TestStaleWhileRevalidate:
    async def test_stale_is_served_at_once_and_refreshed_in_background_when_within_window(
        self, edge: Proc, origin: Proc, client: aiohttp.ClientSession, unique_name: str
    ) -> None:
        # the origin takes 1 s to answer; Age 1 + 1 s in transit leaves the copy ~1 s of life
        swr = "cc=max-age=3,stale-while-revalidate=60&age=1&delay=1"
        target, first = await first_get(client, edge, unique_name, swr)
        body = synthetic.body(unique_name, 1024)
        await let_expire(first)
        started = time.monotonic()
        stale = await fetch(client, edge.url + target)
        assert time.monotonic() - started < 0.8  # not held up by the origin's 1 s delay
        assert stale.status == 200 and stale.body == body
        assert "hit" in stale.cache_status and ttl(stale) < 0, stale.cache_status
        assert stale.cache_status.get("detail") == "stale-while-revalidate"
        # poll (no more background fetches are started: later stale hits join the running one)
        for _ in range(SWR_POLL_LIMIT):
            reply = await fetch(client, edge.url + target)
            if "detail" not in reply.cache_status:
                break
            await asyncio.sleep(0.02)
        assert "hit" in reply.cache_status and ttl(reply) >= 0, reply.cache_status
        assert reply.body == body
        assert origin_count(origin, target) == 2  # the fill and exactly one background refresh


@pytest.fixture
def second_origin(tmp_path: Path) -> Iterator[Proc]:
    """A demo origin of this test's own, free to be stopped."""
    proc = start_origin(tmp_path / "second-origin")
    try:
        yield proc
    finally:
        proc.stop()


class TestStaleIfError:
    async def test_stale_is_served_when_origin_is_down_unless_revalidation_is_required(
        self,
        edge_factory: EdgeFactory,
        second_origin: Proc,
        client: aiohttp.ClientSession,
        unique_name: str,
    ) -> None:
        edge = edge_factory(origin_url=second_origin.url)
        sie = obj(unique_name + "-sie", "cc=max-age=60,stale-if-error=600&age=60")
        strict = {
            "must-revalidate": obj(
                unique_name + "-mr", "cc=max-age=60,must-revalidate,stale-if-error=600&age=60"
            ),
            "proxy-revalidate": obj(
                unique_name + "-pr", "cc=max-age=60,proxy-revalidate,stale-if-error=600&age=60"
            ),
        }
        for target in (sie, *strict.values()):
            filled = await fetch(client, edge.url + target)
            assert "stored" in filled.cache_status and ttl(filled) < 0, (
                filled.cache_status
            )  # stale on arrival
        second_origin.stop()

        stale = await fetch(client, edge.url + sie)
        assert stale.status == 200 and stale.body == synthetic.body(unique_name + "-sie", 1024)
        assert stale.cache_status.get("detail") == "stale-if-error", stale.cache_status
        assert stale.cache_status.get("fwd") == "stale"
        for directive, target in strict.items():
            refused = await fetch(client, edge.url + target)
            assert refused.status in (502, 504), (directive, refused.status)
            assert refused.cache_status.get("fwd") == "miss", (directive, refused.cache_status)
            assert "detail" in refused.cache_status
        cold = await fetch(client, edge.url + obj(unique_name + "-cold", "cc=max-age=60"))
        assert cold.status in (502, 504) and "edgecache" in cold.cache_status, cold.cache_status
