"""Attacker, then victim: nobody can poison, deceive or read through the cache (issue 12).

Each test sends the attacker's request to a real edge node process in front of the
careless origin (tests/integration/careless_origin.py), then the victim's, and checks the
victim got the origin's own answer to the victim's request. Raw sockets carry requests that
aiohttp would refuse to send or would rewrite.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.integration.cluster_harness import NodeAddr, Region, allocate, write_cluster_config
from tests.integration.careless_origin import CarelessOrigin, start_careless_edge
from tests.integration.harness import Proc, RawResponse, fetch, parse_responses, raw_exchange

pytestmark = pytest.mark.timeout(60)

StartEdge = Callable[..., Proc]


@pytest.fixture
async def careless() -> AsyncIterator[CarelessOrigin]:
    origin = await CarelessOrigin().start()
    try:
        yield origin
    finally:
        await origin.close()


@pytest.fixture
def start(tmp_path: Path, careless: CarelessOrigin) -> Iterator[StartEdge]:
    """Starts edge nodes in front of the careless origin; all are stopped after the test."""
    started: list[Proc] = []

    def run(*, extra: str = "", cache: dict[str, object] | None = None) -> Proc:
        proc = start_careless_edge(tmp_path, careless, extra=extra, cache=dict(cache or {}), name=f"e{len(started)}")
        started.append(proc)
        return proc

    try:
        yield run
    finally:
        for proc in started:
            proc.stop()


async def raw_get(edge: Proc, target: str, fields: str = "", host: str | None = None) -> RawResponse:
    """One GET exactly as written: `host` (default the node's address) and extra raw field lines."""
    host = f"{edge.host}:{edge.port}" if host is None else host
    wire = await raw_exchange(
        edge.host, edge.port,
        f"GET {target} HTTP/1.1\r\nHost: {host}\r\n{fields}Connection: close\r\n\r\n".encode("latin-1"),
    )
    [response] = parse_responses(wire)
    return response


def link_of(body: bytes) -> str:
    """The link the careless origin built from the Host / X-Forwarded-Host it acted on."""
    return str(json.loads(body)["link"])


class TestHost:
    @pytest.mark.parametrize("suffix", ["/static", "/static/app.js?", "%2fstatic", "\\static", "@evil", ":1/static"])
    async def test_host_with_path_cannot_plant_a_body_under_victim_url_when_attacker_sends_it(
        self, start: StartEdge, careless: CarelessOrigin, suffix: str
    ) -> None:
        edge = start()
        address = f"{edge.host}:{edge.port}"
        attack = await raw_get(edge, "/app.js?cc=max-age%3D600", host=address + suffix)
        assert attack.status == 400, attack
        assert sum(careless.counts.values()) == 0  # refused before any cache or origin work
        victim = await raw_get(edge, "/static/app.js?cc=max-age%3D600")
        assert victim.status == 200 and victim.body == b"static file /static/app.js\n"

    async def test_host_spellings_share_one_key_and_origin_sees_normal_form_when_equivalent(
        self, start: StartEdge, careless: CarelessOrigin
    ) -> None:
        edge = start()
        first = await raw_get(edge, "/page?cc=max-age%3D600", host="Demo.TEST.:80")
        second = await raw_get(edge, "/page?cc=max-age%3D600", host="demo.test")
        assert first.status == second.status == 200
        assert first.body == second.body and link_of(first.body) == "http://demo.test/page"
        assert careless.counts["/page?cc=max-age%3D600"] == 1
        assert careless.seen[0]["host"] == "demo.test"

    async def test_repeated_host_is_refused_when_values_differ(self, start: StartEdge, careless: CarelessOrigin) -> None:
        edge = start()
        response = await raw_get(edge, "/page", fields="Host: evil.example\r\n")
        assert response.status == 400 and not careless.counts


POLICY = """
[[policies]]
host = "*"
path_prefix = "/"
default_ttl_s = 600
ttl_by_extension = { css = 3600, js = 3600, ts = 3600 }
"""

DECEPTIVE = [
    "/account/x.css", "/account;x.css", "/account%2Fx.css", "/account/..%2Fstatic/x.css", "/account%23x.css",
    "/account/x.css;a", "/account/.%2E/account/x.js", "/account/x.ts",
]


class TestDeception:
    @pytest.mark.parametrize("freshness", ["policy", "heuristic"])
    @pytest.mark.parametrize("path", DECEPTIVE)
    async def test_victim_page_is_never_served_to_attacker_when_lured_to_static_looking_url(
        self, start: StartEdge, careless: CarelessOrigin, path: str, freshness: str
    ) -> None:
        edge = start(extra=POLICY if freshness == "policy" else "")
        target = path + ("?lm=1" if freshness == "heuristic" else "")
        victim = await raw_get(edge, target, "Cookie: id=victim\r\n")
        assert victim.status == 200
        attacker = await raw_get(edge, target)
        assert b"victim" not in attacker.body, (attacker.header("cache-status"), attacker.body)
        assert attacker.status == 200 and careless.counts[target] == 2
        again = await raw_get(edge, target, "Cookie: id=victim2\r\n")
        assert b"victim2" in again.body or b"static file" in again.body

    async def test_page_without_extension_is_not_kept_when_request_carried_cookie(
        self, start: StartEdge, careless: CarelessOrigin
    ) -> None:
        edge = start(extra=POLICY)
        victim = await raw_get(edge, "/account", "Cookie: id=victim\r\n")
        assert victim.body == b"<html>account page of id=victim</html>\n"
        assert "credentials" in (victim.header("cache-status") or "")
        attacker = await raw_get(edge, "/account")
        assert attacker.body == b"<html>account page of anonymous</html>\n"

    async def test_static_file_is_kept_when_type_agrees_and_no_credentials(
        self, start: StartEdge, careless: CarelessOrigin
    ) -> None:
        edge = start(extra=POLICY)
        first = await raw_get(edge, "/static/site.css")
        second = await raw_get(edge, "/static/site.css")
        assert first.body == second.body == b"static file /static/site.css\n"
        assert "hit" in (second.header("cache-status") or "") and careless.counts["/static/site.css"] == 1

    async def test_file_is_not_kept_when_content_type_disagrees_with_extension(
        self, start: StartEdge, careless: CarelessOrigin
    ) -> None:
        edge = start(extra=POLICY)
        target = "/static/site.css?ct=text/html"
        first = await raw_get(edge, target)
        await raw_get(edge, target)
        assert "type-mismatch" in (first.header("cache-status") or "") and careless.counts[target] == 2


ALIASES = [
    "X_Forwarded_Host: evil.example\r\n",
    "X-Forwarded_Host: evil.example\r\n",
    "x_forwarded_host: evil.example\r\n",
    "X_HTTP_Method_Override: DELETE\r\n",
    "X_Original_URL: /admin\r\n",
]


class TestHeaderAliases:
    @pytest.mark.parametrize("underscores", [False, True], ids=["default", "underscores-allowed"])
    @pytest.mark.parametrize("alias", ALIASES)
    async def test_underscore_alias_cannot_poison_cached_page_when_origin_folds_names(
        self, start: StartEdge, careless: CarelessOrigin, alias: str, underscores: bool
    ) -> None:
        edge = start(extra=f"[limits]\nunderscores_in_headers = {'true' if underscores else 'false'}\n")
        target = "/page?cc=max-age%3D600"
        attack = await raw_get(edge, target, alias)
        victim = await raw_get(edge, target)
        for reply in (attack, victim):
            payload = json.loads(reply.body)
            assert payload["link"] == f"http://{edge.host}:{edge.port}/page", payload
            assert payload["method"] == "GET"
        assert "evil.example" not in json.dumps(careless.seen) and "/admin" not in json.dumps(careless.seen)

    async def test_harmless_underscore_field_reaches_origin_only_when_operator_allows_it(
        self, start: StartEdge, careless: CarelessOrigin
    ) -> None:
        strict = start()
        lenient = start(extra="[limits]\nunderscores_in_headers = true\n")
        await raw_get(strict, "/page", "X_App_Token: abc\r\n")
        await raw_get(lenient, "/page", "X_App_Token: abc\r\n")
        assert "x-app-token" not in careless.seen[0] and careless.seen[1]["x-app-token"] == "abc"


INTERNAL = [
    "/_edge/health", "/_edge/purge", '/_edge/purges?cursor={"e0":0}', "/_edge/purges?cursor=%7B%7D", "/_edge/",
    "/_EDGE/purges?cursor=%7B%7D", "//_edge/purges?cursor=%7B%7D", "/%5Fedge/purges?cursor=%7B%7D",
    "/x/../_edge/purges?cursor=%7B%7D", "/_edge/anything-else",
]
SECRET = "security-test-secret"


@pytest.fixture
def region(tmp_path: Path, careless: CarelessOrigin) -> Iterator[tuple[Region, list[NodeAddr]]]:
    nodes = allocate(["e0", "e1"])
    config = write_cluster_config(tmp_path / "region.toml", origin_url=careless.url, nodes=nodes,
                                  cluster={"secret": SECRET, "probe_interval_s": 0.5, "probe_timeout_s": 0.5})
    cluster = Region(tmp_path / "logs")
    try:
        cluster.start(config, nodes)
        yield cluster, nodes
    finally:
        cluster.stop()


class TestInternalEndpoints:
    async def test_every_internal_path_is_404_on_public_port_of_every_node(
        self, region: tuple[Region, list[NodeAddr]], careless: CarelessOrigin
    ) -> None:
        cluster, nodes = region
        for node in nodes:
            for target in INTERNAL:
                for method in ("GET", "POST"):
                    wire = await raw_exchange(node.host, node.port, (
                        f"{method} {target} HTTP/1.1\r\nHost: demo.test\r\nContent-Length: 0\r\n"
                        "Connection: close\r\n\r\n"
                    ).encode())
                    [reply] = parse_responses(wire)
                    assert reply.status == 404, (node.name, method, target, reply)
                    assert b"purges" not in reply.body and b'"node"' not in reply.body
        assert not careless.counts  # nothing was forwarded to the origin either

    async def test_internal_port_still_answers_peers_when_they_send_the_secret(
        self, region: tuple[Region, list[NodeAddr]]
    ) -> None:
        cluster, nodes = region
        wire = await raw_exchange(nodes[0].host, nodes[0].internal_port, (
            f"GET /_edge/purges?cursor=%7B%7D HTTP/1.1\r\nHost: demo.test\r\nX-Edge-Secret: {SECRET}\r\n"
            "Connection: close\r\n\r\n"
        ).encode())
        assert parse_responses(wire)[0].status == 200


class TestRequestErrors:
    @pytest.mark.parametrize("size", [5000, 8000])
    async def test_cacheable_400_caused_by_one_request_is_not_served_to_victim(
        self, start: StartEdge, careless: CarelessOrigin, size: int
    ) -> None:
        edge = start()
        target = "/page?cc=max-age%3D600"
        attack = await raw_get(edge, target, f"X-Junk: {'a' * size}\r\n")
        assert attack.status == 400 and "request-error" in (attack.header("cache-status") or "")
        victim = await raw_get(edge, target)
        assert victim.status == 200 and json.loads(victim.body)["path"] == target
        assert careless.counts[target] == 2

    async def test_header_line_over_the_limit_gets_431_from_edge_before_origin(
        self, start: StartEdge, careless: CarelessOrigin
    ) -> None:
        edge = start()
        attack = await raw_get(edge, "/page?cc=max-age%3D600", f"X-Junk: {'a' * 9000}\r\n")
        assert attack.status == 431 and not careless.counts
        small = start(extra='[limits]\nmax_header_line_bytes = "2KiB"\n')
        assert (await raw_get(small, "/page", f"X-Junk: {'a' * 3000}\r\n")).status == 431
        assert (await raw_get(small, "/page", f"X-Junk: {'a' * 1000}\r\n")).status == 200

    async def test_error_status_is_stored_when_policy_lists_it(self, start: StartEdge, careless: CarelessOrigin) -> None:
        edge = start(extra='[[policies]]\nhost = "*"\nstore_error_statuses = [400]\n')
        target = "/page?cc=max-age%3D600"
        assert (await raw_get(edge, target, f"X-Junk: {'a' * 5000}\r\n")).status == 400
        assert (await raw_get(edge, target)).status == 400  # the operator's choice: stored
        assert careless.counts[target] == 1


class TestVariants:
    async def test_many_accept_encoding_spellings_make_three_fetches_and_victim_gets_own_coding(
        self, start: StartEdge, careless: CarelessOrigin
    ) -> None:
        edge = start()
        target = "/ae/app.js"
        spellings = [f"gzip;q=0.{1 + i % 9}, deflate, x-junk-{i}" for i in range(100)]
        spellings += [f"br, gzip, junk-{i}" for i in range(100)] + [f"zstd, junk-{i}" for i in range(100)]
        for value in spellings:
            assert (await raw_get(edge, target, f"Accept-Encoding: {value}\r\n")).status == 200
        assert careless.counts[target] == 3
        assert {seen["accept-encoding"] for seen in careless.seen} == {"gzip", "br", "identity"}
        for value, coding in [("gzip, deflate, br", "br"), ("gzip", "gzip"), ("deflate", "identity"), (None, "identity")]:
            victim = await raw_get(edge, target, f"Accept-Encoding: {value}\r\n" if value else "")
            assert victim.body == f"/ae/app.js encoded for {coding}\n".encode(), (value, victim.body)
            assert "hit" in (victim.header("cache-status") or "")

    async def test_oldest_variant_is_evicted_when_url_exceeds_variant_cap(
        self, start: StartEdge, careless: CarelessOrigin
    ) -> None:
        edge = start(cache={"max_variants": 4})
        target = "/page?cc=max-age%3D600&vary=X-Variant"
        for i in range(6):
            await raw_get(edge, target, f"X-Variant: v{i}\r\n")
        assert careless.counts[target] == 6
        newest = await raw_get(edge, target, "X-Variant: v5\r\n")
        assert "hit" in (newest.header("cache-status") or "") and careless.counts[target] == 6
        oldest = await raw_get(edge, target, "X-Variant: v0\r\n")
        assert "hit" not in (oldest.header("cache-status") or "") and careless.counts[target] == 7
