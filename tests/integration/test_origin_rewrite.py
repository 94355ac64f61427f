"""Origins like object stores and other hosts (issue 17): a pool's Host, TLS server name, path
prefix and headers, seen from the origin's side, with the cache key still the client's URL.

Real node processes in front of the demo origin, whose /echo endpoint shows what it received,
and in front of a TLS origin in this test's loop (a certificate made with the openssl command
for a test CA the node trusts through SSL_CERT_FILE) that records the SNI of each handshake.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.integration.conftest import next_loopback
from tests.integration.harness import Proc, free_port, start_edge

pytestmark = pytest.mark.timeout(90)

VERIFY = "origin-verify-secret-3f9a1c77"


def _get(url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def _write(path: Path, pools: dict[str, dict[str, Any]], routes: list[tuple[str, str]], env: str = "") -> str:
    host = next_loopback()
    listen = f"{host}:{free_port(host)}"
    lines = ["access_log = true", "[nodes.a]", f'listen = "{listen}"']
    for name, keys in pools.items():
        lines.append(f"[origins.{name}]")
        lines += [f"{key} = {value}" for key, value in keys.items()]
    for prefix, pool in routes:
        lines += ["[[routes]]", f'path_prefix = "{prefix}"', f'origin = "{pool}"']
    path.write_text("\n".join(lines) + "\n" + env)
    return listen


@pytest.fixture
def node_procs() -> Iterator[list[Proc]]:
    procs: list[Proc] = []
    try:
        yield procs
    finally:
        for proc in procs:
            proc.stop()


def _headers(echo: dict[str, Any], name: str) -> list[str]:
    return [v for n, v in echo["headers"] if n.lower() == name.lower()]


def test_a_bucket_sees_its_own_host_path_and_token_while_the_key_stays_the_clients(
    tmp_path: Path, origin: Proc, node_procs: list[Proc]
) -> None:
    (tmp_path / "verify").write_text(VERIFY + "\n")
    pool = {
        "servers": json.dumps([origin.url]),
        "origin_host": '"my-bucket.store.test"',
        "strip_path_prefix": '"/assets"',
        "add_path_prefix": '"/echo/my-bucket"',
        "request_headers": (
            f'{{ X-Origin-Verify = {{ value_file = "{tmp_path / "verify"}" }}, X-Env = "prod" }}'
        ),
        "remove_response_headers": '["Content-Type"]',
        "response_headers": '{ X-Served-From = "bucket", Cache-Control = "public, max-age=300" }',
    }
    config = tmp_path / "config.toml"
    _write(config, {"bucket": pool}, [("/", "bucket")])
    node = start_edge(config, "a", tmp_path / "logs")
    node_procs.append(node)
    client = {"Host": "www.example.test", "X-Origin-Verify": "forged-by-the-client"}

    status, headers, body = _get(f"{node.url}/assets/img/a.png?v=1", client)
    assert status == 200, body
    echo = json.loads(body)
    assert echo["path"] == "/echo/my-bucket/img/a.png?v=1"
    assert _headers(echo, "Host") == ["my-bucket.store.test"]
    assert _headers(echo, "X-Origin-Verify") == [VERIFY]  # the client's forgery never arrives
    assert _headers(echo, "X-Env") == ["prod"]
    # what is stored and served: the origin's Content-Type removed, its Cache-Control replaced
    assert "content-type" not in headers and headers["x-served-from"] == "bucket"
    assert headers["cache-control"] == "public, max-age=300", headers
    assert "miss" in headers["cache-status"]

    status, again, body_again = _get(f"{node.url}/assets/img/a.png?v=1", client)
    assert status == 200 and "hit" in again["cache-status"] and body_again == body
    assert again["x-served-from"] == "bucket" and "content-type" not in again

    # the key is the client's URL: the origin's own path is another object (a miss)
    status, other, _ = _get(f"{node.url}/echo/my-bucket/img/a.png?v=1", client)
    assert status == 200 and "miss" in other["cache-status"], other
    assert VERIFY not in node.log_path.read_text(errors="replace")


def _make_certificates(tmp: Path) -> tuple[Path, Path, Path]:
    """A test CA and a leaf certificate for origin.test signed by it (openssl command line)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=tmp, check=True, capture_output=True, timeout=60)

    run(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=edgecache test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    )
    run("req", *ec, "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=origin.test")
    (tmp / "leaf.ext").write_text(
        "subjectAltName=DNS:origin.test\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
    )
    run(
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
    )
    return tmp / "ca.pem", tmp / "leaf.pem", tmp / "leaf.key"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command makes the test certificates")
async def test_origin_behind_another_cdn_gets_its_host_as_sni_and_the_certificate_checks(
    tmp_path: Path, node_procs: list[Proc], monkeypatch: pytest.MonkeyPatch
) -> None:
    ca, leaf, key = await asyncio.to_thread(_make_certificates, tmp_path)
    names: list[str | None] = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(leaf, key)
    context.sni_callback = lambda _sock, name, _ctx: names.append(name)  # type: ignore[assignment,misc,func-returns-value]
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(f"{request.host} {request.raw_path}")
        return web.Response(text="from the real origin", headers={"Cache-Control": "max-age=60"})

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    try:
        server = json.dumps([f"https://127.0.0.1:{port}"])
        config = tmp_path / "config.toml"
        _write(
            config,
            {"named": {"servers": server, "origin_host": '"origin.test"'}, "bare": {"servers": server}},
            [("/named/", "named"), ("/", "bare")],
        )
        monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # the node trusts the test CA, nothing else
        node = await asyncio.to_thread(start_edge, config, "a", tmp_path / "logs")
        node_procs.append(node)
        status, _, body = await asyncio.to_thread(_get, f"{node.url}/named/x", {"Host": "www.example.test"})
        assert (status, body) == (200, b"from the real origin")
        assert names == ["origin.test"] and seen == ["origin.test /named/x"]
        # without the override the node sends no usable name: the certificate cannot match
        status, _, _ = await asyncio.to_thread(_get, f"{node.url}/bare/x", {"Host": "www.example.test"})
        assert status in (502, 503, 504) and seen == ["origin.test /named/x"]
    finally:
        await runner.cleanup()
