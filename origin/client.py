"""OriginClient: one fetch from one origin server over a shared aiohttp.ClientSession.

It sends the raw target byte-for-byte with the Host the edge chose (after the pool's
OriginRewrite, origin/rewrite.py: Host, TLS server name, path prefix, added request headers,
response headers removed or set before anyone stores them), bounds each phase with
its own timeout, and hands back the response head with hop-by-hop fields removed and the
body as the exact bytes the origin sent (no decompression). Every aiohttp and OS exception
is translated into origin.errors here, the body iterator included:

    before the head   connect refused/unreachable -> ConnectError
                      connect, first-byte or total timeout -> UpstreamTimeout
                      disconnect, malformed head, other I/O -> ProtocolError
    while streaming   idle or total timeout -> BodyTimeout (a BodyError and an UpstreamTimeout)
                      truncated body, bad chunking, reset -> BodyError

103 Early Hints (RFC 8297): aiohttp reads 1xx responses and drops them without a hook, so
the session's response class (`_HintingResponse`) looks at each message aiohttp reads before
the final one and hands a 103's fields to the request's sink (origin/early_hints.py).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import Any

import aiohttp
import yarl
from multidict import CIMultiDict

from origin.config import OriginRewrite, ServerConfig, TimeoutConfig
from origin.early_hints import deliver, wants_hints
from origin.errors import (
    BodyError,
    BodyTimeout,
    ConnectError,
    InvalidTarget,
    ProtocolError,
    UpstreamTimeout,
)
from origin.hopbyhop import strip_hop_by_hop
from origin.rewrite import rewrite_host, rewrite_request_headers, rewrite_response_headers, rewrite_target
from origin.upstream import UpstreamRequest, UpstreamResponse

__all__ = ["OriginClient", "make_session"]

# Request fields the client sets itself: Host from request.host, Content-Length from the body.
_OWN_REQUEST_FIELDS = frozenset({"host", "content-length"})

# Headers aiohttp would otherwise invent; a transparent proxy sends only what the client sent.
_SKIP_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")


class _HintingResponse(aiohttp.ClientResponse):
    """A ClientResponse that reports 103 Early Hints read before the final response.

    aiohttp's `start()` reads messages with `connection.protocol.read()` until one is not
    1xx and discards the rest. While a request wants hints, that one read is wrapped for the
    duration of `start()` so every 103 is delivered first; the protocol object is aiohttp's
    and is left as found. (tests/origin/test_early_hints.py fails if aiohttp changes this.)
    """

    async def start(self, connection: aiohttp.connector.Connection) -> aiohttp.ClientResponse:
        protocol = connection.protocol
        if protocol is None or not wants_hints():
            return await super().start(connection)
        read = protocol.read

        async def read_noting_hints() -> Any:
            message, payload = await read()
            if getattr(message, "code", None) == 103:
                raw = getattr(message, "raw_headers", ())
                deliver(strip_hop_by_hop(tuple((n.decode("latin-1"), v.decode("latin-1")) for n, v in raw)))
            return message, payload

        protocol.read = read_noting_hints  # type: ignore[method-assign]
        try:
            return await super().start(connection)
        finally:
            del protocol.read  # the instance attribute goes; the class's method is back


def make_session(
    *,
    limit: int = 1000,
    limit_per_host: int = 100,
    keepalive_timeout_s: float = 30.0,
    read_bufsize_bytes: int = 256 * 1024,
) -> aiohttp.ClientSession:
    """Creates the session every OriginClient of a node shares; call from a running loop.

    `limit`/`limit_per_host` cap open connections (all origins / one server); idle
    keep-alive connections are reused until `keepalive_timeout_s`. The session never
    decompresses (the cache stores exactly what the origin sent, Content-Encoding
    included), keeps no cookies, follows no proxy settings from the environment and adds
    no Accept, Accept-Encoding, User-Agent or Content-Type of its own.
    """
    connector = aiohttp.TCPConnector(
        limit=limit,
        limit_per_host=limit_per_host,
        keepalive_timeout=keepalive_timeout_s,
    )
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        skip_auto_headers=_SKIP_AUTO_HEADERS,
        trust_env=False,
        raise_for_status=False,
        read_bufsize=read_bufsize_bytes,
        timeout=aiohttp.ClientTimeout(total=None),
        response_class=_HintingResponse,
    )


def _check_target(target: str) -> None:
    """Raises InvalidTarget unless the target is origin-form and fits in a request line."""
    # RFC 9112 §3.2.1: origin-form is absolute-path [ "?" query ]; no fragment, no whitespace.
    if not target.startswith("/") or "#" in target:
        raise InvalidTarget(f"target {target!r} is not origin-form (/path?query)")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in target):
        raise InvalidTarget(f"target {target!r} contains whitespace or control characters")


class OriginClient:
    """Fetches from one origin server; an Upstream."""

    __slots__ = ("_client_timeout", "_rewrite", "_server", "_server_name", "_session", "_timeouts", "_tls")

    def __init__(
        self,
        server: ServerConfig,
        timeouts: TimeoutConfig,
        session: aiohttp.ClientSession,
        rewrite: OriginRewrite | None = None,
        tls_context: ssl.SSLContext
        | None = None,  # the pool's (origin/tls.py); None = aiohttp's verified default
    ) -> None:
        self._server = server
        self._tls: ssl.SSLContext | bool = tls_context if tls_context is not None else True
        self._timeouts = timeouts
        self._session = session
        self._rewrite = rewrite if rewrite is not None else OriginRewrite()
        # SNI and certificate name for https; None = aiohttp's default (the URL's host)
        https = server.base.startswith("https:")
        self._server_name = self._rewrite.server_name if https else None
        # Only the socket connect is left to aiohttp; the other phases use asyncio deadlines below.
        self._client_timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect_s)

    @property
    def server(self) -> ServerConfig:
        """The server this client talks to."""
        return self._server

    def _url(self, target: str) -> yarl.URL:
        _check_target(target)
        # encoded=True: yarl neither decodes, re-encodes nor resolves dot segments.
        url = yarl.URL(self._server.base + target, encoded=True)
        # yarl drops the "?" of an empty query ("/a?" is sent as "/a"); anything else must survive.
        sent = url.raw_path_qs
        if sent != target and sent + "?" != target:
            raise InvalidTarget(f"target {target!r} would be sent as {sent!r}")
        return url

    def _request_headers(self, request: UpstreamRequest) -> CIMultiDict[str]:
        headers: CIMultiDict[str] = CIMultiDict()
        headers["Host"] = rewrite_host(self._rewrite, request.host)
        for name, value in rewrite_request_headers(self._rewrite, strip_hop_by_hop(request.headers)):
            if name.lower() not in _OWN_REQUEST_FIELDS:
                headers.add(name, value)
        return headers

    async def fetch(self, request: UpstreamRequest) -> UpstreamResponse:
        """Sends the request; returns once the head has arrived. Raises UpstreamError."""
        url = self._url(rewrite_target(self._rewrite, request.target))
        headers = self._request_headers(request)
        upstream = self._server.base
        loop = asyncio.get_running_loop()
        started = loop.time()
        total_deadline = started + self._timeouts.total_s
        head_deadline = min(started + self._timeouts.first_byte_s, total_deadline)
        request_time = time.time()
        try:
            async with asyncio.timeout_at(head_deadline):
                resp = await self._session.request(
                    request.method,
                    url,
                    headers=headers,
                    data=request.body,
                    allow_redirects=False,
                    timeout=self._client_timeout,
                    server_hostname=self._server_name,
                    ssl=self._tls,
                )
        except TimeoutError as exc:
            # Also aiohttp's ConnectionTimeoutError (sock_connect), which is a TimeoutError.
            elapsed = loop.time() - started
            raise UpstreamTimeout(
                f"{request.method} {upstream}: no response head after {elapsed:.3f}s",
                upstream=upstream,
            ) from exc
        except aiohttp.ClientConnectorCertificateError as exc:
            raise ConnectError(
                f"{request.method} {upstream}: TLS certificate not accepted ({_verify_message(exc)}); fix "
                "the origin's certificate, or give its pool tls_ca_file",
                upstream=upstream,
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            raise ConnectError(
                f"{request.method} {upstream}: cannot connect: {exc}", upstream=upstream
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise ProtocolError(
                f"{request.method} {upstream}: failed before the head: {exc!r}", upstream=upstream
            ) from exc
        response_time = time.time()
        raw = tuple((n.decode("latin-1"), v.decode("latin-1")) for n, v in resp.raw_headers)
        body = _Body(resp, upstream, self._timeouts.idle_s, total_deadline)
        return UpstreamResponse(
            status=resp.status,
            reason=resp.reason or "",
            headers=rewrite_response_headers(self._rewrite, strip_hop_by_hop(raw)),
            request_time=request_time,
            response_time=response_time,
            body=body,
            close=body.close,
            upstream=upstream,
        )


def _verify_message(exc: aiohttp.ClientConnectorCertificateError) -> str:
    """What OpenSSL found wrong with the certificate, in one line."""
    error = exc.certificate_error
    return str(getattr(error, "verify_message", None) or error).replace("\n", " ")


class _Body:
    """Async iterator over one response body; translates failures and releases the connection.

    Reading to the end returns the connection to the keep-alive pool; close() before the end
    (an abandoned response) closes it, since the unread rest of the body is still on the wire.
    """

    __slots__ = ("_deadline", "_done", "_idle_s", "_resp", "_upstream")

    def __init__(self, resp: aiohttp.ClientResponse, upstream: str, idle_s: float, deadline: float) -> None:
        self._resp = resp
        self._upstream = upstream
        self._idle_s = idle_s
        self._deadline = deadline  # loop.time() at which the total timeout expires
        self._done = False

    def __aiter__(self) -> _Body:
        return self

    async def __anext__(self) -> bytes:
        if self._done:
            raise StopAsyncIteration
        loop = asyncio.get_running_loop()
        total_first = self._deadline <= loop.time() + self._idle_s
        try:
            async with asyncio.timeout_at(min(loop.time() + self._idle_s, self._deadline)):
                chunk = await self._resp.content.readany()
        except TimeoutError as exc:
            self.close()
            what = "total timeout expired" if total_first else f"no body bytes for {self._idle_s}s"
            raise BodyTimeout(f"{self._upstream}: {what} mid-body", upstream=self._upstream) from exc
        except (aiohttp.ClientError, OSError) as exc:
            # aiohttp raises ClientPayloadError when the connection closes before Content-Length
            # bytes or the last chunk arrived: never let a truncated body end quietly.
            self.close()
            raise BodyError(f"{self._upstream}: body failed: {exc}", upstream=self._upstream) from exc
        if not chunk:
            self._done = True
            self._resp.release()
            raise StopAsyncIteration
        return chunk

    def close(self) -> None:
        """Closes the connection unless the body was read to the end (then it was released)."""
        if not self._done:
            self._done = True
            self._resp.close()
