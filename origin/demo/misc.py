"""The demo origin's small endpoints: echo, hang, status, and per-user responses.

    GET|POST|PUT|DELETE /echo/<any>   JSON of the method, raw target and headers received
    GET /hang/<any>                   never answers; released only when the server closes
    GET /reset/<any>                  resets the connection (TCP RST) before any response
    GET /status/<code>                that status with a short body
    GET /private/<name>               Cache-Control: private; the body holds the Cookie value
    GET /whoami                       cacheable, sets a cookie; the body holds the Cookie value

Forwarding and poisoning tests read what the edge sent from /echo; privacy tests check
that one user's /private or /whoami body never reaches another user.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct

import xxhash
from aiohttp import web

__all__ = ["MiscHandlers", "echo_response", "request_headers"]


def request_headers(request: web.BaseRequest) -> tuple[tuple[str, str], ...]:
    """The request's header pairs as received: arrival order, original case, duplicates kept."""
    return tuple((n.decode("latin-1"), v.decode("latin-1")) for n, v in request.raw_headers)


async def echo_response(request: web.Request, cache_control: str | None) -> web.Response:
    """Answers 200 with JSON describing the request exactly as it arrived."""
    body = await request.read() if request.can_read_body else b""
    payload = {
        "method": request.method,
        "path": request.raw_path,
        "headers": [[n, v] for n, v in request_headers(request)],
        "body_length": len(body),
    }
    headers = {"Cache-Control": cache_control} if cache_control else {}
    return web.Response(body=json.dumps(payload).encode(), headers=headers, content_type="application/json")


class MiscHandlers:
    """Echo, hang, reset, status and per-user endpoints; `closing` is set when the server closes."""

    def __init__(self, closing: asyncio.Event) -> None:
        self._closing = closing

    async def echo(self, request: web.Request) -> web.Response:
        """Echoes the request; `cc` overrides the default `max-age=60`."""
        return await echo_response(request, request.query.get("cc", "max-age=60"))

    async def hang(self, request: web.Request) -> web.StreamResponse:
        """Accepts the request and answers nothing until the server closes."""
        await self._closing.wait()
        # The server is going away: drop the connection rather than invent a response.
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=503, text="closing\n")

    async def reset(self, request: web.Request) -> web.Response:
        """Drops the connection with a TCP reset, as a crashing or overloaded origin does."""
        transport = request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                # SO_LINGER on, timeout 0: close() sends RST instead of FIN.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        return web.Response(status=500, text="reset\n")  # never reaches the client

    async def status(self, request: web.Request) -> web.Response:
        """Answers the status in the path, with `cc` as Cache-Control when given."""
        try:
            code = int(request.match_info["code"])
        except ValueError:
            return web.Response(status=400, text="status must be a number\n")
        if not 200 <= code <= 599:
            return web.Response(status=400, text="status must be 200..599\n")
        headers = {"Cache-Control": request.query["cc"]} if "cc" in request.query else {}
        # RFC 9110 §6.4.1: 204 and 304 never carry content.
        if code in (204, 304):
            return web.Response(status=code, headers=headers)
        return web.Response(status=code, text=f"status {code}\n", headers=headers)

    async def private(self, request: web.Request) -> web.Response:
        """A per-user body marked private: a shared cache must never store or share it."""
        cookie = request.headers.get("Cookie", "")
        name = request.match_info["name"]
        return web.Response(
            text=f"private {name} for cookie={cookie}\n",
            headers={"Cache-Control": "private, max-age=60"},
        )

    async def whoami(self, request: web.Request) -> web.Response:
        """A cacheable response that sets a cookie and echoes the caller's Cookie value."""
        cookie = request.headers.get("Cookie", "")
        session = xxhash.xxh64_hexdigest(cookie.encode("latin-1", "replace"))
        return web.Response(
            text=f"whoami cookie={cookie}\n",
            headers={"Cache-Control": "max-age=60", "Set-Cookie": f"session={session}; Path=/"},
        )
