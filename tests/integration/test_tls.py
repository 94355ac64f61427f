"""HTTPS on the public listener with certificates picked by SNI (issue 16).

The test makes its own CA and two host certificates with the openssl command line, starts a
node process whose `[nodes.NAME] tls` listener serves a.test and *.b.test with different
certificates, and talks to it with aiohttp verifying against that CA only: each name gets
its own certificate, keep-alive requests turn into hits, a disk-tier object (which plain
HTTP sends with sendfile) arrives intact over TLS, and an unknown name gets the default
certificate, which a verifying client refuses.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from origin.demo import synthetic
from tests.integration.conftest import next_loopback
from tests.integration.harness import Proc, free_port, start_edge

pytestmark = pytest.mark.timeout(60)


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_pki(where: Path) -> None:
    """ca.pem, and a.pem/a.key (a.test) and b.pem/b.key (*.b.test) signed by it."""
    key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj",
            "/CN=edgecache test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=where)
    for name, san in (("a", "DNS:a.test"), ("b", "DNS:*.b.test")):
        openssl("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}-cert",
                cwd=where)
        (where / f"{name}.ext").write_text(
            f"subjectAltName={san}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=where)


@pytest.fixture
def tls_node(tmp_path: Path, origin: Proc) -> Iterator[tuple[str, int]]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command line is needed to make the test CA")
    pki = tmp_path / "pki"
    pki.mkdir()
    make_pki(pki)
    host = next_loopback()
    port, tls_port = free_port(host), free_port(host)
    config = tmp_path / "tls.toml"
    config.write_text("\n".join([
        "access_log = false",
        "[nodes.t1]", f'listen = "{host}:{port}"', f'tls = "{host}:{tls_port}"', f'disk_dir = "{tmp_path / "disk"}"',
        "[tls]",
        "[[tls.certificates]]", 'hosts = ["a.test"]', f'cert_file = "{pki / "a.pem"}"', f'key_file = "{pki / "a.key"}"',
        "[[tls.certificates]]", 'hosts = ["*.b.test"]', f'cert_file = "{pki / "b.pem"}"',
        f'key_file = "{pki / "b.key"}"',
        "[origins.demo]", f'servers = ["{origin.url}"]',
        "[[routes]]", 'host = "*"', 'origin = "demo"', "",
    ]))
    proc = start_edge(config, "t1", tmp_path / "logs")
    try:
        yield host, tls_port
    finally:
        proc.stop()


async def certificate_name(host: str, port: int, name: str, ctx: ssl.SSLContext) -> str:
    """The common name of the certificate the node shows a client asking for `name` (SNI)."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=ctx, server_hostname=name), 10)
    try:
        cert = writer.get_extra_info("peercert")
        return str(dict(x[0] for x in cert["subject"])["commonName"])
    finally:
        writer.close()
        await writer.wait_closed()


async def test_two_hosts_get_their_own_certificate_and_hits_over_tls_when_the_client_verifies(
    tls_node: tuple[str, int], tmp_path: Path
) -> None:
    host, port = tls_node
    ctx = ssl.create_default_context(cafile=str(tmp_path / "pki" / "ca.pem"))
    opened: list[str] = []
    trace = aiohttp.TraceConfig()

    async def connected(session: object, context: object, params: object) -> None:
        opened.append(current)

    trace.on_connection_create_end.append(connected)
    current = ""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1), trace_configs=[trace],
                                     timeout=aiohttp.ClientTimeout(total=20)) as session:
        for name, cert_cn in (("a.test", "a-cert"), ("www.b.test", "b-cert")):
            statuses = []
            current = name
            for size in (2048, 2048, 1 << 20):  # a miss, a hit from memory, a disk-tier object
                path = f"/obj/tls-{name}-{size}?size={size}&cc=max-age=60"
                # the disk-tier object is asked again until it is a stored hit: its fill leaves the
                # coalescer once the disk commit is done, a moment after the last byte went out, and a
                # request in between joins the finished fill ("collapsed") instead
                for attempt in range(100 if size > 4096 else 1):
                    async with session.get(f"https://{host}:{port}{path}", ssl=ctx, server_hostname=name,
                                           headers={"Host": name}) as r:
                        body = await r.read()
                    assert r.status == 200 and body == synthetic.body(f"tls-{name}-{size}", size), name
                    status = r.headers["Cache-Status"]
                    if attempt == 0 or "hit" in status:
                        statuses.append(status)
                    else:
                        assert "collapsed" in status, status
                    if attempt > 0 and "hit" in status:
                        break
            assert "fwd=miss" in statuses[0] and "hit" in statuses[1], statuses
            assert "fwd=miss" in statuses[2] and "hit" in statuses[3], statuses  # the 1 MiB one, from disk
            assert await certificate_name(host, port, name, ctx) == cert_cn
    # keep-alive: the four requests for each name went over one TLS connection
    assert opened == ["a.test", "www.b.test"], opened


async def test_unknown_name_gets_the_default_certificate_which_a_verifying_client_refuses(
    tls_node: tuple[str, int], tmp_path: Path
) -> None:
    host, port = tls_node
    ctx = ssl.create_default_context(cafile=str(tmp_path / "pki" / "ca.pem"))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await session.get(f"https://{host}:{port}/obj/x?size=10", ssl=ctx, server_hostname="c.test",
                              headers={"Host": "c.test"})
        # a client that accepts any certificate still sees a.test's: the first is the default
        loose = ssl.create_default_context()
        loose.check_hostname = False
        loose.verify_mode = ssl.CERT_NONE
        async with session.get(f"https://{host}:{port}/obj/y?size=10", ssl=loose, server_hostname="c.test",
                               headers={"Host": "c.test"}) as r:
            assert r.status == 200
