"""edge.server.writer: framing, HEAD, and disk bodies sent with os.sendfile over a real socket."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from multidict import CIMultiDict

from edge.server import writer as writer_module
from edge.server.request import Request
from edge.server.writer import Writer


class _Conn:
    """The writer's view of its connection, without timers (the tests bound their own waits)."""

    def __init__(self, writable: asyncio.Event | None = None) -> None:
        self.closed = False
        self.writable = writable or _writable()
        self.streamed = False
        self.pauses = 0

    def streaming(self) -> None:
        self.streamed = True

    def pause_writing(self) -> None:
        self.pauses += 1
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()


class _Server:
    """The far end of the connection; close() releases everything."""

    def __init__(self, server: asyncio.Server, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.writer = writer

    def close(self) -> None:
        self.writer.close()
        self.server.close()

    async def wait_closed(self) -> None:
        await self.server.wait_closed()


async def _pair() -> tuple[asyncio.Transport, asyncio.StreamReader, _Server]:
    """A real loopback TCP connection: our transport on one end, a StreamReader on the other."""
    accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def on_client(reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await accepted.put((reader, w))

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
    reader, far = await asyncio.wait_for(accepted.get(), 10)
    return transport, reader, _Server(server, far)  # type: ignore[return-value]


def _writable() -> asyncio.Event:
    """The flow-control event of a transport that accepts writes."""
    event = asyncio.Event()
    event.set()
    return event


def _request(method: str = "GET", version: str = "1.1") -> Request:
    return Request(method=method, target="/x", version=version, headers=CIMultiDict(), body=None,
                   keep_alive=True, peer="127.0.0.1")


async def _read_response(reader: asyncio.StreamReader, body_len: int) -> tuple[bytes, bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    body = await asyncio.wait_for(reader.readexactly(body_len), 10) if body_len else b""
    return head, body


class TestSendfile:
    async def test_disk_span_goes_out_via_os_sendfile_when_transport_is_idle(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        data = bytes(range(256)) * 4096  # 1 MiB
        path = tmp_path / "obj"
        path.write_bytes(b"HEADER" + data)
        calls: list[int] = []
        real = writer_module.os.sendfile

        def counting(sock_fd: int, fd: int, offset: int, count: int) -> int:
            sent = real(sock_fd, fd, offset, count)
            calls.append(sent)
            return sent

        monkeypatch.setattr(writer_module.os, "sendfile", counting)
        transport, reader, server = await _pair()
        try:
            conn = _Conn()
            w = Writer(transport, conn.writable, _request(), conn)
            w.start(200, [("X-Test", "1")], len(data))
            with open(path, "rb") as f:
                read_task = asyncio.ensure_future(_read_response(reader, len(data)))
                await w.sendfile(f.fileno(), 6, len(data))
                w.finish()
                head, body = await read_task
            assert b"Content-Length: 1048576" in head
            assert body == data
            assert sum(calls) == len(data)  # every body byte went through os.sendfile
            assert conn.streamed
        finally:
            transport.close()
            server.close()
            await server.wait_closed()

    async def test_head_request_sends_no_body_when_writing(self) -> None:
        transport, reader, server = await _pair()
        try:
            w = Writer(transport, _writable(), _request("HEAD"), _Conn())
            w.start(200, [], 5)
            await w.write(b"hello")
            w.finish()
            transport.write(b"NEXT")
            head, _ = await _read_response(reader, 0)
            assert b"Content-Length: 5" in head
            assert await asyncio.wait_for(reader.readexactly(4), 10) == b"NEXT"
        finally:
            transport.close()
            server.close()
            await server.wait_closed()

    async def test_unknown_length_is_chunked_when_http11(self) -> None:
        transport, reader, server = await _pair()
        try:
            w = Writer(transport, _writable(), _request(), _Conn())
            w.start(200, [], None)
            await w.write(b"abc")
            w.finish()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert b"Transfer-Encoding: chunked" in head
            assert await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 10) == b"3\r\nabc\r\n0\r\n\r\n"
        finally:
            transport.close()
            server.close()
            await server.wait_closed()


class TestSendfileAtTheClientsPace:
    async def test_paused_reader_waits_on_the_loop_and_gets_every_byte_when_it_reads(
            self, tmp_path: Path) -> None:
        data = bytes(range(256)) * (128 * 1024)  # 32 MiB: far more than the socket buffers hold
        path = tmp_path / "obj"
        path.write_bytes(data)
        transport, reader, server = await _pair()
        try:
            conn = _Conn()
            w = Writer(transport, conn.writable, _request(), conn)
            w.start(200, [], len(data))
            with open(path, "rb") as f:
                send = asyncio.ensure_future(w.sendfile(f.fileno(), 0, len(data)))
                async with asyncio.timeout(10):  # the reader has not read: the send must park
                    while conn.pauses == 0:
                        await asyncio.sleep(0.01)
                assert not send.done()
                assert not conn.writable.is_set()
                _, body = await _read_response(reader, len(data))  # now the client reads
                await asyncio.wait_for(send, 10)
            w.finish()
            assert body == data
            assert w.bytes_sent == len(data)
        finally:
            transport.close()
            server.close()
            await server.wait_closed()

    async def test_connection_closed_while_parked_ends_the_send_with_client_gone(
            self, tmp_path: Path) -> None:
        data = b"q" * (32 << 20)
        path = tmp_path / "obj"
        path.write_bytes(data)
        transport, _, server = await _pair()
        try:
            conn = _Conn()
            w = Writer(transport, conn.writable, _request(), conn)
            w.start(200, [], len(data))
            with open(path, "rb") as f:
                send = asyncio.ensure_future(w.sendfile(f.fileno(), 0, len(data)))
                async with asyncio.timeout(10):
                    while conn.pauses == 0:
                        await asyncio.sleep(0.01)
                conn.closed = True  # what the send timer does: close, which wakes the writer
                transport.abort()
                conn.writable.set()
                with pytest.raises(writer_module.ClientGone):
                    await asyncio.wait_for(send, 10)
        finally:
            transport.close()
            server.close()
            await server.wait_closed()
