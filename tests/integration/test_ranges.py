"""Range, If-Range and HEAD through a real edge process, on a cold miss and on a warm hit.

Every case runs twice: "cold" sends the ranged request first (the edge fills the whole
object from the origin and cuts the range from the fill as it arrives), "warm" fetches the
whole object first and cuts the range from the store. Bytes are checked against
origin.demo.synthetic, and the origin must have seen exactly one request, never with a Range.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import aiohttp
import pytest

from origin.demo import synthetic
from tests.integration.harness import (
    Proc,
    Reply,
    fetch,
    origin_count,
    origin_requests,
    parse_responses,
    raw_exchange,
)

pytestmark = pytest.mark.timeout(60)

SIZE = 300_000  # several 64 KiB blocks, so ranges cross block boundaries
TEMPERATURES = ("cold", "warm")


def target_for(name: str, size: int = SIZE, extra: str = "") -> str:
    return f"/obj/{name}?size={size}&cc=max-age=60&etag=auto{extra}"


@dataclass(frozen=True, slots=True)
class Subject:
    """The test's object (target_for its unique name) behind the edge, cold or warm."""

    client: aiohttp.ClientSession
    edge: Proc
    origin: Proc
    target: str
    body: bytes

    async def get(self, headers: dict[str, str] | None = None) -> Reply:
        """A GET of the object through the edge."""
        return await fetch(self.client, self.edge.url + self.target, headers=headers)


@pytest.fixture
async def subject(
    edge: Proc, origin: Proc, client: aiohttp.ClientSession, unique_name: str, temperature: str
) -> Subject:
    """For "warm", fills the cache with the whole object first; "cold" leaves it empty."""
    made = Subject(client, edge, origin, target_for(unique_name), synthetic.body(unique_name, SIZE))
    if temperature == "warm":
        whole = await made.get()
        assert whole.status == 200 and whole.body == made.body
    return made


def assert_one_whole_fetch(origin: Proc, target: str) -> None:
    """The origin saw one GET for the object, without Range: the edge fetches whole objects."""
    records = origin_requests(origin, target)
    assert len(records) == 1 and records[0]["method"] == "GET", records
    assert not any(n.lower() in ("range", "if-range") for n, _ in records[0]["headers"])


def assert_partial(reply: Reply, body: bytes, start: int, end: int) -> None:
    """A 206 carrying bytes [start, end) of `body`."""
    assert reply.status == 206, (reply.status, reply.headers)
    assert reply.headers["Content-Range"] == f"bytes {start}-{end - 1}/{len(body)}"
    assert int(reply.headers["Content-Length"]) == end - start
    assert reply.body == body[start:end]


@pytest.mark.parametrize("temperature", TEMPERATURES)
class TestRange:
    @pytest.mark.parametrize(
        ("range_header", "start", "end"),
        [
            pytest.param("bytes=100-70099", 100, 70_100, id="closed"),
            pytest.param("bytes=-500", SIZE - 500, SIZE, id="suffix"),
            pytest.param("bytes=299000-", 299_000, SIZE, id="open"),
        ],
    )
    async def test_range_returns_206_with_exact_bytes_when_satisfiable(
        self, subject: Subject, range_header: str, start: int, end: int
    ) -> None:
        reply = await subject.get({"Range": range_header})
        assert_partial(reply, subject.body, start, end)
        assert_one_whole_fetch(subject.origin, subject.target)

    async def test_range_returns_416_with_length_when_unsatisfiable(self, subject: Subject) -> None:
        reply = await subject.get({"Range": f"bytes={SIZE}-"})
        assert reply.status == 416 and reply.body == b""
        assert reply.headers["Content-Range"] == f"bytes */{SIZE}"
        assert_one_whole_fetch(subject.origin, subject.target)

    async def test_multi_range_is_served_as_full_200_when_several_ranges_asked(
        self, subject: Subject
    ) -> None:
        reply = await subject.get({"Range": "bytes=0-9,20-29"})
        assert reply.status == 200 and reply.body == subject.body
        assert "Content-Range" not in reply.headers
        assert_one_whole_fetch(subject.origin, subject.target)

    @pytest.mark.parametrize(
        ("matches", "expected"), [(True, 206), (False, 200)], ids=["current", "old"]
    )
    async def test_if_range_decides_between_206_and_full_200_when_etag_given(
        self, subject: Subject, unique_name: str, matches: bool, expected: int
    ) -> None:
        etag = (
            synthetic.auto_etag(unique_name, SIZE)
            if matches
            else synthetic.auto_etag(unique_name, SIZE, "old")
        )
        reply = await subject.get({"Range": "bytes=10-19", "If-Range": etag})
        if expected == 206:
            assert_partial(reply, subject.body, 10, 20)
        else:
            assert reply.status == 200 and reply.body == subject.body
        assert_one_whole_fetch(subject.origin, subject.target)


@pytest.mark.parametrize("temperature", TEMPERATURES)
class TestHead:
    async def test_head_sends_length_and_no_body_when_object_is_cold_or_warm(
        self, subject: Subject, unique_name: str
    ) -> None:
        edge, origin, target = subject.edge, subject.origin, subject.target
        follower = target_for(unique_name + "-next", size=10)
        host = f"Host: {edge.host}:{edge.port}\r\n"
        # HEAD, then a GET on the same connection: any body bytes after the HEAD's head
        # would show up as garbage where the GET's status line must start
        wire = await raw_exchange(
            edge.host,
            edge.port,
            (
                f"HEAD {target} HTTP/1.1\r\n{host}\r\n"
                f"GET {follower} HTTP/1.1\r\n{host}Connection: close\r\n\r\n"
            ).encode(),
        )
        head, after = parse_responses(wire, head_only=(True, False))
        assert head.status == 200 and head.body == b""
        assert head.header("Content-Length") == str(SIZE)
        assert head.header("ETag") == synthetic.auto_etag(unique_name, SIZE)
        assert "edgecache" in (head.header("Cache-Status") or "")
        assert after.status == 200 and after.body == synthetic.body(unique_name + "-next", 10)
        assert_one_whole_fetch(origin, target)  # a cold HEAD fills with one GET
        # the HEAD's fill stored the whole object: a GET now is a hit
        full = await subject.get()
        assert full.body == subject.body and "hit" in full.cache_status, full.cache_status
        assert origin_count(origin, target) == 1


class TestRangeOfSlowObject:
    async def test_range_near_start_arrives_before_origin_finishes_when_object_is_slow(
        self, edge: Proc, origin: Proc, client: aiohttp.ClientSession, unique_name: str
    ) -> None:
        size = 1_000_000
        target = target_for(unique_name, size=size, extra="&rate=400000")  # ~2.5 s to send
        body = synthetic.body(unique_name, size)
        started = time.monotonic()
        first = await fetch(client, edge.url + target, headers={"Range": "bytes=1000-1999"})
        elapsed = time.monotonic() - started
        assert_partial(first, body, 1000, 2000)
        assert elapsed < 1.5, elapsed
        # proof the origin was still sending: another request joins the same, unfinished fill
        second = await fetch(client, edge.url + target, headers={"Range": "bytes=0-99"})
        assert_partial(second, body, 0, 100)
        assert "collapsed" in second.cache_status, second.cache_status
        assert_one_whole_fetch(origin, target)
