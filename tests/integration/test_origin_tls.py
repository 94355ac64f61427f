"""https origins are verified by default; a pool can trust its own CA or opt out loudly (issue 16).

Two TLS origins run in the test process on their own 127.0.0.x, one with a certificate from
a CA the node's system store trusts (the node is started with SSL_CERT_FILE naming that CA,
which OpenSSL reads as the system store) and one from a CA it does not know. A node process
routes a host name to each pool variant: the default pool against the trusted origin gets
200; the default pool against the unknown CA gets 502 with a one-line reason; the same
origin with the pool's `tls_ca_file` gets 200; with that CA but a certificate name that does
not match (`tls_server_name`) 502; and with `tls_verify = false` 200, with a warning at start.
"""

from __future__ import annotations

import shutil
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.integration.conftest import next_loopback
from tests.integration.harness import free_port, start_edge
from tests.integration.test_tls import make_pki
from tests.integration.test_tls_reload import issue

pytestmark = pytest.mark.timeout(90)


async def tls_origin(pki: Path, name: str) -> AsyncIterator[str]:
    """An https origin on its own 127.0.0.x with a certificate for its address from pki/ca.pem."""
    host = next_loopback()
    issue(pki, "origin", f"origin-{name}", f"IP:{host}")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki / "origin.pem", pki / "origin.key")

    async def answer(request: web.Request) -> web.Response:
        return web.Response(text=f"{name}:{request.path}", headers={"Cache-Control": "max-age=60"})

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port(host)
    await web.TCPSite(runner, host, port, ssl_context=ctx).start()
    try:
        yield f"https://{host}:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
def pkis(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command line is needed to make the test CAs")
    trusted, unknown = tmp_path / "trusted", tmp_path / "unknown"
    for where in (trusted, unknown):
        where.mkdir()
        make_pki(where)
    return trusted, unknown


@pytest.fixture
async def trusted_origin(pkis: tuple[Path, Path]) -> AsyncIterator[str]:
    async for url in tls_origin(pkis[0], "trusted"):
        yield url


@pytest.fixture
async def unknown_origin(pkis: tuple[Path, Path]) -> AsyncIterator[str]:
    async for url in tls_origin(pkis[1], "unknown"):
        yield url


async def test_https_origins_are_verified_by_default_and_a_pool_can_trust_its_own_ca(
    tmp_path: Path, pkis: tuple[Path, Path], trusted_origin: str, unknown_origin: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    unknown_ca = pkis[1] / "ca.pem"
    pools = {
        "system": [f'servers = ["{trusted_origin}"]'],
        "unknown": [f'servers = ["{unknown_origin}"]', "retries = 0"],
        "withca": [f'servers = ["{unknown_origin}"]', f'tls_ca_file = "{unknown_ca}"'],
        "wrongname": [f'servers = ["{unknown_origin}"]', f'tls_ca_file = "{unknown_ca}"',
                      'tls_server_name = "someone-else.test"', "retries = 0"],
        "insecure": [f'servers = ["{unknown_origin}"]', "tls_verify = false"],
    }
    host = next_loopback()
    lines = ["access_log = false", "[nodes.n1]", f'listen = "{host}:{free_port(host)}"']
    for name, keys in pools.items():
        lines += [f"[origins.{name}]", *keys]
    for name in pools:
        lines += ["[[routes]]", f'host = "{name}.test"', f'origin = "{name}"']
    config = tmp_path / "edge.toml"
    config.write_text("\n".join(lines) + "\n")
    # OpenSSL's default verify paths honour SSL_CERT_FILE: the trusted CA is the node's system store
    monkeypatch.setenv("SSL_CERT_FILE", str(pkis[0] / "ca.pem"))
    proc = start_edge(config, "n1", tmp_path / "logs")
    try:
        answers: dict[str, tuple[int, str]] = {}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
            for name in pools:
                async with session.get(f"{proc.url}/obj/{name}", headers={"Host": f"{name}.test"}) as r:
                    answers[name] = (r.status, await r.text())
        assert answers["system"] == (200, "trusted:/obj/system")
        assert answers["withca"] == (200, "unknown:/obj/withca")
        assert answers["insecure"] == (200, "unknown:/obj/insecure")
        for name, why in (("unknown", "unable to get local issuer certificate"), ("wrongname", "someone-else.test")):
            status, text = answers[name]
            assert status == 502, (name, status, text)
            assert len(text.strip().splitlines()) == 1, text
            assert "TLS certificate not accepted" in text and why in text and "tls_ca_file" in text, text
        log = proc.log()
        warnings = [line for line in log.splitlines() if "tls_verify = false" in line]
        assert len(warnings) == 1 and "WARNING" in warnings[0] and "origins.insecure" in warnings[0], log
        assert "Traceback" not in log
    finally:
        proc.stop()
