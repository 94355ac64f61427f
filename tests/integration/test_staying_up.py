"""Integration: a real node process in front of clients that stall, hoard or disappear.

- stdout is a pipe nobody reads, or closed: requests keep succeeding; lost log lines are
  counted (and reported in the log once its reader catches up);
- 2,000 idle connections at a cap of 100: a new client still gets its hit promptly;
- paused readers of large disk hits (more than the disk executor has threads): a fresh
  client's disk hit is not held up, and a paused reader still gets every byte once it reads;
- a request head dripped a line at a time is cut with 408 at `[server] head_timeout_s`.
Each node runs as its own process on its own 127.0.0.x; its stderr goes to a log file that
the tests check for tracebacks.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from origin.demo import synthetic
from tests.integration.conftest import next_loopback
from tests.integration.harness import ROOT, Proc, _wait_ready, free_port

pytestmark = pytest.mark.timeout(120)

TOKEN = "staying-up-token-0123456789"
KiB, MiB = 1024, 1024 * 1024


def target(name: str, size: int) -> str:
    return f"/obj/{name}?size={size}&cc=max-age=3600"


def write_node_config(tmp: Path, origin_url: str, *, server: dict[str, Any], disk: bool = False) -> Path:
    host = next_loopback()
    lines = [
        "access_log = true",
        "[nodes.edge1]",
        f'listen = "{host}:{free_port(host)}"',
        f'admin = "{host}:{free_port(host)}"',
        "[cache]",
        "memory_max_object_bytes = 65536",  # larger objects live on disk only
    ]
    if disk:
        lines.append(f'disk_dir = "{tmp / "cache"}"')
    lines.append("[server]")
    lines += [f"{k} = {json.dumps(v)}" for k, v in server.items()]
    lines += [
        "[origins.demo]",
        f'servers = ["{origin_url}"]',
        "[[routes]]",
        'host = "*"',
        'path_prefix = "/"',
        'origin = "demo"',
        "[[admin.tokens]]",
        'name = "ops"',
        f'token = "{TOKEN}"',
        'hosts = ["*"]',
    ]
    path = tmp / "edge.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def start_node(config: Path, log_dir: Path, *, stdout: int | None, close_stdout: bool = False) -> Proc:
    """Starts the node with stdout on `stdout` (a descriptor), or closed; stderr to a log file."""
    import tomllib

    data = tomllib.loads(config.read_text())
    host, _, port = data["nodes"]["edge1"]["listen"].rpartition(":")
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "edge1.log"
    args = [sys.executable, "-m", "edge", "--config", str(config), "--node", "edge1"]
    if close_stdout:
        args = ["/bin/sh", "-c", 'exec "$@" >&-', "sh", *args]  # fd 1 closed before Python starts
    with open(log_path, "ab") as err:
        popen = subprocess.Popen(
            args, stdout=stdout, stderr=err, cwd=ROOT, env=dict(os.environ, PYTHONUNBUFFERED="1")
        )
    proc = Proc("edge1", popen, host, int(port), log_path)
    proc.extra["admin"] = data["nodes"]["edge1"]["admin"]
    try:
        _wait_ready(proc, data.get("server", {}).get("ready_path", "/_edge/ready"))
    except BaseException:
        proc.kill9()
        raise
    return proc


def status(proc: Proc) -> dict[str, Any]:
    req = urllib.request.Request(
        f"http://{proc.extra['admin']}/status", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return dict(json.load(r))


def assert_no_traceback(proc: Proc) -> None:
    text = proc.log_path.read_text(errors="replace")
    assert "Traceback" not in text, text[-4000:]


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    try:
        yield started
    finally:
        for proc in started:
            proc.stop()


async def get_many(url: str, paths: list[str], connections: int = 4) -> list[int]:
    """GETs every path over a few keep-alive connections; returns the statuses."""
    statuses: list[int] = []
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as s:

        async def one(path: str) -> None:
            async with s.get(url + path) as r:
                await r.read()
                statuses.append(r.status)

        for i in range(0, len(paths), 50):
            await asyncio.gather(*(one(p) for p in paths[i : i + 50]))
    return statuses


class TestAccessLogNeverBlocks:
    async def test_requests_keep_succeeding_while_nobody_reads_stdout(
        self, origin: Proc, tmp_path: Path, procs: list[Proc]
    ) -> None:
        read_end, write_end = os.pipe()
        try:
            config = write_node_config(tmp_path, origin.url, server={"access_log_buffer_lines": 200})
            proc = start_node(config, tmp_path / "logs", stdout=write_end)
            procs.append(proc)
            os.close(write_end)
            write_end = -1
            # ~250-byte lines: 3,000 of them are ten times what a 64 KiB pipe holds
            paths = [f"/obj/log-{i % 20}?size=100&cc=max-age=3600&pad={'p' * 60}" for i in range(3000)]
            statuses = await asyncio.wait_for(get_many(proc.url, paths), 60)
            assert statuses == [200] * len(paths)
            log_stats = status(proc)["access_log"]
            assert log_stats["dropped"] > 0, log_stats
            # the reader catches up: the dropped count is reported in the log itself
            os.set_blocking(read_end, False)
            seen = bytearray()
            deadline = time.monotonic() + 20
            while b"access_log_dropped" not in seen and time.monotonic() < deadline:
                try:
                    chunk = os.read(read_end, 1 << 20)
                except BlockingIOError:
                    await asyncio.sleep(0.05)
                    continue
                if not chunk:
                    break
                seen += chunk
            note = next(
                json.loads(line) for line in bytes(seen).splitlines() if b"access_log_dropped" in line
            )
            assert note["lines"] > 0
            assert_no_traceback(proc)
        finally:
            os.close(read_end)
            if write_end >= 0:
                os.close(write_end)

    async def test_requests_keep_succeeding_with_stdout_closed(
        self, origin: Proc, tmp_path: Path, procs: list[Proc]
    ) -> None:
        config = write_node_config(tmp_path, origin.url, server={})
        proc = start_node(config, tmp_path / "logs", stdout=None, close_stdout=True)
        procs.append(proc)
        paths = [target(f"closed-{i % 5}", 1000) for i in range(100)]  # misses, then memory hits
        statuses = await asyncio.wait_for(get_many(proc.url, paths), 60)
        assert statuses == [200] * len(paths)
        log_stats = status(proc)["access_log"]
        assert log_stats["written"] == 0 and log_stats["dropped"] >= len(paths) - log_stats["queued"]
        assert_no_traceback(proc)


class TestConnectionCap:
    async def test_2000_idle_connections_at_cap_100_leave_hits_prompt(
        self, origin: Proc, tmp_path: Path, procs: list[Proc]
    ) -> None:
        config = write_node_config(tmp_path, origin.url, server={"max_connections": 100})
        proc = start_node(config, tmp_path / "logs", stdout=subprocess.DEVNULL)
        procs.append(proc)
        await get_many(proc.url, [target("cap", 1000)] * 2, connections=1)  # stored
        idle: list[asyncio.StreamWriter] = []
        try:
            for _ in range(2000):
                _, w = await asyncio.open_connection(proc.host, proc.port)
                idle.append(w)
            started = time.monotonic()
            statuses = await asyncio.wait_for(get_many(proc.url, [target("cap", 1000)], connections=1), 10)
            assert statuses == [200]
            assert time.monotonic() - started < 5
            listener = status(proc)["listener"]
            assert listener["open"] <= 100
            assert listener["evicted_idle"] + sum(listener["refused"].values()) >= 1900
        finally:
            for w in idle:
                w.transport.abort()
        assert proc.popen.poll() is None
        assert_no_traceback(proc)

    async def test_head_dripped_a_line_a_second_is_cut_with_408(
        self, origin: Proc, tmp_path: Path, procs: list[Proc]
    ) -> None:
        config = write_node_config(tmp_path, origin.url, server={"head_timeout_s": 1.5})
        proc = start_node(config, tmp_path / "logs", stdout=subprocess.DEVNULL)
        procs.append(proc)
        reader, writer = await asyncio.open_connection(proc.host, proc.port)
        try:
            started = time.monotonic()
            writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n")
            answer = asyncio.ensure_future(reader.read(4096))
            for i in range(30):  # a line a second: 30 s unless the node cuts it
                done, _ = await asyncio.wait([answer], timeout=1.0)
                if done:
                    break
                writer.write(b"X-Slow-%d: 1\r\n" % i)
            data = await asyncio.wait_for(answer, 10)
        finally:
            writer.transport.abort()
        assert data.startswith(b"HTTP/1.1 408 "), data
        assert time.monotonic() - started < 6
        assert status(proc)["listener"]["timeouts"]["head"] == 1


class TestPausedDiskReaders:
    async def test_paused_readers_of_disk_hits_do_not_delay_a_fresh_client(
        self, origin: Proc, tmp_path: Path, procs: list[Proc]
    ) -> None:
        config = write_node_config(tmp_path, origin.url, server={}, disk=True)
        proc = start_node(config, tmp_path / "logs", stdout=subprocess.DEVNULL)
        procs.append(proc)
        big, small = ("paused-big", 32 * MiB), ("paused-small", 1 * MiB)
        for name, size in (big, small):
            await stored_on_disk(proc, target(name, size))
        # more paused readers than the node's default executor has threads (min(32, cpus + 4))
        readers = max(16, min(32, (os.cpu_count() or 1) + 4) + 4)
        paused = [paused_reader(proc, target(*big)) for _ in range(readers)]
        try:
            started = time.monotonic()
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
                for _ in range(3):
                    async with s.get(proc.url + target(*small)) as r:
                        body = await r.read()
                        assert r.headers["Cache-Status"].startswith("edgecache; hit"), r.headers
                    assert body == synthetic.body(*small)
            assert time.monotonic() - started < 5
            # a paused reader that resumes still gets every byte, in order
            rest = await asyncio.get_running_loop().run_in_executor(None, read_rest, paused[0], big[1])
            assert rest == synthetic.body(*big)
        finally:
            for sock, _ in paused:
                sock.close()
        assert_no_traceback(proc)


async def stored_on_disk(proc: Proc, path: str) -> None:
    """GETs `path` until the node answers it as a stored hit."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
        for _ in range(100):
            async with s.get(proc.url + path) as r:
                await r.read()
                if r.headers.get("Cache-Status", "").startswith("edgecache; hit"):
                    return
    raise AssertionError(f"{path} never became a hit")


def paused_reader(proc: Proc, path: str) -> tuple[socket.socket, bytes]:
    """Sends a GET and reads only up to the end of the response head; returns the body read so far."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect((proc.host, proc.port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {proc.host}:{proc.port}\r\n\r\n".encode())
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = sock.recv(1024)
        assert chunk, "node closed before the head"
        got += chunk
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"edgecache; hit" in head, head
    return sock, body


def read_rest(reader: tuple[socket.socket, bytes], size: int) -> bytes:
    sock, body = reader
    out = bytearray(body)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    while len(out) < size:
        chunk = sock.recv(1 << 20)
        assert chunk, f"closed after {len(out)} of {size} bytes"
        out += chunk
    return bytes(out)

