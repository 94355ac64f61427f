"""Integration: request coalescing across real sockets (demo origin process ↔ edge node process).

One cold object asked for by many clients costs the origin one request; waiters stream the
body while it arrives; a failed, hung or unshareable fill releases every waiter with a clean
answer; a client that hangs up never cancels the fill the others read. Ordering comes from
awaiting heads and first chunks, and from the demo origin's deterministic `delay`/`rate`.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from dataclasses import dataclass

import aiohttp
import pytest

from origin.demo import synthetic
from tests.integration.conftest import EdgeFactory
from tests.integration.harness import Proc, origin_stats

MiB = 1024 * 1024
CLIENT_TIMEOUT = aiohttp.ClientTimeout(total=30)


@dataclass(frozen=True, slots=True)
class Got:
    """One client's view of a response: status, declared length, bytes received, how it ended."""

    status: int
    declared: int | None
    body: bytes
    cache_status: str
    error: str | None = None  # the transport error that cut the body short, if any
    elapsed_s: float = 0.0


def session(limit: int = 200) -> aiohttp.ClientSession:
    """A client session with room for `limit` parallel connections, bodies left as sent."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit, force_close=True),
                                 auto_decompress=False, timeout=CLIENT_TIMEOUT)


async def read_all(resp: aiohttp.ClientResponse) -> tuple[bytes, str | None]:
    """Reads the body until its end or a transport error; returns what arrived and the error."""
    parts: list[bytes] = []
    try:
        while chunk := await resp.content.readany():
            parts.append(chunk)
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
        return b"".join(parts), type(exc).__name__
    return b"".join(parts), None


async def collect(resp: aiohttp.ClientResponse) -> Got:
    """Reads an already opened response to its end (or its cut) and closes it."""
    try:
        body, error = await read_all(resp)
        return Got(resp.status, resp.content_length, body, resp.headers.get("Cache-Status", ""), error)
    finally:
        resp.close()


async def get(s: aiohttp.ClientSession, url: str) -> Got:
    """GET url; never raises on a cut body (the cut is reported in `error`)."""
    started = time.monotonic()
    try:
        async with s.get(url) as resp:
            body, error = await read_all(resp)
            return Got(resp.status, resp.content_length, body, resp.headers.get("Cache-Status", ""), error,
                       time.monotonic() - started)
    except aiohttp.ClientConnectionError as exc:  # cut before the head
        return Got(0, None, b"", "", type(exc).__name__, time.monotonic() - started)


async def until_hit(s: aiohttp.ClientSession, url: str, expected: bytes) -> Got:
    """Asks again until the answer is a stored hit; before that only the finished fill may answer.

    The fill leaves the coalescer once its store commit is done, a moment after its last byte
    went out, so a request in between joins the finished fill ("collapsed") instead.
    """
    for _ in range(100):
        g = await get(s, url)
        assert g.status == 200 and g.error is None and g.body == expected
        if g.cache_status.startswith("edgecache; hit"):
            return g
        assert "collapsed" in g.cache_status, g.cache_status
    raise AssertionError(f"{url} never became a hit")


def origin_count(origin: Proc, raw_path: str) -> int:
    """How many requests the demo origin saw for exactly this target."""
    return int(origin_stats(origin)["paths"].get(raw_path, 0))


class TestColdBurst:
    async def test_coalescing_sends_one_origin_request_when_100_clients_ask_cold(
            self, origin: Proc, edge: Proc) -> None:
        size = 300_000
        path = f"/obj/coal-burst?size={size}&cc=max-age=60&delay=0.3"
        async with session() as s:
            got = await asyncio.gather(*(get(s, edge.url + path) for _ in range(100)))
        expected = synthetic.body("coal-burst", size)
        assert origin_count(origin, path) == 1
        assert [g.status for g in got] == [200] * 100
        assert all(g.body == expected for g in got)
        leaders = [g for g in got if "fwd=miss" in g.cache_status and "collapsed" not in g.cache_status]
        assert len(leaders) == 1, [g.cache_status for g in got]


class TestReadWhileWrite:
    async def test_waiter_gets_first_byte_before_origin_finishes_when_body_is_slow(
            self, origin: Proc, edge_factory: EdgeFactory) -> None:
        size, rate = 20 * MiB, 4 * MiB  # about 5 s at the origin
        path = f"/obj/coal-slow?size={size}&rate={rate}&cc=max-age=60"
        edge = edge_factory(cache={"memory_max_object_bytes": "32MiB"})
        async with session() as s:
            started = time.monotonic()
            first = await s.get(edge.url + path)
            head_chunk = await first.content.readany()
            assert head_chunk  # the fill is streaming

            async def drain_first() -> tuple[bytes, float]:
                rest, error = await read_all(first)
                assert error is None
                return head_chunk + rest, time.monotonic()

            leader = asyncio.create_task(drain_first())
            try:
                async with s.get(edge.url + path) as waiter:
                    waiter_chunk = await waiter.content.readany()
                    first_byte_at = time.monotonic()
                    leader_done_at_first_byte = leader.done()
                    rest, error = await read_all(waiter)
                    waiter_status = waiter.headers.get("Cache-Status", "")
                leader_body, finished_at = await leader
            finally:
                leader.cancel()
                first.close()
        expected = synthetic.body("coal-slow", size)
        total_s = finished_at - started
        assert error is None
        assert waiter_chunk + rest == expected
        assert leader_body == expected
        assert "collapsed" in waiter_status
        assert not leader_done_at_first_byte
        assert first_byte_at - started < total_s / 2, (first_byte_at - started, total_s)
        assert origin_count(origin, path) == 1


class TestLeaderFailure:
    async def test_every_waiter_sees_a_cut_body_when_origin_fails_midway(
            self, origin: Proc, edge: Proc) -> None:
        size = MiB
        path = f"/obj/coal-fail?size={size}&fail_at={size // 2}&rate={MiB}&cc=max-age=60"
        async with session() as s:
            leader_resp = await s.get(edge.url + path)
            try:
                waiters = await asyncio.gather(*(s.get(edge.url + path) for _ in range(4)))
                results = await asyncio.gather(*(collect(resp) for resp in [leader_resp, *waiters]))
            finally:
                leader_resp.close()
            assert origin_count(origin, path) == 1
            assert all("collapsed" in g.cache_status for g in results[1:])
            for g in results:
                assert_cut_or_error(g, size)
            later = await get(s, edge.url + path)
        assert_cut_or_error(later, size)
        assert origin_count(origin, path) == 2  # a new fetch, not a stored short body


def assert_cut_or_error(g: Got, size: int) -> None:
    """The response is a 5xx or visibly truncated: never a short body framed as complete."""
    if g.status >= 500:
        return
    assert g.status == 200
    assert g.declared in (None, size)  # the edge promised the whole body, not what it got
    assert g.error is not None, f"a cut body arrived as complete ({len(g.body)} bytes)"
    assert len(g.body) < size
    assert g.body == synthetic.body("coal-fail", len(g.body))


class TestHungOrigin:
    async def test_waiters_get_504_and_node_serves_others_when_origin_hangs(
            self, origin: Proc, edge_factory: EdgeFactory) -> None:
        edge = edge_factory(origin_opts={"first_byte_timeout_s": 1, "total_timeout_s": 2},
                            coalesce={"head_timeout_s": 3})
        other = "/obj/coal-other?size=5000&cc=max-age=60"
        async with session() as s:
            started = time.monotonic()
            *hung, during = await asyncio.gather(*(get(s, edge.url + "/hang/coal-hang") for _ in range(10)),
                                                 get(s, edge.url + other))
            elapsed = time.monotonic() - started
            after = await get(s, edge.url + other)
        assert [g.status for g in hung] == [504] * 10
        assert elapsed < 10
        assert during.status == 200 and during.body == synthetic.body("coal-other", 5000)
        assert during.elapsed_s < min(g.elapsed_s for g in hung)
        assert after.status == 200 and after.body == during.body


class TestUncacheable:
    @pytest.mark.parametrize("name,query", [("coal-private", "cc=private,max-age=60"),
                                            ("coal-cookie", "cc=max-age=60&cookie=1")])
    async def test_waiters_fetch_on_their_own_when_response_is_unshareable(
            self, origin: Proc, edge: Proc, name: str, query: str) -> None:
        delay = 0.5
        path = f"/obj/{name}?size=2000&{query}&delay={delay}"
        expected = synthetic.body(name, 2000)
        async with session() as s:
            first = await asyncio.gather(*(get(s, edge.url + path) for _ in range(5)))
            assert origin_count(origin, path) == 5
            started = time.monotonic()
            second = await asyncio.gather(*(get(s, edge.url + path) for _ in range(5)))
            elapsed = time.monotonic() - started
        assert origin_count(origin, path) == 10  # one origin request per client
        for g in first + second:
            assert g.status == 200 and g.body == expected
            assert "hit" not in g.cache_status.split("; ")
        assert all("hit-for-pass" in g.cache_status for g in second), [g.cache_status for g in second]
        assert elapsed < 1.9 * delay  # queued behind one another would take at least 2 x delay


async def start_and_read_first_chunk(edge: Proc, path: str) -> asyncio.StreamWriter:
    """A raw client that has received the head and the first body chunk of GET path."""
    reader, writer = await asyncio.open_connection(edge.host, edge.port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {edge.host}:{edge.port}\r\n\r\n".encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert await reader.read(65536)
    except BaseException:
        writer.close()
        raise
    return writer


def hang_up(writer: asyncio.StreamWriter) -> None:
    """Closes the raw client's connection with a reset (SO_LINGER 0), as a vanished client does."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()


class TestClientDisconnect:
    async def test_fill_completes_for_a_waiter_when_the_leader_hangs_up_midway(
            self, origin: Proc, edge: Proc) -> None:
        size = 4 * MiB
        path = f"/obj/coal-gone?size={size}&rate={4 * MiB}&cc=max-age=60"
        expected = synthetic.body("coal-gone", size)
        leader = await start_and_read_first_chunk(edge, path)
        try:
            async with session() as s:
                async with s.get(edge.url + path) as waiter:
                    hang_up(leader)  # the waiter has joined the fill: now the leader vanishes
                    body, error = await read_all(waiter)
                    waiter_status = waiter.headers.get("Cache-Status", "")
                await until_hit(s, edge.url + path, expected)
        finally:
            leader.close()
        assert error is None and body == expected
        assert "collapsed" in waiter_status
        assert origin_count(origin, path) == 1

    async def test_fill_completes_when_its_only_client_hangs_up_midway(
            self, origin: Proc, edge: Proc) -> None:
        size = 4 * MiB
        path = f"/obj/coal-alone?size={size}&rate={4 * MiB}&cc=max-age=60"
        expected = synthetic.body("coal-alone", size)
        hang_up(await start_and_read_first_chunk(edge, path))
        async with session() as s:
            rejoined = await get(s, edge.url + path)  # joins the running fill, or hits if it ended
            await until_hit(s, edge.url + path, expected)
        assert rejoined.status == 200 and rejoined.error is None and rejoined.body == expected
        assert "collapsed" in rejoined.cache_status or rejoined.cache_status.startswith("edgecache; hit")
        assert origin_count(origin, path) == 1
