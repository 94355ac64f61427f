"""A fill's entry is found by the next lookup once its last byte is stored (issue 11).

The leader's client reads the head of a 20 MB miss and then stops reading. The fill is
owned by the coalescer, not by that client, so the object must be committed to the store
as soon as the origin's last byte is in, and later requests are hits, however slowly the
leader's client reads. Real processes: the demo origin and an edge node with a disk tier.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from tests.integration.conftest import EdgeFactory
from tests.integration.harness import Proc, fetch, origin_stats

pytestmark = pytest.mark.timeout(60)

SIZE = 20_000_000  # far more than the loopback socket buffers take while the client pauses


async def test_next_request_is_a_hit_while_leader_client_has_not_read_the_body(
    edge_factory: EdgeFactory, origin: Proc, unique_name: str, client: aiohttp.ClientSession
) -> None:
    edge = edge_factory(disk=True)
    target = f"/obj/{unique_name}.bin?size={SIZE}&cc=max-age=600"
    host = f"{edge.host}:{edge.port}"
    reader, writer = await asyncio.open_connection(edge.host, edge.port)
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"fwd=miss" in head, head
        # the leader's client reads nothing more; the store must get the object anyway
        deadline = time.monotonic() + 20
        while True:
            probe = await fetch(client, edge.url + target, method="HEAD")
            if "hit" in probe.cache_status:
                break
            assert "collapsed" in probe.cache_status, probe.headers  # never a second fill
            assert time.monotonic() < deadline, f"never a hit: {probe.headers.get('Cache-Status')}"
            await asyncio.sleep(0.05)
        hit = await fetch(client, edge.url + target)
        assert hit.status == 200 and len(hit.body) == SIZE and "hit" in hit.cache_status
        # the leader's client still gets the whole body afterwards
        received = 0
        async with asyncio.timeout(30):
            while received < SIZE:
                chunk = await reader.read(1 << 20)
                assert chunk, f"leader's body ended at {received} of {SIZE}"
                received += len(chunk)
        assert received == SIZE
        assert origin_stats(origin)["paths"].get(target) == 1
    finally:
        writer.close()
