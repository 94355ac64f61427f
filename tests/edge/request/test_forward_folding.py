"""Denylists and allowlists compare folded names: `_` reads as `-` (issue 12)."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from edge.request.forward import EDGE_OWNED, upstream_request
from edge.server.request import Request
from origin.fieldnames import fold_name
from origin.hopbyhop import strip_hop_by_hop


def _request(headers: list[tuple[str, str]]) -> Request:
    return Request(method="GET", target="/p", version="1.1", headers=CIMultiDict(headers), body=None,
                   keep_alive=True, peer="127.0.0.9")


def _folded(headers: tuple[tuple[str, str], ...]) -> set[str]:
    return {fold_name(n) for n, _ in headers}


class TestFolding:
    def test_fold_name_reads_underscore_as_hyphen(self) -> None:
        assert fold_name("X_Forwarded_Host") == fold_name("x-forwarded-host") == "x-forwarded-host"

    @pytest.mark.parametrize("name", sorted(EDGE_OWNED))
    def test_edge_owned_header_is_stripped_when_spelled_with_underscores(self, name: str) -> None:
        alias = name.replace("-", "_").title()
        up = upstream_request(_request([("Host", "h"), (alias, "evil"), ("X-App", "1")]), fill=True)
        assert ("X-App", "1") in up.headers
        assert all(value != "evil" for _, value in up.headers), (alias, up.headers)

    @pytest.mark.parametrize("name", ["Transfer_Encoding", "Proxy_Authorization", "Keep_Alive", "If_None_Match"])
    def test_hop_by_hop_and_fill_fields_are_stripped_when_spelled_with_underscores(self, name: str) -> None:
        up = upstream_request(_request([("Host", "h"), (name, "x")]), fill=True)
        assert fold_name(name) not in _folded(up.headers)

    def test_allowlist_matches_when_client_spelling_differs(self) -> None:
        up = upstream_request(_request([("Host", "h"), ("X_Api_Key", "k"), ("X-Other", "o")]), fill=True,
                              allowlist=["x-api-key"])
        assert ("X_Api_Key", "k") in up.headers and "x-other" not in _folded(up.headers)

    def test_connection_named_field_is_dropped_when_named_with_other_spelling(self) -> None:
        up = upstream_request(_request([("Host", "h"), ("Connection", "X_Secret"), ("X-Secret", "s")]), fill=True)
        assert "x-secret" not in _folded(up.headers)

    def test_strip_hop_by_hop_folds_names_when_origin_client_strips(self) -> None:
        kept = strip_hop_by_hop([("Keep_Alive", "1"), ("Connection", "x_a"), ("X-A", "1"), ("X-B", "2")])
        assert kept == (("X-B", "2"),)
