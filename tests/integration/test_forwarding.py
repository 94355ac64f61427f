"""What the edge forwards to the origin, what it refuses, and what it never shares.

The demo origin's /echo/ answers with the method, raw target and header fields it
received (and is cacheable for 60 s), so a test reads exactly what the edge sent upstream.
Exact request bytes (encoded targets, Connection lists, request bodies, malformed or
oversized requests) go out over raw sockets; everything else through aiohttp.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from tests.integration.harness import (
    Proc,
    RawResponse,
    fetch,
    origin_count,
    parse_responses,
    raw_exchange,
)

pytestmark = pytest.mark.timeout(60)

POISON = {
    "X-Forwarded-Host": "evil.example",
    "X-Original-URL": "/admin",
    "X-Rewrite-URL": "/admin",
    "X-HTTP-Method-Override": "DELETE",
    "Forwarded": "host=evil.example;proto=https",
    "X-Forwarded-For": "127.0.0.99",
}


def echoed(body: bytes) -> dict[str, Any]:
    """The /echo/ payload: {"method", "path", "headers": [[name, value]], "body_length"}."""
    payload = json.loads(body)
    assert isinstance(payload, dict)
    return payload


def names(payload: dict[str, Any]) -> set[str]:
    return {n.lower() for n, _ in payload["headers"]}


def values(payload: dict[str, Any], name: str) -> list[str]:
    return [v for n, v in payload["headers"] if n.lower() == name.lower()]


async def raw(edge: Proc, request: str) -> list[RawResponse]:
    """Sends `request` ({host} is replaced by the Host field) and parses every response."""
    wire = await raw_exchange(
        edge.host,
        edge.port,
        request.replace("{host}", f"Host: {edge.host}:{edge.port}\r\n").encode("latin-1"),
    )
    return parse_responses(wire)


async def raw_get(edge: Proc, target: str, fields: str = "") -> RawResponse:
    """One GET of `target` exactly as written, with extra raw header lines; closes after."""
    [response] = await raw(
        edge, f"GET {target} HTTP/1.1\r\n{{host}}{fields}Connection: close\r\n\r\n"
    )
    return response


async def assert_still_serving(edge: Proc, client: aiohttp.ClientSession, name: str) -> None:
    reply = await fetch(client, f"{edge.url}/echo/{name}-after")
    assert reply.status == 200 and echoed(reply.body)["path"] == f"/echo/{name}-after"


class TestPoisoning:
    async def test_routing_headers_never_reach_origin_when_client_sends_them(
        self, edge: Proc, origin: Proc, client: aiohttp.ClientSession, unique_name: str
    ) -> None:
        target = f"/echo/{unique_name}"
        poisoned = await fetch(client, edge.url + target, headers=POISON)
        seen = echoed(poisoned.body)
        assert seen["method"] == "GET" and seen["path"] == target
        leaked = names(seen) & {n.lower() for n in POISON if n != "X-Forwarded-For"}
        assert not leaked, seen
        assert values(seen, "X-Forwarded-For") == ["127.0.0.1"]  # the edge's own, not the client's
        clean = await fetch(client, edge.url + target)
        assert "hit" in clean.cache_status, clean.cache_status
        assert clean.body == poisoned.body
        assert origin_count(origin, target) == 1


class TestTargetIsForwardedExactly:
    async def test_encoded_question_mark_is_its_own_key_when_sent_beside_real_query(
        self, edge: Proc, origin: Proc, unique_name: str
    ) -> None:
        encoded, query = f"/echo/{unique_name}%3Fx", f"/echo/{unique_name}?x"
        for target in (encoded, query, encoded, query):
            reply = await raw_get(edge, target)
            assert reply.status == 200 and echoed(reply.body)["path"] == target
        assert origin_count(origin, encoded) == 1 and origin_count(origin, query) == 1

    @pytest.mark.parametrize("segment", ["%2e%2e", "..", "%2E%2e"])
    async def test_dot_segments_are_not_resolved_when_forwarding(
        self, edge: Proc, origin: Proc, unique_name: str, segment: str
    ) -> None:
        target = f"/echo/{unique_name}/{segment}/x"
        reply = await raw_get(edge, target)
        assert reply.status == 200 and echoed(reply.body)["path"] == target
        assert origin_count(origin, target) == 1


class TestHopByHop:
    async def test_hop_by_hop_and_connection_named_fields_are_dropped_when_forwarding(
        self, edge: Proc, unique_name: str
    ) -> None:
        reply = await raw_get(
            edge,
            f"/echo/{unique_name}",
            (
                "Connection: keep-alive, X-Secret-Hop\r\n"
                "X-Secret-Hop: 1\r\n"
                "Keep-Alive: timeout=5\r\n"
                "TE: trailers\r\n"
                "Proxy-Authorization: Basic eDp5\r\n"
                "Proxy-Connection: keep-alive\r\n"
                "X-App-Token: kept\r\n"
            ),
        )
        seen = echoed(reply.body)
        dropped = {"x-secret-hop", "keep-alive", "te", "proxy-authorization", "proxy-connection"}
        assert not names(seen) & dropped, seen
        assert values(seen, "X-App-Token") == ["kept"]  # end-to-end fields still go through

    async def test_edge_set_forwarding_fields_survive_when_client_names_them_in_connection(
        self, edge: Proc, unique_name: str
    ) -> None:
        reply = await raw_get(edge, f"/echo/{unique_name}", "Connection: X-Forwarded-For, Via\r\n")
        seen = echoed(reply.body)
        assert values(seen, "X-Forwarded-For") == ["127.0.0.1"]
        assert values(seen, "Via") == ["1.1 edgecache"]


class TestRequestBody:
    async def test_get_body_is_not_forwarded_when_client_sends_one(
        self, edge: Proc, origin: Proc, unique_name: str
    ) -> None:
        with_body, next_one = f"/echo/{unique_name}", f"/echo/{unique_name}-next"
        # the body is read off the connection (framing holds for the next request) but not forwarded
        first, second = await raw(
            edge,
            (
                f"GET {with_body} HTTP/1.1\r\n{{host}}Content-Length: 11\r\n\r\nhello world"
                f"GET {next_one} HTTP/1.1\r\n{{host}}Connection: close\r\n\r\n"
            ),
        )
        seen = echoed(first.body)
        assert seen["path"] == with_body and seen["body_length"] == 0
        assert values(seen, "Content-Length") in ([], ["0"]), seen
        assert echoed(second.body)["path"] == next_one
        assert origin_count(origin, with_body) == 1 and origin_count(origin, next_one) == 1


class TestLimits:
    async def test_long_target_gets_414_when_over_limit(
        self, edge: Proc, origin: Proc, client: aiohttp.ClientSession, unique_name: str
    ) -> None:
        target = f"/echo/{unique_name}/" + "a" * 10 * 1024
        [reply] = await raw(edge, f"GET {target} HTTP/1.1\r\n{{host}}\r\n")
        assert reply.status == 414
        assert origin_count(origin, target) == 0
        await assert_still_serving(edge, client, unique_name)

    async def test_many_header_fields_get_431_when_over_limit(
        self, edge: Proc, origin: Proc, client: aiohttp.ClientSession, unique_name: str
    ) -> None:
        fields = "".join(f"X-Field-{i}: v\r\n" for i in range(200))
        [reply] = await raw(edge, f"GET /echo/{unique_name} HTTP/1.1\r\n{{host}}{fields}\r\n")
        assert reply.status == 431
        assert origin_count(origin, f"/echo/{unique_name}") == 0
        await assert_still_serving(edge, client, unique_name)

    async def test_huge_header_field_gets_431_when_over_limit(
        self, edge: Proc, origin: Proc, client: aiohttp.ClientSession, unique_name: str
    ) -> None:
        [reply] = await raw(
            edge, f"GET /echo/{unique_name} HTTP/1.1\r\n{{host}}X-Huge: {'v' * 40_000}\r\n\r\n"
        )
        assert reply.status == 431
        assert origin_count(origin, f"/echo/{unique_name}") == 0
        await assert_still_serving(edge, client, unique_name)

    async def test_malformed_request_line_gets_400_and_close_when_unparseable(
        self, edge: Proc, client: aiohttp.ClientSession, unique_name: str
    ) -> None:
        # raw() reads to EOF: it returning at all means the edge closed the connection
        [reply] = await raw(edge, "GARBAGE\r\n\r\nGET / HTTP/1.1\r\n{host}\r\n")
        assert reply.status == 400 and reply.header("Connection") == "close"
        await assert_still_serving(edge, client, unique_name)

    async def test_smuggling_attempt_gets_400_and_close_when_content_length_and_chunked(
        self, edge: Proc, origin: Proc, client: aiohttp.ClientSession, unique_name: str
    ) -> None:
        smuggled = f"/echo/{unique_name}-smuggled"
        responses = await raw(
            edge,
            (
                f"POST /echo/{unique_name} HTTP/1.1\r\n{{host}}Content-Length: 4\r\n"
                "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                f"GET {smuggled} HTTP/1.1\r\n{{host}}\r\n"
            ),
        )
        assert [r.status for r in responses] == [400]
        assert responses[0].header("Connection") == "close"
        assert (
            origin_count(origin, f"/echo/{unique_name}") == 0
            and origin_count(origin, smuggled) == 0
        )
        await assert_still_serving(edge, client, unique_name)


class TestPrivateResponses:
    @pytest.mark.parametrize(
        "path", ["/private/{name}", "/whoami?u={name}"], ids=["private", "set-cookie"]
    )
    async def test_each_user_gets_own_body_when_two_ask_a_cold_url_at_once(
        self, edge: Proc, origin: Proc, client: aiohttp.ClientSession, unique_name: str, path: str
    ) -> None:
        target = path.format(name=unique_name)
        cookies = ["user=alice", "user=bob"]
        replies = await asyncio.gather(
            *(fetch(client, edge.url + target, headers={"Cookie": c}) for c in cookies)
        )
        for cookie, reply in zip(cookies, replies):
            assert reply.status == 200
            assert f"cookie={cookie}\n" in reply.body.decode(), (cookie, reply.body)
            assert "hit" not in reply.cache_status and "stored" not in reply.cache_status, (
                reply.cache_status
            )
        assert origin_count(origin, target) == 2
        # and later, each user still gets only their own
        again = await fetch(client, edge.url + target, headers={"Cookie": "user=carol"})
        assert b"cookie=user=carol\n" in again.body
        assert origin_count(origin, target) == 3
