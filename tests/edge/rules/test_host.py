"""Host validation and normal form (issue 12: a Host must never carry a path, query or escape)."""

from __future__ import annotations

import pytest

from edge.rules.host import is_normal_host, normalise_host

BAD = [
    "", "good.example/x", "good.example?x", "good.example#x", "good.example%2e%2e", "good%2Eexample",
    "good.example\\x", "a b", "good.example:99999", "good.example:0", "good.example:8o", "user@good.example",
    "good.example:80:80", "[::1", "[::1]x", "[v1.fe]", "[fe80::1%25eth0]", "[::1]:99999", "..", ".",
    "a..b", "good.example..", "gööd.example", "a" * 64 + ".example", ("a" * 60 + ".") * 5 + "a",
    "good.example\r\nx: y", "good.example\t", "*.example", "!$&'()*+,;=",
]

GOOD = {
    "good.example": "good.example",
    "Good.Example": "good.example",
    "good.example.": "good.example",
    "good.example:80": "good.example",
    "good.example:080": "good.example",
    "GOOD.example.:80": "good.example",
    "good.example:": "good.example",
    "good.example:8080": "good.example:8080",
    "good.example:08080": "good.example:8080",
    "127.0.0.1:65535": "127.0.0.1:65535",
    "_dmarc.example": "_dmarc.example",
    "localhost": "localhost",
    "[::1]": "[::1]",
    "[0:0:0:0:0:0:0:1]:80": "[::1]",
    "[::1]:8443": "[::1]:8443",
}


class TestNormaliseHost:
    @pytest.mark.parametrize("raw", BAD)
    def test_normalise_host_refuses_when_value_is_not_a_host_and_port(self, raw: str) -> None:
        assert normalise_host(raw) is None

    @pytest.mark.parametrize(("raw", "normal"), GOOD.items())
    def test_normalise_host_gives_normal_form_when_value_is_valid(self, raw: str, normal: str) -> None:
        assert normalise_host(raw) == normal
        assert normalise_host(normal) == normal  # idempotent

    def test_normal_host_never_carries_path_query_or_escape_when_valid(self) -> None:
        for raw in [*BAD, *GOOD]:
            normal = normalise_host(raw)
            if normal is not None:
                assert not set(normal) & set("/?#%\\@ \t\r\n"), raw


class TestIsNormalHost:
    @pytest.mark.parametrize("raw", [*BAD, *GOOD])
    def test_is_normal_host_agrees_with_normalise_host_when_either_accepts(self, raw: str) -> None:
        data = raw.encode("utf-8")
        if is_normal_host(data):
            # the hot path hashes raw.lower(): it must be exactly the slow path's key host
            assert normalise_host(raw) == raw.lower()

    @pytest.mark.parametrize("raw", ["good.example.", "good.example:80", "good.example:080", "[::1]", "a:"])
    def test_is_normal_host_declines_when_slow_path_would_rewrite(self, raw: str) -> None:
        assert not is_normal_host(raw.encode())

    @pytest.mark.parametrize("raw", ["good.example", "Good.Example:8080", "127.0.0.3:40123"])
    def test_is_normal_host_accepts_when_already_normal(self, raw: str) -> None:
        assert is_normal_host(raw.encode())
