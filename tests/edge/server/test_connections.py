"""The connection cap over real loopback sockets: idle connections make room, busy ones refuse."""

from __future__ import annotations

import asyncio
import resource

import pytest

from edge.config.server import ServerConfig
from edge.server.connections import Admission, default_max_connections, raise_fd_limit
from edge.server.request import Request
from edge.server.writer import Writer
from tests.edge.server.listener import FAST_BODY, Scripted, listening, read_response

pytestmark = pytest.mark.timeout(60)

GET_FAST = b"GET /fast HTTP/1.1\r\nHost: a\r\n\r\n"


async def _closed_at_once(reader: asyncio.StreamReader) -> bool:
    """True when the server closed (or reset) the connection without sending a byte."""
    try:
        return await asyncio.wait_for(reader.read(1), 10) == b""
    except ConnectionResetError:
        return True


class TestCap:
    async def test_2000_idle_connections_at_cap_100_leave_room_for_a_new_client(self) -> None:
        async with listening(ServerConfig(), max_connections=100) as srv:
            idle: list[asyncio.StreamWriter] = []
            try:
                for _ in range(2000):
                    _, w = await asyncio.open_connection(srv.host, srv.port)
                    idle.append(w)
                reader, writer = await asyncio.open_connection(srv.host, srv.port)
                idle.append(writer)
                writer.write(GET_FAST)
                _, body = await read_response(reader, timeout_s=5)
                assert body == FAST_BODY
                assert len(srv.connections) <= 100
                assert srv.connections.evicted >= 1900
            finally:
                for w in idle:
                    w.transport.abort()

    async def test_at_cap_with_every_connection_busy_a_new_one_is_refused_and_counted(self) -> None:
        release = asyncio.Event()
        started = 0
        all_started = asyncio.Event()

        async def held(request: Request, writer: Writer) -> None:
            nonlocal started
            started += 1
            if started == 5:
                all_started.set()
            await release.wait()
            writer.start(200, [], 2)
            await writer.write(b"ok")
            writer.finish()

        async with listening(ServerConfig(), Scripted(held), max_connections=5) as srv:
            clients = [await asyncio.open_connection(srv.host, srv.port) for _ in range(5)]
            try:
                for _, w in clients:
                    w.write(b"GET /held HTTP/1.1\r\nHost: a\r\n\r\n")
                await asyncio.wait_for(all_started.wait(), 10)
                reader, extra = await asyncio.open_connection(srv.host, srv.port)
                try:
                    assert await _closed_at_once(reader)
                finally:
                    extra.transport.abort()
                assert srv.connections.refused[Admission.REFUSED_FULL] == 1
                release.set()
                for r, _ in clients:
                    _, body = await read_response(r)
                    assert body == b"ok"
            finally:
                for _, w in clients:
                    w.transport.abort()

    async def test_per_address_cap_refuses_only_that_address(self) -> None:
        async with listening(ServerConfig(max_connections_per_ip=2)) as srv:
            opened: list[asyncio.StreamWriter] = []
            try:
                for _ in range(2):
                    r, w = await asyncio.open_connection(srv.host, srv.port, local_addr=("127.0.0.2", 0))
                    opened.append(w)
                    w.write(GET_FAST)
                    await read_response(r)
                r3, w3 = await asyncio.open_connection(srv.host, srv.port, local_addr=("127.0.0.2", 0))
                opened.append(w3)
                assert await _closed_at_once(r3)
                r4, w4 = await asyncio.open_connection(srv.host, srv.port, local_addr=("127.0.0.3", 0))
                opened.append(w4)
                w4.write(GET_FAST)
                _, body = await read_response(r4)
                assert body == FAST_BODY
                assert srv.connections.refused[Admission.REFUSED_PER_IP] == 1
            finally:
                for w in opened:
                    w.transport.abort()


class TestDescriptors:
    def test_soft_limit_is_raised_to_the_hard_limit(self) -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        try:
            if hard != resource.RLIM_INFINITY and soft == hard and hard > 256:
                resource.setrlimit(resource.RLIMIT_NOFILE, (hard // 2, hard))
            now = raise_fd_limit()
            assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == now
            if hard != resource.RLIM_INFINITY:
                assert now == hard
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    def test_default_cap_keeps_room_for_other_descriptors(self) -> None:
        assert default_max_connections(1024) == 256
        assert default_max_connections(65536) == 32512
        assert default_max_connections(100) == 64  # never below a usable floor
