"""Request trailers never reach the origin (issue 12), on a real edge node process.

A chunked request may end with a trailer section; llhttp reports its fields like header
fields, so an edge that does not tell them apart forwards `Cookie`, `Authorization` or
anything else from the trailers as ordinary headers. The careless origin
(tests/integration/careless_origin.py) records the fields of every request it gets.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.integration.careless_origin import CarelessOrigin, start_careless_edge
from tests.integration.harness import Proc, parse_responses, raw_exchange

pytestmark = pytest.mark.timeout(60)

TRAILERS = (
    "Cookie: session=attacker\r\n"
    "Authorization: Bearer stolen\r\n"
    "X-Trailer-Probe: 1\r\n"
)  # a trailer Host is refused as a second Host before the fix: tests/edge/server/test_trailers.py


@pytest.fixture
async def careless() -> AsyncIterator[CarelessOrigin]:
    origin = await CarelessOrigin().start()
    try:
        yield origin
    finally:
        await origin.close()


@pytest.fixture
def edge(tmp_path: Path, careless: CarelessOrigin) -> Iterator[Proc]:
    proc = start_careless_edge(tmp_path, careless)
    try:
        yield proc
    finally:
        proc.stop()


async def send_chunked(edge: Proc, method: str, target: str) -> tuple[int, bytes]:
    host = f"{edge.host}:{edge.port}"
    wire = await raw_exchange(
        edge.host,
        edge.port,
        (
            f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n"
            f"Connection: close\r\n\r\n5\r\nhello\r\n0\r\n{TRAILERS}\r\n"
        ).encode("latin-1"),
    )
    [response] = parse_responses(wire)
    return response.status, response.body


@pytest.mark.parametrize(("method", "target"), [("POST", "/page"), ("GET", "/page?cc=max-age%3D600")])
async def test_trailer_fields_never_reach_origin_when_chunked_request_ends_with_them(
    edge: Proc, careless: CarelessOrigin, method: str, target: str
) -> None:
    status, body = await send_chunked(edge, method, target)
    assert status == 200, body
    [seen] = careless.seen
    for name in ("cookie", "authorization", "x-trailer-probe"):
        assert name not in seen, seen
    assert seen["host"] == f"{edge.host}:{edge.port}"
    assert json.loads(body)["link"] == f"http://{edge.host}:{edge.port}/page"
