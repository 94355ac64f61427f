"""Bad input on the public listener: a clear status, a closed connection, and a node that keeps serving."""

from __future__ import annotations

import aiohttp
import pytest

from tests.integration.harness import Proc, origin_count, raw_exchange
from tests.integration.test_forwarding import assert_still_serving

CASES = {
    "connect": (b"CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n", 501),
    "websocket-upgrade": (b"GET /echo/ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
                          501),
    "absolute-form": (b"GET http://evil.example/echo/abs HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    "asterisk-form": (b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    "tls-hello": (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", 400),
    "two-hosts": (b"GET /echo/two HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    "no-host-http10": (b"GET /echo/nohost HTTP/1.0\r\n\r\n", 400),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_bad_request_gets_clear_status_and_node_keeps_serving_when_sent(
        case: str, edge: Proc, origin: Proc, client: aiohttp.ClientSession, unique_name: str) -> None:
    wire, status = CASES[case]
    reply = await raw_exchange(edge.host, edge.port, wire)
    assert reply.startswith(f"HTTP/1.1 {status} ".encode()), reply[:120]
    assert b"\r\n\r\n" in reply and reply.split(b"\r\n\r\n", 1)[1].strip(), "the reason is in the body"
    for target in ("/echo/ws", "/echo/abs", "/echo/two", "/echo/nohost"):
        assert origin_count(origin, target) == 0
    await assert_still_serving(edge, client, unique_name)
