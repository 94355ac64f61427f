"""Memory soak: one node at steady mixed load (hits, misses over a rotating key space, purges).

Starts `python -m origin.demo` and one edge node (memory tier `--memory`, default 64MiB, like
the quick start, but from a generated config.toml so that the admin API is there for purges),
all on 127.0.0.1, then drives for `--minutes` (default 20):

- hits: `--hit-share` (0.8) of requests, over a hot set of `--hot` (300) objects of 1-32 KiB;
- misses: the rest, over a key space that keeps rotating (`/obj/soak-<n>`, n counting up, so
  the memory tier keeps evicting), 1-64 KiB, each carrying one of 16 tags;
- purges: one every `--purge-every` s (2) through the admin API, in turn a URL, a prefix, a
  tag and a soft URL purge.

Every `--report-every` s (30) it prints req/s, errors, the node's RSS and store entries; at the
end the RSS growth per minute (least squares over 5 s samples) over the last half of the run
and over the last 10 minutes when the run is long enough, and writes
bench/results/soak-<timestamp>.json.

`--tracemalloc DIR` runs the node under tracemalloc (slow) and has it write a snapshot to DIR
every report; compare two with `python bench/load/soak.py --compare A B`.

    .venv/bin/python bench/load/soak.py [--minutes 20] [--connections 32] [--memory 64MiB]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402

from bench.load.servers import HOST, Services, free_port  # noqa: E402

TOKEN = "soak-token-0123456789abcdef"
PROBE = Path(__file__).with_name("soak_probe.py")


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def slope_per_min(samples: list[tuple[float, int]]) -> float:
    """Least-squares slope of (seconds, bytes) samples, in MiB per minute."""
    if len(samples) < 2:
        return 0.0
    n = len(samples)
    mx = sum(t for t, _ in samples) / n
    my = sum(v for _, v in samples) / n
    var = sum((t - mx) ** 2 for t, _ in samples)
    cov = sum((t - mx) * (v - my) for t, v in samples)
    return (cov / var) * 60 / 2**20 if var else 0.0


def write_config(tmp: Path, origin: str, port: int, admin: int, memory: str, access_log: bool) -> Path:
    text = f"""access_log = {str(access_log).lower()}
[nodes.soak]
listen = "{HOST}:{port}"
admin = "{HOST}:{admin}"
[cache]
memory_bytes = "{memory}"
[admin]
rate_per_s = 50
burst = 100
[[admin.tokens]]
name = "ops"
token = "{TOKEN}"
hosts = ["*"]
[origins.demo]
servers = ["{origin}"]
[[routes]]
host = "*"
origin = "demo"
"""
    path = tmp / "soak.toml"
    path.write_text(text)
    return path


@dataclass
class Load:
    """What the drivers did so far."""

    requests: int = 0
    errors: int = 0
    purges: int = 0
    purge_errors: int = 0
    next_miss: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


def hot_target(i: int) -> str:
    size = 1024 * (1 + (i * 7) % 32)
    return f"/obj/hot-{i}?size={size}&cc=max-age%3D3600&tags=hot"


def miss_target(n: int) -> str:
    size = 1024 * (1 + (n * 13) % 64)
    return f"/obj/soak-{n}?size={size}&cc=max-age%3D600&tags=t{n % 16}"


async def driver(
    session: aiohttp.ClientSession,
    base: str,
    load: Load,
    args: argparse.Namespace,
    stop: asyncio.Event,
    rng: random.Random,
) -> None:
    while not stop.is_set():
        if rng.random() < args.hit_share:
            target = hot_target(rng.randrange(args.hot))
        else:
            load.next_miss += 1
            target = miss_target(load.next_miss)
        try:
            async with session.get(base + target, headers={"Host": "soak.test"}) as r:
                await r.read()
                load.statuses[r.status] = load.statuses.get(r.status, 0) + 1
                if r.status != 200:
                    load.errors += 1
        except (TimeoutError, aiohttp.ClientError):
            load.errors += 1
        load.requests += 1


async def purger(
    session: aiohttp.ClientSession,
    admin: str,
    load: Load,
    every_s: float,
    stop: asyncio.Event,
    rng: random.Random,
) -> None:
    kinds = 0
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), every_s)
            return
        except TimeoutError:
            pass
        recent = max(1, load.next_miss - rng.randrange(1, 500))
        body = [
            {"url": f"http://soak.test{hot_target(rng.randrange(50))}"},
            {"prefix": f"http://soak.test/obj/soak-{recent}"},
            {"tag": f"t{rng.randrange(16)}", "host": "soak.test"},
            {"url": f"http://soak.test{miss_target(recent)}", "soft": True},
        ][kinds % 4]
        kinds += 1
        try:
            async with session.post(
                admin + "/purge", data=json.dumps(body), headers={"Authorization": f"Bearer {TOKEN}"}
            ) as r:
                await r.read()
                load.purges += 1
                if r.status != 200:
                    load.purge_errors += 1
        except (TimeoutError, aiohttp.ClientError):
            load.purge_errors += 1


async def node_status(session: aiohttp.ClientSession, admin: str) -> dict[str, object]:
    try:
        async with session.get(admin + "/status", headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            return dict(await r.json())
    except (TimeoutError, aiohttp.ClientError, ValueError):
        return {}


async def run(args: argparse.Namespace, node_pid: int, base: str, admin: str) -> dict[str, object]:
    load, stop, rng = Load(), asyncio.Event(), random.Random(args.seed)
    duration = args.minutes * 60
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=args.connections + 4)
    samples: list[tuple[float, int]] = []
    reports: list[dict[str, object]] = []
    async with aiohttp.ClientSession(timeout=timeout, connector=connector, auto_decompress=False) as session:
        tasks = [
            asyncio.create_task(driver(session, base, load, args, stop, random.Random(rng.random())))
            for _ in range(args.connections)
        ]
        tasks.append(asyncio.create_task(purger(session, admin, load, args.purge_every, stop, rng)))
        started = time.monotonic()
        last_t, last_n, next_report = started, 0, started + args.report_every
        while (now := time.monotonic()) - started < duration:
            await asyncio.sleep(min(5.0, max(0.0, started + duration - now)))
            now = time.monotonic()
            samples.append((now - started, rss_bytes(node_pid)))
            if now >= next_report or now - started >= duration:
                status = await node_status(session, admin)
                store = status.get("store", {})
                rate = (load.requests - last_n) / (now - last_t)
                row = {
                    "t_s": round(now - started),
                    "req_per_s": round(rate),
                    "rss_mib": round(samples[-1][1] / 2**20, 1),
                    "errors": load.errors,
                    "purges": load.purges,
                    "entries": store.get("entries") if isinstance(store, dict) else None,
                    "pending_rules": status.get("pending_rules"),
                }
                reports.append(row)
                say(
                    f"t={row['t_s']:>5}s  {rate:7.0f} req/s  RSS {row['rss_mib']:6.1f} MiB  "
                    f"entries {row['entries']}  errors {load.errors}  "
                    f"purges {load.purges} (failed {load.purge_errors})  rules {row['pending_rules']}"
                )
                last_t, last_n, next_report = now, load.requests, next_report + args.report_every
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    elapsed = samples[-1][0] if samples else 0.0
    half = [s for s in samples if s[0] >= elapsed / 2]
    last10 = [s for s in samples if s[0] >= elapsed - 600] if elapsed >= 1200 else []
    return {
        "minutes": args.minutes,
        "connections": args.connections,
        "memory": args.memory,
        "requests": load.requests,
        "errors": load.errors,
        "statuses": load.statuses,
        "purges": load.purges,
        "purge_errors": load.purge_errors,
        "req_per_s": round(load.requests / elapsed) if elapsed else 0,
        "rss_start_mib": round(samples[0][1] / 2**20, 1) if samples else None,
        "rss_end_mib": round(samples[-1][1] / 2**20, 1) if samples else None,
        "rss_growth_mib_per_min_last_half": round(slope_per_min(half), 3),
        "rss_growth_mib_per_min_last_10min": round(slope_per_min(last10), 3) if last10 else None,
        "reports": reports,
        "samples": [(round(t), v) for t, v in samples],
    }


def compare(a: Path, b: Path, top: int = 25) -> None:
    """Prints the allocation sites that grew most between two tracemalloc snapshots."""
    import tracemalloc

    old, new = tracemalloc.Snapshot.load(str(a)), tracemalloc.Snapshot.load(str(b))
    filters = [
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    ]
    stats = new.filter_traces(filters).compare_to(old.filter_traces(filters), "traceback")
    for stat in stats[:top]:
        print(
            f"{stat.size_diff / 1024:+10.1f} KiB {stat.count_diff:+8d} blocks  "
            f"total {stat.size / 1024:10.1f} KiB"
        )
        for line in stat.traceback.format()[-8:]:
            print("      " + line)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--minutes", type=float, default=20.0)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--memory", default="64MiB")
    p.add_argument("--hot", type=int, default=300)
    p.add_argument("--hit-share", type=float, default=0.8)
    p.add_argument("--purge-every", type=float, default=2.0)
    p.add_argument("--report-every", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--access-log", action="store_true", help="node writes its access log (to a file)")
    p.add_argument("--tracemalloc", type=Path, default=None, metavar="DIR")
    p.add_argument("--compare", type=Path, nargs=2, default=None, metavar=("OLD", "NEW"))
    args = p.parse_args()
    if args.compare:
        compare(*args.compare)
        return 0
    with tempfile.TemporaryDirectory(prefix="edge-soak-") as tmp_name:
        tmp = Path(tmp_name)
        services = Services(tmp, REPO)
        try:
            origin_port, port, admin = free_port(), free_port(), free_port()
            origin = services.start(
                "origin",
                [sys.executable, "-m", "origin.demo", "--listen", f"{HOST}:{origin_port}"],
                origin_port,
                say,
            )
            origin.wait_ready(30)
            config = write_config(
                tmp, f"http://{HOST}:{origin_port}", port, admin, args.memory, args.access_log
            )
            node_argv = [sys.executable, "-m", "edge", "--config", str(config), "--node", "soak"]
            if args.tracemalloc is not None:
                args.tracemalloc.mkdir(parents=True, exist_ok=True)
                os.environ["SOAK_TRACEMALLOC_DIR"] = str(args.tracemalloc.resolve())
                os.environ["SOAK_TRACEMALLOC_EVERY_S"] = str(args.report_every)
                node_argv = [sys.executable, str(PROBE), "--config", str(config), "--node", "soak"]
            node = services.start("edge", node_argv, port, say)
            node.wait_ready(30 if args.tracemalloc is None else 180)  # tracemalloc: slow start
            say(
                f"driving {args.minutes:g} min: {args.connections} connections, {args.hit_share:.0%} hits "
                f"over {args.hot} objects, misses over rotating keys, a purge every {args.purge_every:g}s"
            )
            result = asyncio.run(run(args, node.proc.pid, f"http://{HOST}:{port}", f"http://{HOST}:{admin}"))
        finally:
            services.stop_all(say)
    say(
        f"{result['requests']} requests ({result['req_per_s']} req/s), {result['errors']} errors, "
        f"{result['purges']} purges; RSS {result['rss_start_mib']} -> {result['rss_end_mib']} MiB"
    )
    say(
        f"RSS growth over the last half: {result['rss_growth_mib_per_min_last_half']:+.3f} MiB/min"
        + (
            f"; over the last 10 min: {result['rss_growth_mib_per_min_last_10min']:+.3f} MiB/min"
            if result["rss_growth_mib_per_min_last_10min"] is not None
            else ""
        )
    )
    out = REPO / "bench" / "results" / f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    say(f"wrote {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
