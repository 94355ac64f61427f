"""edge.config.tls and edge.server.tls: `[tls]` certificates, their mistakes, and the SNI choice (issue 16)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config.deployment import ConfigError, parse
from edge.config.tls import parse_tls
from edge.server.tls import ServerTls, TlsError, match_certificate

pytestmark = pytest.mark.timeout(10)


def base(tls_listen: bool) -> dict[str, object]:
    node: dict[str, object] = {"listen": "127.0.0.2:8080"}
    if tls_listen:
        node["tls"] = "127.0.0.2:8443"
    return {
        "nodes": {"edge1": node},
        "origins": {"web": {"servers": ["http://127.0.0.1:8000"]}},
        "routes": [{"host": "*", "origin": "web"}],
    }


@pytest.fixture
def pem(tmp_path: Path) -> Path:
    path = tmp_path / "x.pem"
    path.write_text("not really a certificate\n")
    return path


class TestTlsSection:
    def test_node_without_tls_needs_no_certificates(self) -> None:
        cfg = parse(base(False), "edge1")
        assert cfg.node.tls_host is None and cfg.tls.certificates == ()

    def test_tls_listener_without_certificate_names_the_node_key(self) -> None:
        with pytest.raises(ConfigError, match=r"^nodes\.edge1\.tls: an HTTPS listener needs a certificate"):
            parse(base(True), "edge1")

    def test_certificates_are_read_with_lower_case_hosts(self, pem: Path) -> None:
        data = {**base(True), "tls": {"certificates": [
            {"hosts": ["A.Test", "*.B.test"], "cert_file": str(pem), "key_file": str(pem)}]}}
        cfg = parse(data, "edge1")
        assert (cfg.node.tls_host, cfg.node.tls_port) == ("127.0.0.2", 8443)
        assert cfg.tls.certificates[0].hosts == ("a.test", "*.b.test") and cfg.tls.min_version == "1.2"

    @pytest.mark.parametrize(("table", "message"), [
        ({"certificates": [{"hosts": ["a.test"], "cert_file": "/nonexistent.pem", "key_file": "/nonexistent.pem"}]},
         r"^tls\.certificates\[0\]\.cert_file: /nonexistent\.pem is not a readable file"),
        ({"certificates": [{"hosts": [], "cert_file": "x", "key_file": "x"}]},
         r"^tls\.certificates\[0\]\.hosts: expected a non-empty list"),
        ({"certificates": [{"hosts": ["a/b"], "cert_file": "x", "key_file": "x"}]},
         r"^tls\.certificates\[0\]\.hosts\[0\]: 'a/b' is not a host name"),
        ({"min_version": "1.1"}, r'^tls\.min_version: expected "1\.2" or "1\.3"'),
        ({"certificate": []}, r"^tls\.certificate: unknown key"),
    ])
    def test_mistake_names_its_key(self, table: dict[str, object], message: str) -> None:
        with pytest.raises(ConfigError, match=message):
            parse_tls(table)


class TestSni:
    @pytest.mark.parametrize(("name", "index"), [
        ("a.test", 0), ("A.TEST.", 0), ("www.b.test", 1), ("b.test", None), ("x.www.b.test", None), ("c.test", None),
    ])
    def test_exact_names_then_one_label_wildcards_pick_the_certificate(self, name: str, index: int | None) -> None:
        assert match_certificate(name, {"a.test": 0}, {"b.test": 1}) == index

    def test_unusable_certificate_file_is_a_tls_error_naming_the_entry(self, pem: Path) -> None:
        config = parse_tls({"certificates": [{"hosts": ["a.test"], "cert_file": str(pem), "key_file": str(pem)}]})
        with pytest.raises(TlsError, match=r"^tls\.certificates\[0\]: cannot use .*x\.pem"):
            ServerTls(config)
