"""The public listener: a lean HTTP/1.1 server on asyncio.Protocol and llhttp (httptools).

aiohttp's request machinery costs more per request than a whole cache hit should, so the
public port parses with llhttp directly. A fresh hit is answered synchronously from the
parser callback with one prebuilt byte string (`Responder.try_fast`); everything else runs
as one task per request through `Responder.handle`, which writes through a `Writer`.
Requests on one connection are answered strictly in order (pipelining is honoured by
pausing reads while a request is in flight).

Limits: a target longer than `max_url_bytes` gets 414, too many or too large header fields
get 431, a body over `max_body_bytes` gets 413, and anything llhttp rejects (smuggling
attempts such as Content-Length together with Transfer-Encoding, bad chunking) gets 400
and the connection is closed.

Timeouts, the connection cap and flow control live in the base class
(edge.server.guard.GuardedConnection); this module moves the connection between phases:
a request's first bytes start HEAD, its first body byte BODY, its dispatch BUSY, and the
end of its answer IDLE again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Protocol

import httptools

from edge.config.limits import Limits
from edge.config.server import ServerConfig
from edge.server.connections import Connections
from edge.server.deadline import Phase, TimeoutReason, verdict
from edge.server.guard import TIMEOUT_REASONS, GuardedConnection
from edge.server.request import Request, drop_trailers
from edge.server.writer import Writer

__all__ = ["HttpProtocol", "Limits", "Responder"]

log = logging.getLogger("edge.server")

_monotonic = time.monotonic
_IDLE, _HEAD, _BODY, _BUSY = Phase.IDLE, Phase.HEAD, Phase.BODY, Phase.BUSY

# Request fields the listener looks at while parsing: Host (1), the fields that take a
# request off the fast path to the full handler (2), and those llhttp reads for keep-alive (3:
# without them only an HTTP/1.1 request is kept alive, so the version need not be asked).
_SPECIAL = {
    b"host": 1,
    b"connection": 3,
    b"proxy-connection": 3,
    **dict.fromkeys(
        (
            b"range",
            b"if-range",
            b"if-none-match",
            b"if-modified-since",
            b"if-match",
            b"if-unmodified-since",
            b"authorization",
            b"expect",
            b"transfer-encoding",
            b"content-length",
            b"upgrade",
        ),
        2,
    ),
}


class Responder(Protocol):
    """What the listener calls for each request (implemented by edge.request.handler)."""

    def try_fast(
        self, head_only: bool, host: bytes, target: bytes, raw_headers: list[tuple[bytes, bytes]], peer: str
    ) -> bytes | tuple[bytes, bytes] | None:
        """A fresh memory hit's response (whole, or head and body) for a plain GET/HEAD, or None.

        Called from the parser callback for keep-alive HTTP/1.1 GET and HEAD requests with one
        Host field and no Range, validators, credentials or body: no Request object exists yet.
        """
        ...

    def handle(self, request: Request, writer: Writer) -> Awaitable[None]:
        """Answers one request through writer; must finish (or abort) the response."""
        ...


class _Reject(Exception):
    """A request the listener answers itself (a limit, an unsupported upgrade) and then closes."""

    def __init__(self, status: int, reason: str, timeout: TimeoutReason | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.timeout = timeout


class HttpProtocol(GuardedConnection):
    """One client connection: parses requests and answers them in order."""

    __slots__ = (
        "_body",
        "_connection",
        "_drop_underscores",
        "_header_bytes",
        "_headers",
        "_host",
        "_limits",
        "_max_header_bytes",
        "_max_headers",
        "_max_line",
        "_parser",
        "_plain",
        "_responder",
        "_sized",
        "_small",
        "_tasks",
        "_trailer_at",
        "_url",
    )

    def __init__(
        self,
        responder: Responder,
        limits: Limits,
        tasks: set[asyncio.Task[None]],
        connections: Connections | None = None,
    ) -> None:
        super().__init__(connections if connections is not None else Connections(ServerConfig(), 1 << 30))
        self._responder = responder
        self._limits = limits
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""  # the target as received (bytes: the hit path hashes it without a copy)
        self._headers: list[tuple[bytes, bytes]] = []
        self._max_header_bytes = limits.max_header_bytes
        self._max_headers = limits.max_headers
        self._max_line = limits.max_header_line_bytes  # one field's name + value
        self._drop_underscores = not limits.underscores_in_headers
        self._header_bytes = 0
        # a chunk no larger than this cannot hold a field, or the fields of a head, over a limit
        self._small = min(limits.max_header_bytes, limits.max_header_line_bytes)
        self._sized = False  # the fields being parsed need no byte accounting (see data_received)
        self._body: bytearray | None = None
        self._host: bytes | None = None  # the Host field of the request being parsed
        self._plain = True  # no field of the request being parsed needs the slow path
        self._connection = False  # the request being parsed has a Connection field
        self._tasks = tasks  # the server's owned set of request tasks (strong references)
        self._trailer_at: int | None = None  # chunked body: fields from this index on are trailers

    def data_received(self, data: bytes) -> None:
        phase = self._phase
        if not phase:  # IDLE: a request begins
            self._phase = _HEAD
            self._mark = _monotonic()
        elif phase is _HEAD and self._check_now():
            return  # the head took too long: answered 408 and closed
        if self._url:  # a head continues from an earlier chunk: account for each field from now on
            if self._sized and not self._count_fields():
                return  # too many fields: answered 431 and closed
            self._sized = False
        else:
            # every head that begins in this chunk and ends in it is no larger than the chunk, so
            # with a chunk under both byte limits its fields need no byte accounting (only a count)
            self._sized = len(data) <= self._small
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reject(501, "protocol upgrades are not supported")
        except httptools.HttpParserCallbackError as exc:
            # llhttp wraps what our callbacks raise: a limit we enforce, or a bug of ours
            cause = exc.__context__
            if isinstance(cause, _Reject):
                if cause.timeout is not None:
                    self._conns.timed_out(cause.timeout)
                self._reject(cause.status, cause.reason)
            else:
                log.error("request callback failed", exc_info=cause or exc)
                self._reject(500, "internal error; see the node's log")
        except httptools.HttpParserError as exc:
            self._reject(400, f"malformed request: {exc}")
        else:
            phase = self._phase
            if phase is _IDLE and self._url:
                # a hit, then the start of the next head: that head's clock starts now
                self._phase = phase = _HEAD
                self._mark = _monotonic()
            if phase is _HEAD:  # a head (or a body yet to start) left incomplete
                self._arm(self._mark + self._cfg.head_timeout_s)

    # -- llhttp callbacks ---------------------------------------------------------------
    def _reset(self) -> None:
        """Clears per-request parser state (after each message: llhttp's on_message_begin
        would cost a Python call per request)."""
        self._url = b""
        self._headers = []
        self._header_bytes = 0
        self._body = None
        self._host = None
        self._plain = True
        self._connection = False

    def on_url(self, url: bytes) -> None:
        if self._url:  # the target came in pieces (b"" + url would be url itself, but skip the call)
            url = self._url + url
        self._url = url
        if len(url) > self._limits.max_url_bytes:
            raise _Reject(414, "request target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self._headers
        headers.append((name, value))
        if not self._sized:
            self._count_field(name, value)
        # 95 is "_": an int test is a memchr, where `b"_" in name` first tries the needle as an
        # int and pays for a raised and cleared TypeError (about 0.2 µs per field)
        if self._drop_underscores and 95 in name:
            headers.pop()  # issue 12: origins may read X_Forwarded_Host as X-Forwarded-Host
            if self._sized:  # its bytes still count if the head outgrows its chunk
                self._header_bytes += len(name) + len(value)
            return
        kind = _SPECIAL.get(name.lower())
        if kind is not None:
            if kind == 3:
                self._connection = True
            elif kind == 1 and self._host is None:
                self._host = value
            else:
                self._plain = False  # a second Host, or a field only the slow path handles

    def _count_field(self, name: bytes, value: bytes) -> None:
        """The limits, field by field, for a head not known to fit them (a large or split head)."""
        size = len(name) + len(value)
        self._header_bytes += size
        if self._header_bytes > self._max_header_bytes:
            raise _Reject(431, "request header fields too large")
        if len(self._headers) > self._max_headers:
            raise _Reject(431, "too many request header fields")
        if size > self._max_line:
            raise _Reject(431, "a request header field is too large")

    def _count_fields(self) -> bool:
        """Counts the fields a head got in the chunk it began in, once it outgrows that chunk.

        Their bytes all came in that one chunk, under both byte limits; only their number can
        be over. False when it is (answered 431 and closed).
        """
        headers = self._headers
        self._header_bytes += sum([len(n) + len(v) for n, v in headers])  # + the dropped ones'
        if len(headers) > self._max_headers:
            self._reject(431, "too many request header fields")
            return False
        return True

    def on_body(self, body: bytes) -> None:
        if self._body is None:
            if len(self._headers) > self._max_headers:  # (a head in one chunk is only counted here)
                raise _Reject(431, "too many request header fields")
            self._body = bytearray()
        self._body += body
        if len(self._body) > self._limits.max_body_bytes:
            raise _Reject(413, "request body too large")
        if self._phase is _BUSY:
            return  # a pipelined body read ahead while a response is being written
        times = self._times
        now = _monotonic()
        if self._phase is not _BODY:
            self._phase = _BODY
            times.body_start = now
            times.body_bytes = 0
        times.body_last = now
        times.body_bytes += len(body)
        found = verdict(self._cfg, _BODY, self._mark, times, now)
        if found.expired is not None:
            raise _Reject(408, TIMEOUT_REASONS[found.expired], found.expired)
        if found.at is not None:
            self._arm(found.at)

    def on_chunk_header(self) -> None:
        # llhttp calls on_header for trailer fields too, after the last chunk's header: what
        # the head had is all there is (chunked requests only, never the fast path's)
        self._trailer_at = len(self._headers)

    def on_message_complete(self) -> None:
        if len(self._headers) > self._max_headers:  # (a head in one chunk is only counted here)
            raise _Reject(431, "too many request header fields")
        parser = self._parser
        host = self._host
        # the hit path first: a plain GET/HEAD (no Upgrade field, not CONNECT, so should_upgrade()
        # is False) on a keep-alive HTTP/1.1 connection with nothing queued before it
        if (
            self._plain
            and host is not None
            and not self._busy
            and not self._pending
            and self._body is None
            and parser.should_keep_alive()
        ):
            method = parser.get_method()
            # keep-alive without a Connection field is HTTP/1.1 (get_http_version() costs ~0.2 µs)
            if (method == b"GET" or method == b"HEAD") and (
                not self._connection or parser.get_http_version() == "1.1"
            ):
                fast = self._responder.try_fast(method == b"HEAD", host, self._url, self._headers, self._peer)
                if fast is not None:
                    # _reset() inline, for the fields a plain bodiless request can have changed
                    self._url = b""
                    self._headers = []
                    self._header_bytes = 0
                    self._host = None
                    self._connection = False
                    # idle from here on; the idle clock counts from when this request began
                    self._phase = _IDLE
                    transport = self._transport
                    if transport is not None and not self._closed:
                        if fast.__class__ is tuple:
                            transport.write(fast[0])
                            transport.write(fast[1])
                        else:
                            transport.write(fast)  # type: ignore[arg-type]
                    return
        if parser.should_upgrade():
            # CONNECT and Upgrade (websocket, h2c): a cache has no tunnel to offer
            raise _Reject(501, "protocol upgrades and CONNECT are not supported; send plain HTTP/1.1")
        method = parser.get_method()
        keep_alive = parser.should_keep_alive()
        if self._trailer_at is not None:
            host = drop_trailers(self._headers, self._trailer_at, host, self._conns)
            self._trailer_at = None
        request = Request(
            method=method.decode("ascii"),
            target=self._url.decode("latin-1"),
            version=parser.get_http_version(),
            raw_headers=self._headers,
            body=bytes(self._body) if self._body is not None else None,
            keep_alive=keep_alive,
            peer=self._peer,
            raw_host=host.decode("latin-1") if host is not None else None,
            plain=self._plain,
        )
        self._reset()
        if self._busy or self._pending:
            self._pending.append(request)
            if self._transport is not None:
                self._transport.pause_reading()
            return
        self._dispatch(request)

    # -- dispatch -----------------------------------------------------------------------
    def _dispatch(self, request: Request) -> None:
        transport = self._transport
        if transport is None or self._closed:
            return
        if self._conns.draining:
            request.keep_alive = False  # a graceful stop: the answer says Connection: close
        self._busy = True
        self._phase = _BUSY
        now = _monotonic()
        self._mark = now
        self._times.bounded = True
        self._arm(now + self._cfg.request_timeout_s)
        writer = self._writer = Writer(transport, self._writable, request, self)
        task = self._task = self._loop.create_task(self._run(request, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, request: Request, writer: Writer) -> None:
        try:
            await self._responder.handle(request, writer)
            if not writer.finished:
                # a handler that returns without finishing leaves the framing unknown
                log.error("handler left %s %s unfinished; closing connection", request.method, request.target)
                writer.abort()
        except asyncio.CancelledError:
            if not writer.finished:
                writer.abort()
            raise
        except Exception:
            log.exception("unhandled error for %s %s", request.method, request.target)
            if writer.started:
                writer.abort()
            else:
                await writer.send_simple(500, "internal error; see the node's log", close=True)
        finally:
            self._busy = False
            self._task = self._writer = None
        self._next()

    def _next(self) -> None:
        """Answers the next pipelined request, or resumes reading."""
        transport = self._transport
        if transport is None or self._closed or transport.is_closing():
            self._pending.clear()
            return
        while self._pending and not self._busy:
            self._dispatch(self._pending.popleft())
            if transport.is_closing():
                self._pending.clear()
                return
        if not self._busy and not self._pending:
            if self._conns.draining:  # a graceful stop: no next request on this connection
                transport.close()
                return
            self._phase = _IDLE
            now = _monotonic()
            self._mark = now
            self._arm(now + self._cfg.idle_timeout_s)
            self._resume_reading()
