"""stale-if-error on every failure kind, one origin fetch per key, answers in bounded time (issue 11).

A real edge process in front of `FaultOrigin` (in the test's loop, 127.0.0.1). Each object is
stored already stale (`Age` past `max-age`, `stale-if-error=60`), then the origin is made to
fail one way, and four clients ask for it at once. The test waits, on the node's /status,
until all four wait on ONE fill before the origin answers (`gate`), so coalescing is proven
rather than hoped for. Each client must get the stale copy (`detail=stale-if-error`), within
a bound set by the configured timeout the failure runs into, and a second wave must still
get it: an error answer (even `503` with `no-store`) never makes the key hit-for-pass.

Timeouts here are short (connect 1 s, first byte 2 s, idle 2 s) so the matrix runs fast;
the bounds are each timeout plus a generous margin for a loaded machine.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.integration.conftest import next_loopback
from tests.integration.fault_origin import Fault, FaultOrigin
from tests.integration.harness import Proc, Reply, fetch, free_port, start_edge

pytestmark = pytest.mark.timeout(60)

TOKEN = "fault-matrix-token-0123456789"
CLIENTS = 4
CONNECT_S, FIRST_BYTE_S, IDLE_S = 1.0, 2.0, 2.0
MARGIN_S = 2.0  # what a loaded machine may add to a bound


@dataclass(frozen=True)
class Case:
    """One failure kind: how to inject it and the timeout its answer is bounded by."""

    name: str
    fault: Fault | None  # per-target fault; None: see `blackhole` / `no_read`
    bound_s: float  # the client's answer within this (after the origin is released)
    fetches: int  # requests the origin reads over both waves (no-read, connect timeout: none)
    gated: bool = True  # the origin holds its answer until every client joined
    blackhole: bool = False  # connect timeout: the listener never accepts
    no_read: bool = False  # accepted, the request never read
    head_timeout_s: float | None = None  # [coalesce] head_timeout_s, when the case is about it


CASES = [
    Case("hang", Fault.HANG, FIRST_BYTE_S + MARGIN_S, 2, gated=False),
    Case("no-read", None, FIRST_BYTE_S + MARGIN_S, 0, gated=False, no_read=True),
    Case("connect-timeout", None, CONNECT_S + MARGIN_S, 0, gated=False, blackhole=True),
    # one request per wave: the node's session never resends a reset request on its own
    # (origin/client.py), and the lone server leaves the pool's policy no other to retry on
    Case("reset", Fault.RESET, MARGIN_S, 2),
    Case("500", Fault.ERROR_500, MARGIN_S, 2),
    Case("503-no-store", Fault.ERROR_503_NO_STORE, MARGIN_S, 2),
    Case("truncated-body", Fault.TRUNCATE, MARGIN_S, 2),
    # the origin would answer after 30 s; the coalescer's head wait (1.5 s) runs out first,
    # and the fill goes on: the second wave joins the same fill
    Case("coalesce-head-timeout", Fault.SLOW_HEAD, 1.5 + MARGIN_S, 1, gated=False, head_timeout_s=1.5),
]


def write_node_config(path: Path, origin_url: str, case: Case) -> tuple[Path, str]:
    host = next_loopback()
    admin = f"{host}:{free_port(host)}"
    first_byte = 10.0 if case.head_timeout_s is not None else FIRST_BYTE_S
    lines = [
        "access_log = false",
        "[nodes.e]",
        f'listen = "{host}:{free_port(host)}"',
        f'admin = "{admin}"',
        "[[admin.tokens]]",
        'name = "ops"',
        f'token = "{TOKEN}"',
        'hosts = ["*"]',
        "[coalesce]",
        f"head_timeout_s = {case.head_timeout_s or 30.0}",
        "[origins.demo]",
        f'servers = ["{origin_url}"]',
        f"connect_timeout_s = {CONNECT_S}",
        f"first_byte_timeout_s = {first_byte}",
        f"idle_timeout_s = {IDLE_S}",
        "[[routes]]",
        'host = "*"',
        'path_prefix = "/"',
        'origin = "demo"',
    ]
    path.write_text("\n".join(lines) + "\n")
    return path, admin


def fills(admin: str) -> dict[str, int]:
    req = urllib.request.Request(f"http://{admin}/status", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return dict(json.load(r)["fills"])


async def wait_joined(admin: str, clients: int) -> dict[str, int]:
    """Polls /status until `clients` requests wait on fills (real processes: no event to await)."""
    deadline = time.monotonic() + 15
    while True:
        now = await asyncio.to_thread(fills, admin)
        if now.get("waiting", 0) >= clients:
            return now
        if time.monotonic() > deadline:
            raise AssertionError(f"{clients} requests never waited on a fill: {now}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def fault_origin() -> AsyncIterator[FaultOrigin]:
    origin = await FaultOrigin(slow_head_s=30.0).start()
    origin.age_s = 10  # max-age=1: stored already stale, stale-if-error=60 still allows it
    try:
        yield origin
    finally:
        await origin.close()


@pytest.fixture
def edges(tmp_path: Path) -> Iterator[Callable[[Path], Proc]]:
    started: list[Proc] = []

    def start(config: Path) -> Proc:
        proc = start_edge(config, "e", tmp_path / "logs")
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in started:
            proc.stop()


async def timed(session: aiohttp.ClientSession, url: str) -> tuple[Reply, float, float]:
    """The reply, when the request was sent and when the answer was read (monotonic)."""
    started = time.monotonic()
    reply = await fetch(session, url)
    return reply, started, time.monotonic()


def assert_stale(reply: Reply, body: bytes, took: float, bound: float, log: str) -> None:
    assert reply.status == 200, (reply.status, reply.headers.get("Cache-Status"), log)
    assert reply.body == body
    assert reply.cache_status.get("detail") == "stale-if-error", reply.headers.get("Cache-Status")
    assert took <= bound, f"stale copy after {took:.2f}s, bound {bound:.2f}s"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_stale_copy_is_served_once_fetched_and_in_time_when_origin_fails(
    case: Case, fault_origin: FaultOrigin, edges: Callable[[Path], Proc], tmp_path: Path
) -> None:
    origin = fault_origin
    config, admin = write_node_config(tmp_path / "e.toml", origin.url, case)
    edge = edges(config)
    target = f"/obj/{case.name}"
    url = edge.url + target
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        first = await fetch(session, url)
        assert first.status == 200 and first.cache_status.get("fwd") == "miss", first.headers
        stored = first.body
        assert origin.counts[target] == 1

        # the fault
        if case.fault is not None:
            origin.set(target, case.fault)
        if case.no_read:
            origin.default = Fault.NO_READ
        if case.blackhole:
            await origin.refuse_connections()
        if case.gated:
            origin.gate = asyncio.Event()
        connects = origin.connects

        for wave in (CLIENTS, 1):  # the second wave: an error answer did not hide the stale copy
            tasks = [asyncio.create_task(timed(session, url)) for _ in range(wave)]
            joined = await wait_joined(admin, wave)
            assert joined["in_flight"] == 1, joined  # every client waits on one fill
            released = time.monotonic()
            if origin.gate is not None:
                origin.gate.set()
            for reply, sent, done in await asyncio.gather(*tasks):
                # the gated cases are bounded from the release, the others from the send
                took = done - (released if case.gated else sent)
                assert_stale(reply, stored, took, case.bound_s, edge.log())
            if origin.gate is not None:
                origin.gate = asyncio.Event()

        fetches = origin.counts[target] - 1
        assert fetches == case.fetches, f"{fetches} origin requests for 2 waves of one fill each"
        if case.no_read:
            assert origin.connects - connects == 2  # one connection per wave's fill
