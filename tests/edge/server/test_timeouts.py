"""The listener's timeouts over real loopback sockets: each closes the connection and is counted.

Timeouts are set to fractions of a second; a client's pace (a head line every 0.1 s, a
body byte every 0.02 s) is what the test simulates, so it is paced with sleeps, while the
order of events is awaited (the server's close, the handler's start).
"""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from edge.config.server import ServerConfig
from edge.server.deadline import TimeoutReason
from edge.server.request import Request
from edge.server.writer import Writer
from tests.edge.server.listener import FAST_BODY, Scripted, listening, read_response

pytestmark = pytest.mark.timeout(30)

SHORT = ServerConfig(
    head_timeout_s=0.5,
    idle_timeout_s=0.6,
    body_timeout_s=0.4,
    body_min_rate=0.0,
    send_timeout_s=0.5,
    request_timeout_s=0.5,
)


async def _read_until_closed(reader: asyncio.StreamReader, timeout_s: float = 10.0) -> bytes:
    out = bytearray()
    async with asyncio.timeout(timeout_s):
        try:
            while chunk := await reader.read(65536):
                out += chunk
        except ConnectionResetError:
            pass
    return bytes(out)


def _close(writer: asyncio.StreamWriter) -> None:
    writer.transport.abort()


class TestHead:
    async def test_head_dripped_a_line_at_a_time_is_cut_with_408_at_head_timeout(self) -> None:
        async with listening(SHORT) as srv:
            reader, writer = await asyncio.open_connection(srv.host, srv.port)
            try:
                started = time.monotonic()
                writer.write(b"GET /slow HTTP/1.1\r\nHost: a\r\n")
                closed = asyncio.ensure_future(_read_until_closed(reader))
                for i in range(100):  # 10 s of header lines unless the server cuts the head
                    if closed.done():
                        break
                    await asyncio.sleep(0.1)
                    try:
                        writer.write(b"X-Drip-%d: 1\r\n" % i)
                    except (ConnectionError, RuntimeError):
                        break
                answer = await closed
                elapsed = time.monotonic() - started
            finally:
                _close(writer)
            assert answer.startswith(b"HTTP/1.1 408 "), answer
            assert b"server.head_timeout_s" in answer
            assert 0.5 <= elapsed < 3.0
            assert srv.connections.timeouts[TimeoutReason.HEAD] == 1
            assert not srv.responder.started.is_set()

    async def test_head_that_stops_halfway_is_cut_with_408_by_the_timer(self) -> None:
        async with listening(SHORT) as srv:
            reader, writer = await asyncio.open_connection(srv.host, srv.port)
            try:
                started = time.monotonic()
                writer.write(b"GET /slow HTTP/1.1\r\nHost: a\r\n")
                answer = await _read_until_closed(reader)
                elapsed = time.monotonic() - started
            finally:
                _close(writer)
            assert answer.startswith(b"HTTP/1.1 408 "), answer
            assert 0.5 <= elapsed < 3.0
            assert srv.connections.timeouts[TimeoutReason.HEAD] == 1


class TestIdle:
    async def test_keepalive_connection_is_closed_silently_after_idle_timeout(self) -> None:
        async with listening(SHORT) as srv:
            reader, writer = await asyncio.open_connection(srv.host, srv.port)
            try:
                writer.write(b"GET /fast HTTP/1.1\r\nHost: a\r\n\r\n")
                _, body = await read_response(reader)
                assert body == FAST_BODY
                idle_from = time.monotonic()
                rest = await _read_until_closed(reader)
                elapsed = time.monotonic() - idle_from
            finally:
                _close(writer)
            assert rest == b""  # nothing sent on an idle connection: just closed
            assert 0.5 <= elapsed < 3.0
            assert srv.connections.timeouts[TimeoutReason.IDLE] == 1

    async def test_connection_that_never_sends_is_closed_at_idle_timeout(self) -> None:
        async with listening(SHORT) as srv:
            reader, writer = await asyncio.open_connection(srv.host, srv.port)
            try:
                assert await _read_until_closed(reader) == b""
            finally:
                _close(writer)
            assert srv.connections.timeouts[TimeoutReason.IDLE] == 1
            assert len(srv.connections) == 0

    async def test_busy_keepalive_connection_outlives_the_idle_timeout(self) -> None:
        async with listening(SHORT) as srv:
            reader, writer = await asyncio.open_connection(srv.host, srv.port)
            try:
                until = time.monotonic() + 3 * SHORT.idle_timeout_s
                served = 0
                while time.monotonic() < until:
                    writer.write(b"GET /fast HTTP/1.1\r\nHost: a\r\n\r\n")
                    _, body = await read_response(reader)
                    assert body == FAST_BODY
                    served += 1
                    await asyncio.sleep(0.05)  # a client pausing between requests
            finally:
                _close(writer)
            assert served > 10
            assert sum(srv.connections.timeouts.values()) == 0


class TestBody:
    async def test_body_that_stops_gets_408_at_body_timeout(self) -> None:
        async with listening(SHORT) as srv:
            reader, writer = await asyncio.open_connection(srv.host, srv.port)
            try:
                writer.write(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
                answer = await _read_until_closed(reader)
            finally:
                _close(writer)
            assert answer.startswith(b"HTTP/1.1 408 "), answer
            assert b"server.body_timeout_s" in answer
            assert srv.connections.timeouts[TimeoutReason.BODY_IDLE] == 1
            assert not srv.responder.started.is_set()

    async def test_body_below_min_rate_gets_408_though_bytes_keep_coming(self) -> None:
        cfg = ServerConfig(body_timeout_s=0.4, body_min_rate=100.0, head_timeout_s=5.0)
        async with listening(cfg) as srv:
            reader, writer = await asyncio.open_connection(srv.host, srv.port)
            try:
                started = time.monotonic()
                writer.write(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n")
                closed = asyncio.ensure_future(_read_until_closed(reader))
                for _ in range(500):  # 50 bytes/s, half the minimum, never a 0.4 s gap
                    if closed.done():
                        break
                    await asyncio.sleep(0.02)
                    try:
                        writer.write(b"x")
                    except (ConnectionError, RuntimeError):
                        break
                answer = await closed
                elapsed = time.monotonic() - started
            finally:
                _close(writer)
            assert answer.startswith(b"HTTP/1.1 408 "), answer
            assert b"server.body_min_rate" in answer
            assert elapsed < 5.0
            assert srv.connections.timeouts[TimeoutReason.BODY_RATE] == 1

    async def test_body_at_a_fair_pace_is_received_whole(self) -> None:
        cfg = ServerConfig(body_timeout_s=0.4, body_min_rate=100.0)
        async with listening(cfg) as srv:
            reader, writer = await asyncio.open_connection(srv.host, srv.port)
            try:
                writer.write(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 1500\r\n\r\n")
                for _ in range(15):  # 1000 bytes/s for 1.5 s, almost four body timeouts
                    await asyncio.sleep(0.1)
                    writer.write(b"y" * 100)
                _, body = await read_response(reader)
            finally:
                _close(writer)
            assert body == b"len=1500"
            assert sum(srv.connections.timeouts.values()) == 0


class TestSend:
    async def test_client_that_stops_reading_a_streamed_body_is_dropped_at_send_timeout(self) -> None:
        async def big(request: Request, writer: Writer) -> None:
            writer.start(200, [], 256 << 20)
            for _ in range(256):
                await writer.write(b"z" * (1 << 20))
            writer.finish()

        responder = Scripted(big)
        async with listening(SHORT, responder) as srv:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect((srv.host, srv.port))
            sock.setblocking(False)
            _, writer = await asyncio.open_connection(sock=sock)
            try:
                writer.write(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
                async with asyncio.timeout(10):
                    while not responder.ended:
                        await asyncio.sleep(0.05)
            finally:
                _close(writer)
            assert responder.ended == ["ClientGone"]
            assert srv.connections.timeouts[TimeoutReason.SEND] == 1

    async def test_pipelining_client_that_never_reads_is_paused_then_dropped(self) -> None:
        async with listening(SHORT) as srv:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect((srv.host, srv.port))
            sock.setblocking(False)
            _, writer = await asyncio.open_connection(sock=sock)
            try:
                request = b"GET /fast HTTP/1.1\r\nHost: a\r\n\r\n"
                async with asyncio.timeout(10):
                    while srv.connections.timeouts[TimeoutReason.SEND] == 0:
                        writer.write(request * 1000)  # never read: the server stops reading us
                        try:
                            await asyncio.wait_for(writer.drain(), 0.2)
                        except TimeoutError:
                            await asyncio.sleep(0.05)
                        except ConnectionError:
                            break
                    while srv.connections.timeouts[TimeoutReason.SEND] == 0:
                        await asyncio.sleep(0.05)
            finally:
                _close(writer)
            assert srv.connections.timeouts[TimeoutReason.SEND] == 1


class TestRequestBound:
    async def test_answer_that_never_starts_gets_504_and_the_handler_is_cancelled(self) -> None:
        async def never(request: Request, writer: Writer) -> None:
            await asyncio.Event().wait()

        responder = Scripted(never)
        async with listening(SHORT, responder) as srv:
            reader, writer = await asyncio.open_connection(srv.host, srv.port)
            try:
                writer.write(b"GET /never HTTP/1.1\r\nHost: a\r\n\r\n")
                answer = await _read_until_closed(reader)
            finally:
                _close(writer)
            assert answer.startswith(b"HTTP/1.1 504 "), answer
            assert b"server.request_timeout_s" in answer
            async with asyncio.timeout(10):
                while not responder.ended:
                    await asyncio.sleep(0.01)
            assert responder.ended == ["cancelled"]
            assert srv.connections.timeouts[TimeoutReason.REQUEST] == 1

    async def test_streamed_answer_outlives_the_request_timeout(self) -> None:
        async def trickle(request: Request, writer: Writer) -> None:
            writer.start(200, [], 8)
            for _ in range(8):  # 1.6 s, three request timeouts long
                await writer.write(b"t")
                await asyncio.sleep(0.2)
            writer.finish()

        async with listening(SHORT, Scripted(trickle)) as srv:
            reader, writer = await asyncio.open_connection(srv.host, srv.port)
            try:
                writer.write(b"GET /trickle HTTP/1.1\r\nHost: a\r\n\r\n")
                _, body = await read_response(reader)
            finally:
                _close(writer)
            assert body == b"t" * 8
            assert sum(srv.connections.timeouts.values()) == 0
