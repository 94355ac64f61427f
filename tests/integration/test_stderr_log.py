"""A node whose stderr nobody reads keeps answering (issue 10).

The node process gets a pipe as stderr that the test does not read. Each request to a route
whose origin refuses connections makes the node log one warning line (the 502 and why),
so a few thousand of them fill the pipe (64 KiB) and the log's queue many times over. A
node that wrote its log on the event loop would stop there, in the middle of a write();
this one keeps answering: the flood completes and cached hits still come back promptly.
Once the test reads the pipe again, the node says in one line how many log lines it lost.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import aiohttp
import pytest

from tests.integration.conftest import next_loopback
from tests.integration.harness import ROOT, Proc, _wait_ready, free_port

pytestmark = pytest.mark.timeout(120)

FLOOD = 6000  # warning lines: far beyond the pipe and edge.app.stderr_log.MAX_QUEUED_LINES (4096)


class PipeReader:
    """Reads the node's stderr pipe once started, in a thread; `text` is what it read so far."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._data = bytearray()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        if self._thread.ident is None:  # not started yet
            self._thread.start()

    def _run(self) -> None:
        while chunk := os.read(self._fd, 65536):
            self._data.extend(chunk)

    @property
    def text(self) -> str:
        return bytes(self._data).decode(errors="replace")

    def join(self) -> None:
        self._thread.join(10)


async def test_node_keeps_answering_when_nobody_reads_its_stderr(tmp_path: Path, origin: Proc) -> None:
    host = next_loopback()
    port, refused = free_port(host), free_port(host)  # nothing listens on `refused`
    config = tmp_path / "edge.toml"
    config.write_text("\n".join([
        "access_log = false",
        "[nodes.edge1]", f'listen = "{host}:{port}"',
        "[origins.demo]", f'servers = ["{origin.url}"]',
        "[origins.down]", f'servers = ["http://{host}:{refused}"]', "retries = 0",
        "[[routes]]", 'host = "down.test"', 'origin = "down"',
        "[[routes]]", 'host = "*"', 'origin = "demo"', "",
    ]))
    popen = subprocess.Popen(
        [sys.executable, "-m", "edge", "--config", str(config), "--node", "edge1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT, env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    assert popen.stderr is not None
    reader = PipeReader(popen.stderr.fileno())
    proc = Proc("edge1", popen, host, port, tmp_path / "unused.log")
    try:
        _wait_ready(proc, "/_edge/ready")
        hit = "/obj/stderr-hit?size=2000&cc=max-age=600"
        timeout = aiohttp.ClientTimeout(total=20)  # a node stuck on its stderr fails here, by name
        async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=20)) as session:
            async with session.get(proc.url + hit) as r:
                assert r.status == 200

            async def down(i: int) -> int:
                async with session.get(f"{proc.url}/flood/{i}", headers={"Host": "down.test"}) as r:
                    await r.read()
                    return r.status

            for start in range(0, FLOOD, 200):
                statuses = await asyncio.gather(*(down(i) for i in range(start, start + 200)))
                assert set(statuses) == {502}, set(statuses)
            # the log is far behind (nobody reads it) and the node still serves hits promptly
            for _ in range(20):
                began = time.monotonic()
                async with session.get(proc.url + hit) as r:
                    assert r.status == 200 and "hit" in r.headers["Cache-Status"]
                    await r.read()
                assert time.monotonic() - began < 2.0
        # someone reads stderr again: the backlog goes out, then one line counting the lost ones
        reader.start()
        deadline = time.monotonic() + 30
        while "log lines were dropped while stderr was not being read" not in reader.text:
            assert time.monotonic() < deadline, reader.text[-2000:]
            await asyncio.sleep(0.05)
        assert "Traceback" not in reader.text
    finally:
        reader.start()  # a node stuck writing its log can then finish its stop
        proc.stop()
        reader.join()
        popen.stderr.close()
