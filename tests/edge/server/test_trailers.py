"""Request trailers never become header fields (issue 12): dropped by the listener, and counted.

A real listener on loopback (tests/edge/server/listener.py) reads chunked requests whose
trailer section carries Cookie, Authorization and Host; the scripted handler answers with
the fields and the body it was handed.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from edge.config.server import ServerConfig
from edge.server.request import Request
from edge.server.writer import Writer
from tests.edge.server.listener import Scripted, listening, read_response

pytestmark = pytest.mark.timeout(20)


async def echo_fields(request: Request, writer: Writer) -> None:
    body = json.dumps(
        {
            "fields": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in request.raw_headers],
            "host": request.raw_host,
            "body": (request.body or b"").decode("latin-1"),
        }
    ).encode()
    writer.start(200, [], len(body))
    await writer.write(body)
    writer.finish()


def chunked(target: str, head: str, chunks: list[bytes], trailers: str) -> bytes:
    """A chunked POST exactly as written: `head` and `trailers` are raw field lines."""
    body = b"".join(b"%x\r\n%b\r\n" % (len(c), c) for c in chunks)
    return (
        f"POST {target} HTTP/1.1\r\n{head}Transfer-Encoding: chunked\r\n\r\n".encode("latin-1")
        + body
        + b"0\r\n"
        + trailers.encode("latin-1")
        + b"\r\n"
    )


TRAILERS = "Cookie: session=attacker\r\nAuthorization: Bearer stolen\r\nX-Forwarded-Host: evil.example\r\n"


class TestTrailers:
    @pytest.mark.parametrize("chunks", [[b"hello", b" world"], []], ids=["with-body", "empty-body"])
    async def test_trailer_fields_are_dropped_and_counted_when_chunked_request_has_them(
        self, chunks: list[bytes]
    ) -> None:
        async with listening(ServerConfig(), Scripted(echo_fields)) as lst:
            reader, writer = await asyncio.open_connection(lst.host, lst.port)
            try:
                writer.write(chunked("/a", "Host: good.example\r\n", chunks, TRAILERS))
                _, body = await read_response(reader)
            finally:
                writer.close()
                await writer.wait_closed()
        seen = json.loads(body)
        assert [name for name, _ in seen["fields"]] == ["Host", "Transfer-Encoding"]
        assert seen["host"] == "good.example" and seen["body"] == b"".join(chunks).decode()
        assert lst.connections.trailers_dropped == 3

    async def test_host_from_trailer_is_not_the_request_host_when_head_had_none(self) -> None:
        async with listening(ServerConfig(), Scripted(echo_fields)) as lst:
            reader, writer = await asyncio.open_connection(lst.host, lst.port)
            try:
                writer.write(chunked("/a", "", [b"x"], "Host: evil.example\r\n"))
                _, body = await read_response(reader)
            finally:
                writer.close()
                await writer.wait_closed()
        seen = json.loads(body)
        assert seen["host"] is None and seen["fields"] == [["Transfer-Encoding", "chunked"]]

    async def test_next_pipelined_request_keeps_its_own_fields_when_previous_had_trailers(self) -> None:
        async with listening(ServerConfig(), Scripted(echo_fields)) as lst:
            reader, writer = await asyncio.open_connection(lst.host, lst.port)
            try:
                writer.write(
                    chunked("/a", "Host: good.example\r\n", [b"x"], TRAILERS)
                    + b"POST /b HTTP/1.1\r\nHost: good.example\r\nCookie: mine=1\r\nContent-Length: 2\r\n\r\nok"
                )
                _, first = await read_response(reader)
                _, second = await read_response(reader)
            finally:
                writer.close()
                await writer.wait_closed()
        assert "Cookie" not in json.dumps(json.loads(first)["fields"])
        assert json.loads(second)["fields"] == [
            ["Host", "good.example"],
            ["Cookie", "mine=1"],
            ["Content-Length", "2"],
        ]
        assert lst.connections.trailers_dropped == 3
