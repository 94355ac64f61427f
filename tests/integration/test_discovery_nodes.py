"""DNS discovery with real node processes: a node found in DNS joins the ring and gets purges (issue 17).

n1's config lists only n1 and discovers its region from the A records of `peers.test` on a
real DNS server (UDP on 127.0.0.1, tests/cluster/dns_server.py); n2's config lists both (a
rollout: n2 has the newer config). Catch-up is slowed to once in 10 minutes, so a purge
submitted at n1 reaches n2 only if n1 fans it out to the node it discovered, and n1 must
catch up with a node it discovers at once (it accepts purges only once it has synced). When the record
goes away, n1 drops n2 again: its next purge is acknowledged by nobody and waits for nobody.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.cluster.dns_server import DnsServer
from tests.integration.conftest import next_loopback
from tests.integration.harness import Proc, free_port, start_edge, start_origin
from tests.integration.purge_harness import wait_for

pytestmark = pytest.mark.timeout(90)

TOKEN = "discovery-test-token"


class Node:
    def __init__(self, name: str) -> None:
        self.name = name
        self.host = next_loopback()
        self.port, self.internal, self.admin = (free_port(self.host) for _ in range(3))

    def table(self) -> list[str]:
        return [f"[nodes.{self.name}]", f'listen = "{self.host}:{self.port}"',
                f'internal = "{self.host}:{self.internal}"', f'admin = "{self.host}:{self.admin}"',
                'region = "r"', ""]


def config(path: Path, origin: str, nodes: list[Node], region: list[str]) -> Path:
    lines = ["access_log = false", "", "[cluster]", 'secret = "discovery-test-secret"',
             "purge_sync_interval_s = 600", "max_purge_lag_s = 1200",
             "probe_interval_s = 0.2", "probe_timeout_s = 0.3", "fail_after = 2", "recover_after = 1", "",
             "[admin]", "purge_timeout_s = 3.0",
             "[[admin.tokens]]", 'name = "ops"', f'token = "{TOKEN}"', 'hosts = ["*"]', "",
             "[regions.r]", *region, ""]
    for node in nodes:
        lines += node.table()
    lines += ["[origins.demo]", f'servers = ["{origin}"]', "",
              "[[routes]]", 'host = "*"', 'path_prefix = "/"', 'origin = "demo"', ""]
    path.write_text("\n".join(lines))
    return path


@pytest.fixture
async def dns() -> AsyncIterator[DnsServer]:
    server = await DnsServer().start()
    try:
        yield server
    finally:
        server.close()


async def purge(session: aiohttp.ClientSession, node: Node, url: str) -> tuple[int, dict[str, Any]]:
    async with session.post(f"http://{node.host}:{node.admin}/purge", data=json.dumps({"url": url}),
                            headers={"Authorization": f"Bearer {TOKEN}"}) as r:
        return r.status, json.loads(await r.text())


async def status(session: aiohttp.ClientSession, node: Node) -> dict[str, Any]:
    async with session.get(f"http://{node.host}:{node.admin}/status",
                           headers={"Authorization": f"Bearer {TOKEN}"}) as r:
        return dict(await r.json())


async def test_a_node_found_in_dns_joins_the_ring_gets_purges_and_leaves_when_its_record_goes(
    dns: DnsServer, tmp_path: Path
) -> None:
    n1, n2 = Node("n1"), Node("n2")
    discovered = f"{n2.host}:{n2.internal}"  # A records name a node by address and port
    discover = ['discover = "peers.test"', 'discover_record = "A"', f"discover_port = {n2.internal}",
                "discover_interval_s = 0.2", "discover_timeout_s = 0.2",
                f'discover_nameservers = ["{dns.host}:{dns.port}"]']
    procs: list[Proc] = []
    try:
        origin = start_origin(tmp_path / "logs")
        procs.append(origin)
        origin_url = f"http://{origin.host}:{origin.port}"
        c1 = config(tmp_path / "n1.toml", origin_url, [n1], discover)
        c2 = config(tmp_path / "n2.toml", origin_url, [n1, n2], [])
        procs.append(await asyncio.to_thread(start_edge, c1, "n1", tmp_path / "logs"))
        procs.append(await asyncio.to_thread(start_edge, c2, "n2", tmp_path / "logs"))
        dns.records[("peers.test.", "A")] = [n2.host]  # published once n2 is up, as Kubernetes does
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:

            async def n1_sees_n2_up() -> bool:
                peers = (await status(session, n1))["peers"]
                return any(p["name"] == discovered and p["healthy"] for p in peers)

            await wait_for(n1_sees_n2_up, "n1 to take the discovered node into its ring")

            async def n1_synced_with_n2() -> bool:
                state = (await status(session, n1))["purge_peers"].get(discovered)
                return state is not None and state["last_sync_age_s"] is not None

            # a node that joins is caught up with at once, not at the (10-minute) interval
            await wait_for(n1_synced_with_n2, "n1 to catch up with the node it discovered")

            code, reply = await purge(session, n1, "http://site.test/a")
            assert code == 200 and reply["acked"] == ["n1", discovered] and reply["pending"] == [], reply

            async def n2_holds(seq: int) -> bool:
                return int((await status(session, n2))["cursor"].get("n1", 0)) >= seq

            # by fan-out: n2's catch-up is 10 minutes away
            await wait_for(lambda: n2_holds(1), "n2 to journal n1's purge")

            dns.records.pop(("peers.test.", "A"))

            async def n1_forgot_n2() -> bool:
                return all(p["name"] != discovered for p in (await status(session, n1))["peers"])

            await wait_for(n1_forgot_n2, "n1 to drop the node whose record went away")
            code, reply = await purge(session, n1, "http://site.test/b")
            assert code == 200 and reply["acked"] == ["n1"] and reply["pending"] == [], reply
    finally:
        for proc in procs:
            await asyncio.to_thread(proc.stop)
