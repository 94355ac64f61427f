"""Writer: how a handler answers on the lean listener, with framing and flow control.

A response is `start()`ed once, then `write()`n (awaiting drain when the client reads
slower than we send) or `sendfile()`d, then `finish()`ed. Bodies of known length go out
with Content-Length, others chunked (HTTP/1.1) or close-delimited (HTTP/1.0). A HEAD
response sends the head only. `abort()` drops the connection: the only honest way to
end a response whose body failed midway, so the client sees a truncation, never a
short body that looks complete.

Waiting for a slow client never holds a thread: `write()` waits on the connection's flow
control, and `sendfile()` calls os.sendfile on the event loop with the socket non-blocking,
sending what the socket takes and waiting for writability (loop.add_writer on a duplicate of
the socket's descriptor: the transport owns the original) when it is full. A paused reader
costs its socket and one open file. Every such wait is bounded by the connection's send
timer (`server.send_timeout_s`, edge.server.guard), which closes a stalled connection and
so wakes the writer with ClientGone.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Iterable
from typing import Protocol

from edge.server.request import Request

__all__ = ["REASONS", "ClientGone", "Writer", "build_head", "simple_response"]

SENDFILE_CHUNK = 1 << 20  # bytes per os.sendfile call; the loop runs other work between calls
_GONE = (errno.EPIPE, errno.ECONNRESET, errno.EBADF, errno.ENOTCONN)

REASONS: dict[int, str] = {
    103: "Early Hints",
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    206: "Partial Content",
    301: "Moved Permanently",
    302: "Found",
    304: "Not Modified",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    410: "Gone",
    412: "Precondition Failed",
    413: "Content Too Large",
    414: "URI Too Long",
    416: "Range Not Satisfiable",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class ClientGone(Exception):
    """The client connection closed (or stalled) while we were writing to it."""


class _ConnState(Protocol):
    """What the writer needs of its connection (edge.server.guard.GuardedConnection)."""

    @property
    def closed(self) -> bool: ...

    def streaming(self) -> None:
        """The body goes out in pieces (server.request_timeout_s no longer applies)."""

    def pause_writing(self) -> None:
        """The socket is full: start the send timer."""

    def resume_writing(self) -> None:
        """The socket can take bytes again."""


def build_head(status: int, headers: Iterable[tuple[str, str]], extra: bytes = b"") -> bytes:
    """Serialises a status line and header fields (values must be latin-1 safe)."""
    reason = REASONS.get(status, "Unknown")
    lines = [f"HTTP/1.1 {status} {reason}\r\n"]
    for name, value in headers:
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines).encode("latin-1", "replace") + extra + b"\r\n"


def simple_response(
    status: int,
    reason: str,
    *,
    close: bool = False,
    head_only: bool = False,
    headers: Iterable[tuple[str, str]] = (),
) -> bytes:
    """A complete short text response: the status and a one-line reason."""
    body = f"{status} {REASONS.get(status, 'Error')}: {reason}\n".encode("utf-8", "replace")
    fields = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))), *headers]
    if close:
        fields.append(("Connection", "close"))
    head = build_head(status, fields)
    return head if head_only else head + body


class Writer:
    """Writes one response to the client transport."""

    __slots__ = (
        "_chunked",
        "_close",
        "_conn",
        "_head_only",
        "_request",
        "_transport",
        "_writable",
        "_writes",
        "bytes_sent",
        "finished",
        "started",
        "status",
    )

    def __init__(
        self, transport: asyncio.Transport, writable: asyncio.Event, request: Request, conn: _ConnState
    ) -> None:
        self._transport = transport
        self._writable = writable  # cleared while the transport's buffer is over its high-water mark
        self._request = request
        self._conn = conn
        self.started = False
        self.finished = False
        self._chunked = False
        self._close = not request.keep_alive
        self._head_only = request.method == "HEAD"
        self.status = 0
        self.bytes_sent = 0
        self._writes = 0  # body pieces handed to the transport

    def start(self, status: int, headers: list[tuple[str, str]], length: int | None) -> None:
        """Sends the head; `length` None means the body length is not known yet."""
        self._transport.write(self._head(status, headers, length))

    def send_whole(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        """Sends a whole response (head and body in one write) and finishes it."""
        head = self._head(status, headers, len(body))
        if self._head_only or not body:
            self._transport.write(head)
        else:
            self._transport.write(head + body)
            self.bytes_sent += len(body)
        self.finish()

    def _head(self, status: int, headers: list[tuple[str, str]], length: int | None) -> bytes:
        """The head's bytes (the response starts: framing and Connection decided here)."""
        assert not self.started, "response already started"
        if self._transport.is_closing():
            raise ClientGone("client closed the connection")
        self.started = True
        self.status = status
        fields = headers
        no_body_status = status == 304 or status == 204 or status < 200
        if length is not None:
            if not no_body_status:
                fields.append(("Content-Length", str(length)))
        elif not no_body_status:
            if self._request.version == "1.1":
                self._chunked = not self._head_only
                if self._chunked:
                    fields.append(("Transfer-Encoding", "chunked"))
            else:
                self._close = True
        if self._close:
            fields.append(("Connection", "close"))
        elif self._request.version == "1.0":
            fields.append(("Connection", "keep-alive"))
        return build_head(status, fields)

    def inform(self, status: int, headers: Iterable[tuple[str, str]]) -> bool:
        """Sends an interim 1xx head (103 Early Hints) before the response; False if too late.

        RFC 9110 §15.2: never to an HTTP/1.0 client, and only before the final response.
        """
        if self.started or self.finished or self._request.version == "1.0" or self._transport.is_closing():
            return False
        self._transport.write(build_head(status, headers))
        return True

    async def write(self, chunk: bytes) -> None:
        """Sends body bytes, waiting while the client is slower than us."""
        if self._head_only or not chunk:
            return
        self._writes += 1
        if self._writes == 2:
            self._conn.streaming()
        await self._send(b"%x\r\n%b\r\n" % (len(chunk), chunk) if self._chunked else chunk, len(chunk))

    async def _send(self, data: bytes, body_bytes: int) -> None:
        """Writes already framed bytes, then waits for the client if the buffer is full."""
        if self._conn.closed or self._transport.is_closing():
            raise ClientGone("client closed the connection")
        self._transport.write(data)
        self.bytes_sent += body_bytes
        if not self._writable.is_set():
            await self._drain()

    async def _drain(self) -> None:
        # bounded by the connection's send timer, which closes a stalled connection
        await self._writable.wait()
        if self._conn.closed:
            raise ClientGone("client closed the connection")

    async def sendfile(self, fd: int, offset: int, count: int) -> None:
        """Sends `count` bytes of an open file with os.sendfile at the client's pace."""
        if self._head_only or count <= 0:
            return
        self._conn.streaming()
        if self._chunked:
            self._transport.write(b"%x\r\n" % count)
        sock = self._transport.get_extra_info("socket")
        if sock is None or self._transport.get_extra_info("ssl_object") is not None:
            # no socket (tests), or TLS: the kernel would send the file's bytes unencrypted
            await self._pread_copy(fd, offset, count)
        else:
            await self._sendfile_nonblocking(sock.fileno(), fd, offset, count)
        if self._chunked:
            self._transport.write(b"\r\n")

    async def _sendfile_nonblocking(self, sock_fd: int, fd: int, offset: int, count: int) -> None:
        loop = asyncio.get_running_loop()
        probe = -1  # a duplicate of the socket's descriptor, watched for writability
        end = offset + count
        try:
            while offset < end:
                if self._conn.closed or self._transport.is_closing():
                    raise ClientGone("client closed the connection")
                if self._transport.get_write_buffer_size() == 0:  # nothing queued ahead of the file
                    try:
                        n = os.sendfile(sock_fd, fd, offset, min(end - offset, SENDFILE_CHUNK))
                    except BlockingIOError:
                        n = -1
                    except OSError as exc:
                        if exc.errno not in _GONE:
                            raise
                        self.abort()
                        raise ClientGone("client went away during sendfile") from exc
                    if n == 0:
                        self.abort()
                        raise ClientGone("file shorter than expected")
                    if n > 0:
                        offset += n
                        self.bytes_sent += n
                        await asyncio.sleep(0)  # other connections run between chunks
                        continue
                if probe < 0:
                    probe = os.dup(sock_fd)
                await self._wait_writable(loop, probe)
        finally:
            if probe >= 0:
                os.close(probe)

    async def _wait_writable(self, loop: asyncio.AbstractEventLoop, probe: int) -> None:
        """Waits until the socket takes bytes again (or the send timer closes the connection)."""
        self._conn.pause_writing()
        loop.add_writer(probe, self._conn.resume_writing)
        try:
            await self._writable.wait()
        finally:
            loop.remove_writer(probe)
        if self._conn.closed:
            raise ClientGone("client closed the connection")

    async def _pread_copy(self, fd: int, offset: int, count: int) -> None:
        loop = asyncio.get_running_loop()
        end = offset + count
        while offset < end:
            chunk = await loop.run_in_executor(None, os.pread, fd, min(256 * 1024, end - offset), offset)
            if not chunk:
                self.abort()
                raise ClientGone("file shorter than expected")
            offset += len(chunk)
            await self._send(chunk, len(chunk))  # sendfile() frames the whole span

    def finish(self) -> None:
        """Ends the response; closes the connection when keep-alive is off."""
        if self.finished:
            return
        self.finished = True
        if self._chunked:
            self._transport.write(b"0\r\n\r\n")
        if self._close:
            self._transport.close()

    def abort(self) -> None:
        """Drops the connection: the client sees a truncated response."""
        self.finished = True
        self._transport.abort()

    def answer_now(self, status: int, reason: str) -> None:
        """Answers with a short text body and closes, from outside the request task (a timeout)."""
        self.started = self.finished = True
        self.status = status
        self._transport.write(simple_response(status, reason, close=True, head_only=self._head_only))
        self._transport.close()

    async def send_simple(
        self, status: int, reason: str, *, close: bool = False, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        """Answers with a short text body and a one-line reason."""
        if self._transport.is_closing():
            raise ClientGone("client closed the connection")
        self.started = True
        self.status = status
        close = close or self._close
        self._close = close
        self._transport.write(
            simple_response(status, reason, close=close, head_only=self._head_only, headers=headers)
        )
        self.finished = True
        if close:
            self._transport.close()
