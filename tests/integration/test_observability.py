"""Metrics and access logs of real node processes in two regions (issue 16).

Known traffic goes to a live cluster (n1, n2 in r1; n3 in r2): misses, a hit, a peer hit
(n2 asks n1, the key's owner, which has it), and a purge. The test scrapes `GET /metrics`
on the admin listeners before and after and asserts the exact deltas, parsing the text
exposition with prometheus_client's own parser. The access logs of the same run must show
a non-zero duration for the fast-path hit and `peer-hit` on n2, which served the client.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.cluster_harness import access_lines
from tests.integration.purge_harness import HOST, NodeSpec, PurgeCluster, VersionedOrigin, wait_for
from tests.integration.test_purge_cluster import owned_by

pytestmark = pytest.mark.timeout(90)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(session: aiohttp.ClientSession, cluster: PurgeCluster, node: str) -> Samples:
    """Every sample of a node's /metrics, keyed by (sample name, labels)."""
    async with session.get(cluster.specs[node].admin_url + "/metrics") as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain"), r.status
        text = await r.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when the series does not exist yet (a counter never incremented)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


@pytest.fixture
async def cluster(tmp_path: Path, vorigin: VersionedOrigin) -> PurgeCluster:
    specs = [NodeSpec("n1", "r1", disk=True), NodeSpec("n2", "r1"), NodeSpec("n3", "r2")]
    c = await PurgeCluster(tmp_path, vorigin, specs, access_log=True).start()
    try:
        yield c  # type: ignore[misc]
    finally:
        await c.close()


class TestMetrics:
    async def test_counters_move_by_exactly_the_traffic_sent_when_hits_misses_a_peer_hit_and_a_purge(
        self, cluster: PurgeCluster, vorigin: VersionedOrigin, session: aiohttp.ClientSession
    ) -> None:
        name = owned_by("n1", ("n1", "n2"), "metrics")
        path = f"/v/{name}"
        size = len(vorigin.body(name))
        server = vorigin.url
        n1_before, n2_before = await scrape(session, cluster, "n1"), await scrape(session, cluster, "n2")

        first = await cluster.get(session, "n1", path)  # miss: n1 owns it and fetches
        second = await cluster.get(session, "n1", path)  # hit, on the fast path
        via_peer = await cluster.get(session, "n2", path)  # n2 asks n1, which has it: a peer hit
        assert [first.status, second.status, via_peer.status] == [200, 200, 200]
        assert second.headers["Cache-Status"].startswith("edgecache-n1; hit")
        # RFC 9211: the owner's member first, then the node that served the client
        owner_part, _, own_part = via_peer.headers["Cache-Status"].partition(", ")
        assert owner_part.startswith("edgecache-n1; hit"), via_peer.headers["Cache-Status"]
        assert own_part.startswith("edgecache-n2; fwd=miss") and "detail=peer-n1" in own_part, own_part
        status, answer = await cluster.purge(session, "n1", {"url": f"http://{HOST}{path}"})
        assert status == 200, answer
        third = await cluster.get(session, "n1", path)  # purged: a miss again
        assert third.status == 200 and vorigin.count(name) == 2

        n1, n2 = await scrape(session, cluster, "n1"), await scrape(session, cluster, "n2")
        # n1: two misses and one hit from clients, one hit for its peer, two origin fetches
        assert delta(n1_before, n1, "edgecache_requests_total", outcome="miss", route="demo") == 2
        assert delta(n1_before, n1, "edgecache_requests_total", outcome="hit", route="demo") == 1
        assert delta(n1_before, n1, "edgecache_response_body_bytes_total", outcome="hit", route="demo") == size
        assert delta(n1_before, n1, "edgecache_peer_requests_total", outcome="hit", route="demo") == 1
        assert delta(n1_before, n1, "edgecache_origin_fetches_total", pool="demo", server=server, status="200") == 2
        assert delta(n1_before, n1, "edgecache_origin_fetch_duration_seconds_count", pool="demo") == 2
        assert delta(n1_before, n1, "edgecache_request_duration_seconds_count", outcome="hit") == 1
        assert delta(n1_before, n1, "edgecache_request_duration_seconds_count", outcome="miss") == 2
        assert delta(n1_before, n1, "edgecache_served_bytes_total", tier="memory") == size
        assert delta(n1_before, n1, "edgecache_served_bytes_total", tier="origin") == 2 * size
        assert delta(n1_before, n1, "edgecache_purge_generation") == 1
        assert value(n1, "edgecache_purge_journal_position", origin_node="n1") == 1
        assert delta(n1_before, n1, "edgecache_purge_invalidated_objects_total") == 1

        async def stored() -> bool:  # the refetched copy commits (fsync) after the client has it
            m = await scrape(session, cluster, "n1")
            return value(m, "edgecache_store_objects", tier="disk") == 1

        await wait_for(stored, "n1 to commit the refetched copy to disk")
        n1 = await scrape(session, cluster, "n1")
        assert delta(n1_before, n1, "edgecache_disk_written_bytes_total") == 2 * size
        assert delta(n1_before, n1, "edgecache_store_inserts_total", tier="disk") == 2
        # n2: one peer hit, no origin fetch, the body counted as coming from a peer
        assert delta(n2_before, n2, "edgecache_requests_total", outcome="peer_hit", route="demo") == 1
        assert total(n2, "edgecache_requests_total") - total(n2_before, "edgecache_requests_total") == 1
        assert total(n2, "edgecache_origin_fetches_total") == 0
        assert delta(n2_before, n2, "edgecache_served_bytes_total", tier="peer") == size
        # the ring and the membership as n2 sees them
        assert value(n2, "edgecache_ring_members") == 2
        assert value(n2, "edgecache_peer_up", peer="n1", region="r1") == 1
        shares = [value(n2, "edgecache_ring_share_ratio", member=m) for m in ("n1", "n2")]
        assert math.isclose(sum(shares), 1.0) and all(0.3 < s < 0.7 for s in shares), shares
        # every node has the purge, and each peer's catch-up lag is known once a round ran
        for node in ("n2", "n3"):
            async def caught_up(node: str = node) -> bool:
                m = await scrape(session, cluster, node)
                lags = [v for (n, _), v in m.items() if n == "edgecache_purge_peer_lag_seconds"]
                return value(m, "edgecache_purge_journal_position", origin_node="n1") == 1 and len(lags) == 2 and all(
                    not math.isnan(lag) for lag in lags
                )

            await wait_for(caught_up, f"{node} to report the purge and both peers' lag")

    async def test_listener_counts_open_and_closed_connections_when_clients_come_and_go(
        self, cluster: PurgeCluster, session: aiohttp.ClientSession
    ) -> None:
        before = await scrape(session, cluster, "n3")
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as once:
            for _ in range(3):
                async with once.get(f"http://{cluster.specs['n3'].host}:{cluster.specs['n3'].port}/v/c",
                                    headers={"Host": HOST}) as r:
                    await r.read()

        async def closed() -> bool:
            after = await scrape(session, cluster, "n3")
            return delta(before, after, "edgecache_connections_closed_total", listener="public", reason="normal") == 3

        await wait_for(closed, "three closed client connections on n3")
        after = await scrape(session, cluster, "n3")
        assert delta(before, after, "edgecache_connections_accepted_total", listener="public") == 3
        assert value(after, "edgecache_connections_open", listener="public") == 0
        assert value(after, "edgecache_access_log_dropped_lines_total") == 0


    async def test_dashboard_queries_only_metrics_a_node_exports_when_imported_into_grafana(
        self, cluster: PurgeCluster, session: aiohttp.ClientSession
    ) -> None:
        dashboard = json.loads((Path(__file__).parents[2] / "deploy/grafana/edgecache.json").read_text())
        wanted = {name for panel in dashboard["panels"] for target in panel["targets"]
                  for name in re.findall(r"edgecache_[a-z_]+", target["expr"])}
        async with session.get(cluster.specs["n1"].admin_url + "/metrics") as r:
            families = {f.name for f in text_string_to_metric_families(await r.text())}
        exported = {f + suffix for f in families for suffix in ("", "_total", "_bucket", "_count", "_sum")}
        assert len(wanted) >= 19 and wanted <= exported, sorted(wanted - exported)


class TestAccessLog:
    async def test_fast_hit_logs_real_duration_and_peer_hit_logs_as_one_on_serving_node(
        self, cluster: PurgeCluster, vorigin: VersionedOrigin, session: aiohttp.ClientSession
    ) -> None:
        name = owned_by("n1", ("n1", "n2"), "logs")
        path = f"/v/{name}"
        await cluster.get(session, "n1", path)
        await cluster.get(session, "n1", path)
        await cluster.get(session, "n2", path)

        async def logged() -> bool:
            return len(access_lines(cluster.procs["n1"], path)) >= 3 and len(access_lines(cluster.procs["n2"], path)) >= 1

        await wait_for(logged, "the access-log lines of both nodes")
        n1 = [(r["cache"], r["upstream"], r["us"]) for r in access_lines(cluster.procs["n1"], path)]
        n2 = access_lines(cluster.procs["n2"], path)
        miss, hit = n1[0], n1[1]
        assert miss[0] == "miss" and miss[1] == vorigin.url and miss[2] > 0, n1
        assert hit[0] == "hit" and hit[1] == "" and hit[2] > 0, n1  # the fast path, timed
        assert n1[2][0] == "hit"  # n1 answered n2's peer request from its cache
        assert len(n2) == 1, n2
        assert n2[0]["cache"] == "peer-hit" and n2[0]["upstream"] == "peer:n1", n2
        assert n2[0]["bytes"] == len(vorigin.body(name)) and n2[0]["status"] == 200 and n2[0]["us"] > 0
