"""edge.config.origin_tls and origin.tls: https origins are verified unless a pool opts out."""

from __future__ import annotations

import logging
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest

from edge.config.deployment import ConfigError, parse
from origin.tls import client_context


def _pool(servers: tuple[str, ...] = ("https://127.0.0.1:8443",), **keys: Any) -> dict[str, Any]:
    return {
        "nodes": {"a": {"listen": "127.0.0.2:8080"}},
        "origins": {"o": {"servers": list(servers), **keys}},
        "routes": [{"origin": "o"}],
    }


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(tmp_path / "ca.key"), "-out", str(path), "-days", "1", "-subj", "/CN=unit CA"],
        check=True, capture_output=True, timeout=30,
    )
    return path


def test_default_pool_verifies_chain_and_host_name() -> None:
    pool = parse(_pool(), "a").pools["o"]
    assert pool.tls.verify and pool.tls.ca_file is None
    ctx = client_context(pool)
    assert ctx is not None and ctx.verify_mode is ssl.CERT_REQUIRED and ctx.check_hostname


def test_ca_file_is_the_only_trust_when_given(ca_file: Path) -> None:
    pool = parse(_pool(tls_ca_file=str(ca_file)), "a").pools["o"]
    ctx = client_context(pool)
    assert ctx is not None and ctx.verify_mode is ssl.CERT_REQUIRED and ctx.check_hostname
    assert [c["subject"] for c in ctx.get_ca_certs()] == [((("commonName", "unit CA"),),)]


def test_opt_out_checks_nothing_and_warns_when_built(caplog: pytest.LogCaptureFixture) -> None:
    pool = parse(_pool(tls_verify=False), "a").pools["o"]
    with caplog.at_level(logging.WARNING, logger="origin.tls"):
        ctx = client_context(pool)
    assert ctx is not None and ctx.verify_mode is ssl.CERT_NONE and not ctx.check_hostname
    assert [r.getMessage()[:40] for r in caplog.records] == ["origins.o: tls_verify = false: the https"]


def test_plain_http_pool_has_no_context() -> None:
    assert client_context(parse(_pool(("http://127.0.0.1:8000",)), "a").pools["o"]) is None


@pytest.mark.parametrize(
    ("servers", "keys", "message"),
    [
        (None, {"tls_verify": "no"}, r"^origins\.o\.tls_verify: expected true or false"),
        (None, {"tls_ca_file": "/nonexistent/ca.pem"}, r"^origins\.o\.tls_ca_file: /nonexistent/ca.pem is not"),
        (("http://127.0.0.1:8000",), {"tls_verify": False}, r"^origins\.o\.tls_verify: the pool has no https"),
    ],
)
def test_bad_tls_keys_name_their_key(servers: tuple[str, ...] | None, keys: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(_pool(servers or ("https://127.0.0.1:8443",), **keys), "a")


def test_ca_file_without_a_certificate_and_a_contradiction_are_refused(tmp_path: Path, ca_file: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"^origins\.o\.tls_ca_file: .* holds no usable PEM CA certificate"):
        parse(_pool(tls_ca_file=str(junk)), "a")
    with pytest.raises(ConfigError, match=r"^origins\.o\.tls_verify: false turns off the check tls_ca_file"):
        parse(_pool(tls_ca_file=str(ca_file), tls_verify=False), "a")
