"""The sampled replay through a running node: demo origin + edge node on loopback, real files.

The demo origin runs as a subprocess; the edge node (edge.app.EdgeNode, built from the quick
start's config with the configuration's [cache] choices and a disk tier in a temp directory)
runs in this process so its store counters can be read, and the requests go over HTTP one at
a time, in trace order, with `Host: cdn.test` so the node's cache keys are the ones the
in-process model uses. A hit is what the node's Cache-Status header says. Beside each node
run, the same sample replays through the in-process model with the same budgets; the two
differ only by the disk files' reserved head, which the model estimates (DISK_HEAD_BYTES).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
from model import TierModel, TierSpec
from traces import HOST, Trace, target

from edge.app import EdgeNode
from edge.config.deployment import CacheConfig, quickstart

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 60.0
Say = Callable[[str], None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_origin() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "origin.demo", "--listen", "127.0.0.1:0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        found = re.search(r"listening on (http://\S+)", line)
        if found:
            return proc, found.group(1)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError("the demo origin did not start")


async def _run_node(
    trace: Trace, spec: TierSpec, origin: str, memory: int, disk: int, say: Say
) -> dict[str, float]:
    cache = CacheConfig(
        policy=spec.memory_policy,  # type: ignore[arg-type]
        memory_max_object_bytes=spec.memory_max_object_bytes,
        disk_admission=spec.admission.value,
        disk_admission_window=spec.admission_window,
    )
    with tempfile.TemporaryDirectory(prefix="hitratio-") as tmp:
        cfg = quickstart(
            origin=origin,
            listen=f"127.0.0.1:{_free_port()}",
            memory_bytes=memory,
            disk_dir=str(Path(tmp) / "disk"),
            disk_bytes=disk,
            access_log=False,
            cache=cache,
        )
        node = EdgeNode(cfg)
        await node.start()
        try:
            assert node.store is not None and node.store.disk is not None
            base = f"http://127.0.0.1:{node.port}"
            hits = hit_bytes = total_bytes = 0
            timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
            step = max(1, len(trace) // 10)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                for i, (key, size) in enumerate(zip(trace.keys, trace.sizes, strict=True)):
                    async with session.get(base + target(key, size), headers={"Host": HOST}) as resp:
                        body = await resp.read()
                        if resp.status != 200 or len(body) != size:
                            raise RuntimeError(
                                f"{target(key, size)}: status {resp.status}, {len(body)} bytes"
                            )
                        status = resp.headers.get("Cache-Status", "")
                    total_bytes += size
                    if re.search(r";\s*hit\b", status):
                        hits += 1
                        hit_bytes += size
                    if (i + 1) % step == 0:
                        miss = 1 - hits / (i + 1)
                        say(f"  http {spec.name}: {i + 1}/{len(trace)} requests, object miss {miss:.3f}")
            mem_hits = node.store.memory.stats.hits
            disk_hits = node.store.disk.stats.hits
            return {
                "object_miss": 1 - hits / max(1, len(trace)),
                "byte_miss": 1 - hit_bytes / max(1, total_bytes),
                "ram_share": mem_hits / max(1, mem_hits + disk_hits),
                "disk_write_gib": node.store.disk_write_bytes / 2**30,
            }
        finally:
            await node.stop()


def compare(trace: Trace, specs: list[TierSpec], args: argparse.Namespace, say: Say) -> str:
    """Replays `trace` through a node per configuration and through the model; a table."""
    memory = int(trace.working_set_bytes * args.memory_share)
    disk = int(trace.working_set_bytes * args.disk_share)
    say(
        f"http replay of {trace.name}: {len(trace)} requests, {sum(trace.sizes) / 2**30:.2f} GiB, "
        f"memory {memory / 2**20:.1f} MiB, disk {disk / 2**20:.1f} MiB"
    )
    proc, origin = _start_origin()
    lines = [
        f"\n{trace.name} ({len(trace)} requests) over HTTP beside the in-process model on the same sample",
        f"{'config':<22} {'engine':<7} {'obj miss':>9} {'byte miss':>9} {'RAM share':>9} {'disk GiB wr':>11}",
    ]
    try:
        for spec in specs:
            model = TierModel(spec, memory_bytes=memory, disk_bytes=disk)
            for ident, size in zip(trace.ids, trace.sizes, strict=True):
                model.request(ident, size)
            t = model.tally
            got = asyncio.run(_run_node(trace, spec, origin, memory, disk, say))
            lines.append(
                f"{spec.name:<22} {'model':<7} {t.object_miss:9.3f} {t.byte_miss:9.3f} "
                f"{t.ram_share:9.3f} {t.disk_write_bytes / 2**30:11.3f}"
            )
            lines.append(
                f"{spec.name:<22} {'http':<7} {got['object_miss']:9.3f} {got['byte_miss']:9.3f} "
                f"{got['ram_share']:9.3f} {got['disk_write_gib']:11.3f}"
            )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return "\n".join(lines)
