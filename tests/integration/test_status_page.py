"""The live status page in a real headless Chromium, driven over the DevTools protocol (issue 16).

A 2-region cluster (n1, n2 in r1; n3 in r2) serves known traffic through n1; Chromium opens
n1's `/dashboard` on its admin listener and the test reads the page's DOM: the plots hold
points with the traffic's rates, the totals equal the requests sent, the ring lists n1 and
n2, the regions r1 and r2, the purge table each peer. The page must log no console error
and throw no exception. Chromium is Debian's `chromium` package: installed with apt-get when
missing; the test skips (saying why) only when it cannot be installed. Chromium talks to
127.0.0.x only (background networking, component updates and sync are off).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.integration.purge_harness import NodeSpec, PurgeCluster, VersionedOrigin
from tests.integration.test_purge_cluster import owned_by

pytestmark = pytest.mark.timeout(900)  # a first run may install chromium

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run")


def chromium() -> str:
    """The chromium binary, installed from Debian's package when missing; skips when it cannot be."""
    found = shutil.which("chromium")
    if found:
        return found
    if shutil.which("apt-get") is None:
        pytest.skip("headless Chromium is needed and apt-get is unavailable to install Debian's chromium")
    if os.geteuid() != 0:
        pytest.skip("headless Chromium is needed; installing Debian's chromium with apt-get needs root")
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    environ = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(install, capture_output=True, env=environ, timeout=600).returncode != 0:
        subprocess.run(["apt-get", "update"], capture_output=True, env=environ, timeout=300, check=True)
        subprocess.run(install, capture_output=True, env=environ, timeout=600, check=True)
    found = shutil.which("chromium")
    assert found, "apt-get installed chromium but it is not on PATH"
    return found


class DevTools:
    """One page target over the Chrome DevTools protocol; keeps every event it receives."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._next = 0
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self._ws:
            data = json.loads(message.data)
            future = self._waiting.pop(data.get("id", -1), None)
            if future is not None:
                future.set_result(data)
            else:
                self.events.append(data)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[self._next] = future
        await self._ws.send_json({"id": self._next, "method": method, "params": params})
        answer = await asyncio.wait_for(future, 30)
        assert "error" not in answer, answer
        return dict(answer.get("result", {}))

    async def js(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def errors(self) -> list[dict[str, Any]]:
        """Exceptions, console.error/assert calls and error log entries seen so far."""
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if (method == "Runtime.exceptionThrown"
                    or (method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"))
                    or (method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error")):
                found.append(event)
        return found

    async def close(self) -> None:
        await self._ws.close()
        self._reader.cancel()
        await asyncio.wait([self._reader])


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[int]:
    """A headless Chromium with a fresh profile; yields its DevTools port."""
    binary = chromium()
    profile = tmp_path / "chromium-profile"
    proc = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-address=127.0.0.1",
                             "--remote-debugging-port=0", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            assert proc.poll() is None, f"chromium exited with {proc.returncode}"
            assert time.monotonic() < deadline, "chromium did not open its DevTools port within 60 s"
            await asyncio.sleep(0.05)
        yield int(port_file.read_text().splitlines()[0])
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # chromium and the helpers it started (its own group)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


async def open_page(port: int, session: aiohttp.ClientSession) -> DevTools:
    async with session.get(f"http://127.0.0.1:{port}/json/list") as r:
        targets = await r.json()
    page = next(t for t in targets if t["type"] == "page")
    tools = DevTools(await session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0))
    for domain in ("Runtime", "Log", "Page"):
        await tools.call(f"{domain}.enable")
    return tools


async def test_status_page_plots_the_generated_traffic_without_console_errors(
    tmp_path: Path, vorigin: VersionedOrigin, session: aiohttp.ClientSession, browser: int
) -> None:
    specs = [NodeSpec("n1", "r1"), NodeSpec("n2", "r1"), NodeSpec("n3", "r2")]
    cluster = await PurgeCluster(tmp_path, vorigin, specs).start()
    tools = None
    try:
        names = [owned_by("n1", ("n1", "n2"), f"page{i}-") for i in range(4)]
        sent = 0
        for name in names:  # four misses (origin fetches) and twelve hits
            for _ in range(4):
                assert (await cluster.get(session, "n1", f"/v/{name}")).status == 200
                sent += 1
        tools = await open_page(browser, session)
        await tools.call("Page.navigate", url=cluster.specs["n1"].admin_url + "/dashboard")

        async def shown() -> dict[str, Any]:
            return dict(await tools.js("""(() => {
                const plot = id => document.getElementById('p-' + id).dataset;
                const ids = ['hit_ratio', 'requests_per_s', 'bytes_per_s', 'origin_per_s', 'origin_latency_ms'];
                return {
                  plots: Object.fromEntries(ids.map(id => [id, {points: +(plot(id).points || 0), max: +(plot(id).max || 0)}])),
                  requests: +(document.getElementById('totals').dataset.requests || -1),
                  origin: +(document.getElementById('totals').dataset.origin || -1),
                  ring: [...document.querySelectorAll('#ring tbody tr')].map(r => [r.dataset.member, r.lastChild.textContent]),
                  regions: [...document.querySelectorAll('#regions tbody tr')].map(r => r.dataset.region),
                  purges: [...document.querySelectorAll('#purges tbody tr')].map(r => r.dataset.peer),
                };
              })()""") or {})

        deadline = time.monotonic() + 30
        page: dict[str, Any] = {}
        while time.monotonic() < deadline:
            page = await shown() if await tools.js("!!document.getElementById('totals')") else {}
            if page and page["requests"] == sent and all(p["max"] > 0 for p in page["plots"].values()):
                break
            await asyncio.sleep(0.2)  # polling a real browser: there is no event to wait on
        assert page["requests"] == sent and page["origin"] == len(names), page
        for name, plot in page["plots"].items():
            assert plot["points"] >= 1 and plot["max"] > 0, (name, page)
        assert page["plots"]["hit_ratio"]["max"] <= 1.0
        assert page["ring"] == [["n1", "up"], ["n2", "up"]], page
        assert page["regions"] == ["r1", "r2"] and page["purges"] == ["n2", "n3"], page
        assert tools.errors() == []
    finally:
        if tools is not None:
            await tools.close()
        await cluster.close()
