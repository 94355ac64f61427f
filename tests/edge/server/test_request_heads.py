"""Request heads on the listener: the [limits] hold however a head is cut into reads, and only an
HTTP/1.1 keep-alive head takes the hit path.

The listener skips per-field byte accounting for a head that begins and ends inside one read no
larger than both byte limits (such a head cannot be over them), and counts the fields once a
head outgrows the read it began in. These tests pin where the reads are cut, which a real
socket cannot do (TCP may merge or split writes): they feed `data_received` directly and
record what the listener writes on a transport that only records (a fake, for that reason).
(The parser hands a field over once the next one begins, so a read that should deliver its
fields ends a few bytes into the next name.) The last test checks a real loopback socket.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from edge.config.server import ServerConfig
from edge.server.protocol import HttpProtocol, Limits
from tests.edge.server.listener import FAST_BODY, Scripted, listening, read_response

pytestmark = pytest.mark.timeout(30)

# small limits, so the heads stay short: a read of up to 800 bytes holds no head over them
LIMITS = Limits(max_header_bytes=1000, max_header_line_bytes=800, max_headers=10)


class RecordingTransport(asyncio.Transport):
    """Records writes and whether the listener closed the connection (a fake: see the module doc)."""

    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False

    def write(self, data: Any) -> None:
        self.out += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 5555) if name == "peername" else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


def _feed(*chunks: bytes, limits: Limits = LIMITS) -> RecordingTransport:
    transport = RecordingTransport()
    proto = HttpProtocol(Scripted(), limits, set())
    proto.connection_made(transport)
    try:
        for chunk in chunks:
            if transport.closed:
                break
            proto.data_received(chunk)
    finally:
        proto.connection_lost(None)
    return transport


def _field(name: str, size: int) -> bytes:
    """One header line whose name and value together are `size` bytes."""
    return f"{name}: {'v' * (size - len(name))}\r\n".encode()


START = b"GET /fast HTTP/1.1\r\nHost: a\r\n"


class TestOneRead:
    async def test_head_under_limits_in_one_read_is_answered(self) -> None:
        transport = _feed(START + _field("X-A", 300) + _field("X-B", 300) + b"\r\n")
        assert transport.out.endswith(FAST_BODY) and not transport.closed

    async def test_too_many_fields_in_one_small_read_get_431(self) -> None:
        fields = b"".join(_field(f"X-{i}", 10) for i in range(12))
        assert len(START + fields) < 800  # the read is small: the fields are only counted
        transport = _feed(START + fields + b"\r\n")
        assert (
            transport.out.startswith(b"HTTP/1.1 431 ") and b"too many request header fields" in transport.out
        )
        assert transport.closed and FAST_BODY not in transport.out

    async def test_too_many_fields_before_a_body_get_431(self) -> None:
        fields = b"".join(_field(f"X-{i}", 10) for i in range(12))
        head = b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n" + fields + b"\r\n"
        transport = _feed(head + b"hello")
        assert transport.out.startswith(b"HTTP/1.1 431 ") and transport.closed

    async def test_large_read_is_checked_field_by_field(self) -> None:
        transport = _feed(START + _field("X-Big", 900) + b"\r\n")  # one read over 800 bytes
        assert transport.out.startswith(b"HTTP/1.1 431 ")
        assert b"a request header field is too large" in transport.out


class TestSplitHead:
    async def test_fields_over_the_total_across_reads_get_431(self) -> None:
        # a small read: the parser hands over X-A once the next name begins; it is not counted yet
        first = START + _field("X-A", 600) + b"X-"
        transport = _feed(first, _field("B", 500) + b"\r\n")
        assert transport.out.startswith(b"HTTP/1.1 431 ")
        assert b"request header fields too large" in transport.out

    async def test_one_field_split_over_the_line_limit_gets_431(self) -> None:
        first = START + b"X-Split: " + b"v" * 500  # the field is not complete in this read
        transport = _feed(first, b"v" * 500 + b"\r\n\r\n", limits=Limits(max_header_line_bytes=800))
        assert transport.out.startswith(b"HTTP/1.1 431 ")
        assert b"a request header field is too large" in transport.out

    async def test_dropped_underscore_fields_count_toward_the_total_across_reads(self) -> None:
        first = START + _field("X_Dropped", 600) + b"X-"  # dropped from the request, not the limit
        transport = _feed(first, _field("B", 500) + b"\r\n")
        assert transport.out.startswith(b"HTTP/1.1 431 ")
        assert b"request header fields too large" in transport.out

    async def test_too_many_fields_in_the_first_read_get_431_when_the_head_goes_on(self) -> None:
        first = START + b"".join(_field(f"X-{i}", 10) for i in range(12)) + b"X-"
        transport = _feed(first, b"Last: 1\r\n\r\n")
        assert transport.out.startswith(b"HTTP/1.1 431 ") and b"too many" in transport.out

    async def test_split_head_under_limits_is_answered(self) -> None:
        transport = _feed(START + _field("X-A", 300) + b"X-", _field("B", 300), b"\r\n")
        assert transport.out.endswith(FAST_BODY) and not transport.closed

    async def test_each_request_of_a_pipelined_read_is_held_to_the_limits(self) -> None:
        ok = START + b"\r\n"
        many = START + b"".join(_field(f"X-{i}", 10) for i in range(12)) + b"\r\n"
        transport = _feed(ok + ok + many)
        assert transport.out.count(FAST_BODY) == 2
        assert b"HTTP/1.1 431 " in transport.out and transport.closed


class TestOverSocket:
    async def test_hit_then_a_partial_head_in_one_write_gets_408_at_head_timeout(self) -> None:
        # the next head begins in the read that ended the hit: its head clock runs from there
        config = ServerConfig(head_timeout_s=0.3, idle_timeout_s=5.0)
        async with listening(config) as srv:
            reader, writer = await asyncio.open_connection(srv.host, srv.port)
            try:
                writer.write(START + b"\r\n" + b"GET /slow HTTP/1.1\r\nHost: a\r\n")
                _, body = await read_response(reader)
                assert body == FAST_BODY
                async with asyncio.timeout(3):  # well before the idle timeout
                    rest = await reader.read()
            finally:
                writer.transport.abort()
            assert rest.startswith(b"HTTP/1.1 408 "), rest


class TestVersion:
    """Only an HTTP/1.1 keep-alive request takes the hit path (its prebuilt answer is HTTP/1.1)."""

    @pytest.mark.parametrize(
        ("version", "fields", "fast"),
        [
            ("1.1", "", True),
            ("1.1", "Connection: keep-alive\r\n", True),
            ("1.0", "Connection: keep-alive\r\n", False),
            ("1.0", "Proxy-Connection: keep-alive\r\n", False),
        ],
    )
    async def test_hit_path_only_for_http11_keepalive(self, version: str, fields: str, fast: bool) -> None:
        async with listening(ServerConfig()) as srv:
            reader, writer = await asyncio.open_connection(srv.host, srv.port)
            try:
                writer.write(f"GET /fast HTTP/{version}\r\nHost: a\r\n{fields}\r\n".encode())
                head, body = await read_response(reader)
            finally:
                writer.transport.abort()
            assert (body == FAST_BODY) is fast, (head, body)
            assert body == (FAST_BODY if fast else b"len=0")  # else the full path's scripted answer
