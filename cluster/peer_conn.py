"""PeerConnection: one keep-alive connection to a peer, parsing responses with llhttp (httptools).

A plain asyncio.Protocol that carries one PeerExchange at a time: `send` writes the
request's bytes, the parser callbacks fill the exchange (head, body chunks, end), and once a
response has ended the connection tells its pool (`PeerPool.release`) whether it may carry
the next request (cluster.peer_wire.reuse_verdict). The pool learns of every close through
`PeerPool.lost`, exactly once per connection.

Flow control: when the exchange has `HIGH_WATER` bytes queued the connection stops reading
from the socket (`pause_reading`); the reader calls `resume` as it drains the queue.

Failures, by when they happen (each names the peer):

    before the final head   closed with no byte of an answer on a reused connection
                            -> the request is sent once more on another connection (GET/HEAD)
                            closed, reset, malformed or oversized head -> ProtocolError
    in the body             closed before Content-Length bytes or the last chunk, bad
                            chunking, reset -> BodyError
                            closed with no framing (no Content-Length, not chunked) and no
                            error: that is the end of the body; the connection is not reused

1xx interim responses are read and skipped (peers never send 103 to peers: the owner
forwards Early Hints to clients only).
"""

from __future__ import annotations

import asyncio
from typing import Protocol, cast

import httptools

from cluster.peer_exchange import HIGH_WATER, PeerExchange
from cluster.peer_wire import Framing, Reuse, framing_of, reuse_verdict
from origin.errors import BodyError, ProtocolError, UpstreamError
from origin.hopbyhop import strip_hop_by_hop

__all__ = ["MAX_HEAD_BYTES", "MAX_HEAD_FIELDS", "PeerConnection"]

MAX_HEAD_BYTES = 64 * 1024  # a response head larger than this is refused (ProtocolError)
MAX_HEAD_FIELDS = 256  # and one with more fields than this


class _Pool(Protocol):
    """What a connection tells its pool (cluster.peer_pool.PeerPool)."""

    def release(self, conn: PeerConnection, verdict: Reuse) -> None: ...

    def lost(self, conn: PeerConnection) -> None: ...

    def retry(self, exchange: PeerExchange) -> None: ...


class _HeadTooLarge(Exception):
    """Raised from a parser callback: the response head passed a limit."""


class _ExtraMessage(Exception):
    """Raised from a parser callback: a second response began that nobody asked for."""


class PeerConnection(asyncio.Protocol):
    """One connection to a peer; carries one exchange at a time."""

    __slots__ = (
        "_chunked",
        "_complete",
        "_ex",
        "_extra",
        "_fields",
        "_framing",
        "_got_bytes",
        "_has_length",
        "_head_bytes",
        "_interim",
        "_keep_alive",
        "_parser",
        "_paused",
        "_pool",
        "_reason",
        "_transport",
        "idle_since",
        "in_idle",
        "reused",
    )

    def __init__(self, pool: _Pool) -> None:
        self._pool = pool
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._ex: PeerExchange | None = None
        self._fields: list[tuple[bytes, bytes]] = []
        self._reason = b""
        self._head_bytes = 0
        self._has_length = False
        self._chunked = False
        self._interim = False  # the message being parsed is a 1xx
        self._framing = Framing.UNTIL_CLOSE
        self._complete = False  # the exchange's response has ended
        self._keep_alive = False  # the peer keeps the connection open after it (read at its end)
        self._extra = False  # bytes came that belong to no request
        self._got_bytes = False  # any byte of an answer arrived for the current exchange
        self._paused = False
        self.reused = False  # carried a request before the current one
        self.in_idle = False  # kept by the pool for the next request
        self.idle_since = 0.0

    # -- the pool's side ---------------------------------------------------------------------
    @property
    def usable(self) -> bool:
        """Open and carrying nothing."""
        return self._transport is not None and not self._transport.is_closing() and self._ex is None

    def send(self, exchange: PeerExchange) -> None:
        """Writes the exchange's request; its response is parsed into it."""
        assert self._transport is not None and self._ex is None
        self._ex = exchange
        exchange.conn = self
        self._fields = []
        self._reason = b""
        self._head_bytes = 0
        self._has_length = self._chunked = self._interim = False
        self._framing = Framing.UNTIL_CLOSE
        self._complete = self._got_bytes = self._keep_alive = False
        self._transport.write(exchange.request)

    def close(self) -> None:
        """Closes the connection (the pool hears of it through `lost`)."""
        if self._transport is not None:
            self._transport.close()

    # -- the exchange's side --------------------------------------------------------------------
    def abandon(self) -> None:
        """The exchange gave up on its response: the connection cannot be reused."""
        self._ex = None
        if self._transport is not None:
            self._transport.abort()

    def resume(self) -> None:
        """The reader drained the queue below LOW_WATER: read from the socket again."""
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()

    # -- asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # a TCP transport (uvloop's is no subclass)

    def data_received(self, data: bytes) -> None:
        ex = self._ex
        if ex is None:
            self._extra = True  # an idle connection that talks is not one to reuse
            self.close()
            return
        self._got_bytes = True
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            if self._complete:
                self._extra = True  # the response ended well; what follows it is nobody's
            elif isinstance(exc, httptools.HttpParserUpgrade):
                self._broken(ex, "switched protocols without being asked to")
            elif isinstance(exc.__context__, _HeadTooLarge):
                self._broken(ex, f"response head over {MAX_HEAD_BYTES} bytes or {MAX_HEAD_FIELDS} fields")
            else:
                self._broken(ex, f"malformed response: {exc}")
        if self._complete:
            self._ended()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        ex, self._ex = self._ex, None
        if ex is not None:
            if ex.status == 0:
                if not self._got_bytes and self.reused and not ex.retried:
                    ex.conn = None
                    self._pool.retry(ex)  # the peer closed it while idle: a race, not a failure
                else:
                    ex.fail(
                        ProtocolError(
                            f"{ex.label}: connection closed before the response head", upstream=ex.label
                        )
                    )
            elif self._framing is Framing.UNTIL_CLOSE and exc is None:
                ex.finish()  # an unframed body ends at the close
            else:
                ex.fail(
                    BodyError(f"{ex.label}: connection closed mid-body ({exc or 'EOF'})", upstream=ex.label)
                )
        self._pool.lost(self)

    def pause_writing(self) -> None:  # requests are small; nothing to hold back
        pass

    def resume_writing(self) -> None:
        pass

    # -- llhttp callbacks -------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self._complete:
            raise _ExtraMessage

    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value)
        if self._head_bytes > MAX_HEAD_BYTES or len(self._fields) >= MAX_HEAD_FIELDS:
            raise _HeadTooLarge
        self._fields.append((name, value))
        lname = name.lower()
        if lname == b"content-length":
            self._has_length = True
        elif lname == b"transfer-encoding":
            self._chunked = True  # llhttp refuses any coding but a final chunked

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        ex = self._ex
        if status < 200:
            self._interim = True
            self._fields = []
            self._reason = b""
            self._head_bytes = 0
            return
        if ex is None:
            return
        self._framing = framing_of(status, ex.head_only, self._has_length, self._chunked)
        fields = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in self._fields]
        ex.got_head(status, self._reason.decode("latin-1"), strip_hop_by_hop(fields))
        if ex.head_only:  # llhttp still expects the body Content-Length announces: stop here
            self._complete = True

    def on_body(self, body: bytes) -> None:
        ex = self._ex
        if self._complete:
            return  # bytes after the head of an answer to HEAD: not a body; the connection closes
        if ex is not None and ex.push(body) > HIGH_WATER and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self._complete = True
        self._keep_alive = self._parser.should_keep_alive()  # reset once the next message begins

    # -- internals ----------------------------------------------------------------------------------
    def _ended(self) -> None:
        """The exchange's response is complete: hand it over and tell the pool about reuse."""
        ex, self._ex = self._ex, None
        if ex is not None:
            ex.finish()
        if self._framing is Framing.NONE and ex is not None and ex.head_only:
            verdict = Reuse.HEAD_ONLY
        else:
            verdict = reuse_verdict(
                self._framing,
                complete=True,
                keep_alive=self._keep_alive,
                extra_bytes=self._extra,
            )
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        self._pool.release(self, verdict)

    def _broken(self, ex: PeerExchange, what: str) -> None:
        self._ex = None
        self._complete = False
        error: UpstreamError
        if ex.status == 0:
            error = ProtocolError(f"{ex.label}: {what}", upstream=ex.label)
        else:
            error = BodyError(f"{ex.label}: {what}", upstream=ex.label)
        ex.fail(error)
        if self._transport is not None:
            self._transport.abort()
