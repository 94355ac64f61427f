"""Hits with 10,000 idle keep-alive connections held open beside the load, against the same run without.

Starts the demo origin, an edge node and nginx exactly as bench/load/hits.py does. For each
size and server it runs wrk once on a quiet listener, then has a holder process open `--idle`
connections to that server (each sends one GET for a small cached object, reads the answer and
then stays silent, as a browser's spare keep-alive connection does), runs wrk again while they
are held, and counts how many of them the server closed meanwhile. The table puts the two runs
side by side: what holding that many connections costs the hits of everyone else. The node's
keep-alive idle timeout (30 s) and nginx's (75 s) are both longer than a run.

    .venv/bin/python bench/load/idle.py [--idle 10000] [--quick] [--duration S]
        [--sizes 1KiB,1MiB] [--servers edge,nginx]

The run is written to bench/results/idle-<timestamp>.json. Everything started is stopped in `finally`.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
import asyncio
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hits import RESULTS, build_parser, measure, object_path, parse_sizes, say, start_servers, warm
from report import machine_info, size_label
from servers import HOST, Services, ensure_tools, free_port

REPO = Path(__file__).resolve().parents[2]
_READY_TIMEOUT_S = 30.0
_HOLD_READY_S = 180.0  # the holder must have every connection open and answered within this
_OPENING_AT_ONCE = 200  # connections the holder opens concurrently


# -- the holder (a child process: its sockets and CPU stay out of the bench process) -------------
Held = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _open_one(port: int, path: str, gate: asyncio.Semaphore) -> Held | None:
    async with gate:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 10)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            await asyncio.wait_for(reader.readexactly(length), 10)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, StopIteration, ValueError):
            return None
    return reader, writer  # the writer must stay referenced: collecting it closes the connection


async def _hold(port: int, count: int, path: str) -> None:
    """Opens `count` answered keep-alive connections, says how many, holds them until stdin closes."""
    gate = asyncio.Semaphore(_OPENING_AT_ONCE)
    held = [h for h in await asyncio.gather(*(_open_one(port, path, gate) for _ in range(count)))
            if h is not None]
    print(json.dumps({"open": len(held), "failed": count - len(held)}), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # the bench closes our stdin when it is done
    await asyncio.sleep(0)  # let any pending EOF be read
    closed = sum(1 for r, _ in held if r.at_eof() or r.exception() is not None)
    for _, w in held:
        w.close()
    print(json.dumps({"closed_by_server": closed}), flush=True)


def hold_main(argv: list[str]) -> int:
    port, count, path = int(argv[0]), int(argv[1]), argv[2]
    hard = raise_nofile(count)
    if count + 64 > hard:
        print(json.dumps({"error": f"--idle {count} needs more descriptors than the limit {hard}"}))
        return 2
    asyncio.run(_hold(port, count, path))
    return 0


def raise_nofile(want: int) -> int:
    """Raises the descriptor limit (the hard one too when allowed, as root) toward 2 * want + 8192."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = max(hard, 2 * want + 8192)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, target))
        return target
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard


# -- the bench --------------------------------------------------------------------------------
class Holder:
    """The child process holding the idle connections to one server."""

    def __init__(self, port: int, count: int, path: str) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--hold", str(port), str(count), path],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ready(self) -> dict[str, int]:
        """Waits for the holder's first line (every connection open and answered, or failed)."""
        assert self.proc.stdout is not None
        line = _readline(self.proc, _HOLD_READY_S)
        return dict(json.loads(line))

    def release(self) -> int:
        """Closes the idle connections; returns how many the server had closed meanwhile."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            got = json.loads(_readline(self.proc, 30))
            return int(got.get("closed_by_server", -1))
        finally:
            self.stop()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


def _readline(proc: subprocess.Popen[str], timeout_s: float) -> str:
    import selectors

    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout_s):
            raise RuntimeError(f"the idle-connection holder said nothing within {timeout_s:g}s")
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"the idle-connection holder exited ({proc.poll()})")
    return line


def run(args: argparse.Namespace, tmp: Path, procs: Services) -> int:
    say("step 1: tools (nginx, wrk)")
    ensure_tools(say)
    info = machine_info()
    # nginx and the node inherit it: the node caps clients at (limit - reserve) / 2, so holding
    # 10,000 needs a limit above 20,000 (as an operator sets LimitNOFILE in the systemd unit)
    limit = raise_nofile(args.idle)
    say(f"  descriptor limit {limit}; {args.idle} idle connections per server")
    say("step 2: demo origin")
    oport = free_port()
    procs.start("origin", [sys.executable, "-m", "origin.demo", "--listen", f"{HOST}:{oport}"],
                oport, say).wait_ready(_READY_TIMEOUT_S)
    say(f"step 3: {' and '.join(args.servers)}")
    servers = start_servers(args, tmp, procs, oport)
    if not servers:
        return 1
    small = object_path(1024)
    results: list[dict[str, object]] = []
    clean = True
    for size in args.sizes:
        say(f"size {size_label(size)}: {object_path(size)}")
        for name, svc in servers.items():
            hit = warm(name, svc.port, object_path(size), size) and warm(name, svc.port, small, 1024)
            quiet = measure(args, svc, size, hit)
            say(f"  {name}: opening {args.idle} idle keep-alive connections")
            started = time.monotonic()
            holder = Holder(svc.port, args.idle, small)
            try:
                opened = holder.ready()
                say(f"    {opened.get('open', 0)} open and answered, {opened.get('failed', 0)} failed, "
                    f"in {time.monotonic() - started:.1f}s")
                loaded = measure(args, svc, size, hit)
                closed = holder.release()
            finally:
                holder.stop()
            say(f"    the server closed {closed} of them during the run")
            clean = clean and hit and opened.get("failed", 1) == 0 and closed == 0
            results.append({"server": name, "size": size, "idle": args.idle, **opened,
                            "closed_by_server": closed,
                            "without": asdict(quiet), "with": asdict(loaded)})
    say("step 4: results")
    print(f"{'size':>6} {'server':<6} {'req/s quiet':>12} {'req/s +idle':>12} {'ratio':>6} "
          f"{'p99 quiet':>10} {'p99 +idle':>10} {'cpu quiet':>9} {'cpu +idle':>9}")
    for r in results:
        q, w = r["without"], r["with"]
        assert isinstance(q, dict) and isinstance(w, dict)
        print(f"{size_label(int(r['size'])):>6} {r['server']:<6} {q['rps']:>12,.0f} {w['rps']:>12,.0f} "
              f"{w['rps'] / max(q['rps'], 1e-9):>6.2f} {q['p99_ms']:>8.2f}ms {w['p99_ms']:>8.2f}ms "
              f"{q['cpu_pct']:>8.0f}% {w['cpu_pct']:>8.0f}%")
    out = RESULTS / f"idle-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": info, "idle": args.idle, "duration_s": args.duration,
                               "connections": args.connections, "results": results}, indent=2))
    say(f"wrote {out.relative_to(REPO)}")
    return 0 if clean and len(servers) == len(args.servers) else 1


def main() -> int:
    if sys.argv[1:2] == ["--hold"]:
        return hold_main(sys.argv[2:])
    p = build_parser()
    p.description = __doc__
    p.add_argument("--idle", type=int, default=10_000, help="idle connections per server (10000)")
    p.set_defaults(sizes=parse_sizes("1KiB,1MiB"), servers=["edge", "nginx"])
    args = p.parse_args()
    if args.quick:
        args.duration = 3.0
    tmp = Path(tempfile.mkdtemp(prefix="edgecache-idle-"))
    procs = Services(log_dir=tmp, cwd=REPO)
    try:
        return run(args, tmp, procs)
    finally:
        say("step 5: stopping everything")
        procs.stop_all(say)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
