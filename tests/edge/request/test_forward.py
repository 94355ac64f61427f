"""edge.request.forward: what reaches the origin is the allowlist minus edge-owned and hop-by-hop fields."""

from __future__ import annotations

from multidict import CIMultiDict

from edge.request.forward import upstream_request
from edge.server.request import Request


def _request(headers: list[tuple[str, str]], *, method: str = "GET", target: str = "/a%3Fx?q=1",
             body: bytes | None = None) -> Request:
    return Request(method=method, target=target, version="1.1", headers=CIMultiDict(headers), body=body,
                   keep_alive=True, peer="127.0.0.9")


def _names(headers: tuple[tuple[str, str], ...]) -> list[str]:
    return [n.lower() for n, _ in headers]


class TestUpstreamRequest:
    def test_keeps_raw_target_when_forwarding(self) -> None:
        up = upstream_request(_request([("Host", "h")]), fill=True)
        assert up.target == "/a%3Fx?q=1" and up.host == "h"

    def test_strips_edge_owned_headers_when_client_sends_them(self) -> None:
        up = upstream_request(_request([("Host", "h"), ("X-Forwarded-Host", "evil"), ("X-Original-URL", "/admin"),
                                        ("X-HTTP-Method-Override", "DELETE"), ("Forwarded", "for=1.2.3.4"),
                                        ("X-Forwarded-For", "6.6.6.6"), ("X-App", "1")]), fill=True)
        names = _names(up.headers)
        assert "x-forwarded-host" not in names and "x-original-url" not in names
        assert "x-http-method-override" not in names and "forwarded" not in names
        assert ("X-Forwarded-For", "127.0.0.9") in up.headers and "6.6.6.6" not in str(up.headers)
        assert ("X-App", "1") in up.headers

    def test_drops_connection_named_headers_but_keeps_edge_fields_when_client_names_them(self) -> None:
        up = upstream_request(_request([("Host", "h"), ("Connection", "X-Secret, X-Forwarded-For, Via"),
                                        ("X-Secret", "s")]), fill=True)
        names = _names(up.headers)
        assert "x-secret" not in names and "connection" not in names
        assert "x-forwarded-for" in names and "via" in names

    def test_drops_validators_and_range_when_filling(self) -> None:
        req = _request([("Host", "h"), ("Range", "bytes=0-1"), ("If-None-Match", '"a"'),
                        ("If-Modified-Since", "Thu, 01 Jan 2026 00:00:00 GMT")])
        assert not {"range", "if-none-match", "if-modified-since"} & set(_names(upstream_request(req, fill=True).headers))
        assert "range" in _names(upstream_request(req, fill=False).headers)

    def test_forwards_only_allowlist_when_route_narrows_it(self) -> None:
        up = upstream_request(_request([("Host", "h"), ("Accept", "x"), ("Cookie", "c"), ("X-App", "1")]),
                              fill=True, allowlist=("accept",))
        assert _names(up.headers) == ["accept", "x-forwarded-for", "via"]

    def test_never_forwards_body_when_method_is_get(self) -> None:
        assert upstream_request(_request([("Host", "h")], body=b"x"), fill=True).body is None
        assert upstream_request(_request([("Host", "h")], method="POST", body=b"x"), fill=False).body == b"x"

    def test_appends_own_via_when_client_sent_one(self) -> None:
        up = upstream_request(_request([("Host", "h"), ("Via", "1.1 proxy")]), fill=True)
        assert ("Via", "1.1 proxy, 1.1 edgecache") in up.headers
