"""SIGHUP reloads the HTTPS listener's certificates, and /metrics counts reloads (issue 16).

The test makes its own CA with the openssl command line (tests/integration/test_tls.py), starts
a node process serving a.test over TLS from files under live/, then renews the certificate in
place (new files under the same names, as certbot does) and sends SIGHUP: a new handshake
gets the new certificate while a connection opened before keeps serving requests. A broken
pair (a key that does not match its certificate) keeps the running certificate and logs one
line naming the entry to fix. `edgecache_config_reloads_total{result}` and
`edgecache_config_last_reload_success_timestamp_seconds` follow every step.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import ssl
import time
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import next_loopback
from tests.integration.harness import Proc, free_port, start_edge
from tests.integration.test_lifecycle import exchange, wait_log
from tests.integration.test_tls import make_pki, openssl

pytestmark = pytest.mark.timeout(90)

RELOADS = "edgecache_config_reloads_total"
LAST_OK = "edgecache_config_last_reload_success_timestamp_seconds"


def issue(where: Path, name: str, cn: str, san: str) -> None:
    """`name`.pem/.key for `san`, with common name `cn`, signed by where/ca.pem."""
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
            f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=where)
    (where / f"{name}.ext").write_text(f"subjectAltName={san}\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=where)


async def scrape(admin: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the node's /metrics, by name and labels."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        async with session.get(f"http://{admin}/metrics") as r:
            assert r.status == 200
            text = await r.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def reloads(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], result: str) -> float:
    return samples[(RELOADS, (("result", result),))]


async def handshake(host: str, port: int, ctx: ssl.SSLContext) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
    """A TLS connection for a.test and the common name of the certificate the node showed."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=ctx, server_hostname="a.test"), 10)
    cert = writer.get_extra_info("peercert")
    return reader, writer, str(dict(x[0] for x in cert["subject"])["commonName"])


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), 5)
    except (OSError, TimeoutError, ssl.SSLError):
        pass  # the node may already have closed its side


async def test_sighup_serves_renewed_certificate_to_new_handshakes_and_keeps_open_connections(
    tmp_path: Path, origin: Proc
) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command line is needed to make the test CA")
    pki, live = tmp_path / "pki", tmp_path / "live"
    pki.mkdir()
    live.mkdir()
    make_pki(pki)
    issue(pki, "renewed", "a-cert-renewed", "DNS:a.test")
    shutil.copy(pki / "a.pem", live / "a.pem")
    shutil.copy(pki / "a.key", live / "a.key")
    host = next_loopback()
    port, tls_port, admin = free_port(host), free_port(host), f"{host}:{free_port(host)}"
    config = tmp_path / "tls.toml"
    config.write_text("\n".join([
        "access_log = false",
        "[nodes.t1]", f'listen = "{host}:{port}"', f'tls = "{host}:{tls_port}"', f'admin = "{admin}"',
        "[tls]",
        "[[tls.certificates]]", 'hosts = ["a.test"]', f'cert_file = "{live / "a.pem"}"',
        f'key_file = "{live / "a.key"}"',
        "[origins.demo]", f'servers = ["{origin.url}"]',
        "[[routes]]", 'host = "*"', 'origin = "demo"', "",
    ]))
    started = time.time()
    proc = start_edge(config, "t1", tmp_path / "logs")
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    target = "/obj/tls-reload?size=3000&cc=max-age=600"
    writers: list[asyncio.StreamWriter] = []
    try:
        before = await scrape(admin)
        assert reloads(before, "ok") == 0 and reloads(before, "failed") == 0
        assert started - 5 <= before[(LAST_OK, ())] <= time.time()  # the start counts as a success
        old_reader, old_writer, name = await handshake(host, tls_port, ctx)
        writers.append(old_writer)
        assert name == "a-cert"
        assert (await exchange(old_reader, old_writer, "a.test", target))[0] == 200

        # renewed in place, as certbot does: new files under the same names, then SIGHUP
        shutil.copy(pki / "renewed.pem", live / "a.pem")
        shutil.copy(pki / "renewed.key", live / "a.key")
        proc.popen.send_signal(signal.SIGHUP)
        await wait_log(proc, "SIGHUP: TLS certificates reloaded (1)")
        reader, writer, name = await handshake(host, tls_port, ctx)
        writers.append(writer)
        assert name == "a-cert-renewed"
        assert (await exchange(reader, writer, "a.test", target))[0] == 200
        # the connection opened before the reload keeps going, on the certificate it began with
        assert (await exchange(old_reader, old_writer, "a.test", target))[0] == 200
        peer = old_writer.get_extra_info("peercert")
        assert dict(x[0] for x in peer["subject"])["commonName"] == "a-cert"
        after_ok = await scrape(admin)
        assert reloads(after_ok, "ok") == 1 and reloads(after_ok, "failed") == 0
        assert after_ok[(LAST_OK, ())] > before[(LAST_OK, ())]

        # a key that does not belong to the certificate: the running certificate stays
        shutil.copy(pki / "b.key", live / "a.key")
        proc.popen.send_signal(signal.SIGHUP)
        await wait_log(proc, "SIGHUP: TLS certificates not reloaded, the running ones stay: tls.certificates[0]")
        lines = [line for line in proc.log().splitlines() if "TLS certificates not reloaded" in line]
        assert len(lines) == 1 and str(live / "a.key") in lines[0] and "unencrypted key" in lines[0], lines
        reader, writer, name = await handshake(host, tls_port, ctx)
        writers.append(writer)
        assert name == "a-cert-renewed"
        assert (await exchange(reader, writer, "a.test", target))[0] == 200
        after_failed = await scrape(admin)
        assert reloads(after_failed, "ok") == 1 and reloads(after_failed, "failed") == 1
        assert after_failed[(LAST_OK, ())] == after_ok[(LAST_OK, ())]

        # a file that is not TOML at all is a failed reload too, and nothing changes
        config.write_text("this is [not toml")
        proc.popen.send_signal(signal.SIGHUP)
        await wait_log(proc, "SIGHUP: config not reloaded")
        assert reloads(await scrape(admin), "failed") == 2
        assert proc.popen.poll() is None and "Traceback" not in proc.log()
    finally:
        for w in writers:
            await close(w)
        proc.stop()
