"""`make run`: starts the demo origin and every node of config.toml, prints URLs to try.

Each part is its own process (`python -m origin.demo`, `python -m edge --node NAME`); their
output is passed through (one JSON access-log line per request, with its cache status).
Ctrl-C stops them all; a part that dies stops the rest.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time

from edge.config.deployment import ConfigError, DemoConfig, EdgeConfig, load_all

__all__ = ["main"]

READY_TIMEOUT_S = 60.0


def _wait_port(host: str, port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with code {proc.returncode}; see its output above")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not listen on {host}:{port} within {READY_TIMEOUT_S:.0f}s")


DEMO_HOST = "demo.local"  # the site name clients send: the cache key includes Host, so use one name
DEMO_PATHS = (
    "/index.html",
    "/video/hls/master.m3u8",
    "/video/hls/720p/index.m3u8",
    "/video/hls/720p/seg00000.ts",
    "/video/hls/720p/seg00001.ts",
    "/video/big.mp4",
    "/live/index.m3u8",
    "/obj/hello?size=1024&cc=max-age=60",
)


def _print_urls(cfg: EdgeConfig, first: str, demo_host: str, demo_port: int) -> None:
    """Prints curl commands to try and which node owns each demo URL."""
    from cluster.ring import Ring
    from edge.rules.key import make_key

    nodes = cfg.nodes
    region = [n for n in nodes.values() if n.region == cfg.node.region]
    ring = Ring({n.name: n.weight for n in region}, vnodes=cfg.cluster.vnodes) if cfg.cluster else None
    parents = cfg.parent_peers
    shield = (
        Ring({p.name: p.weight for p in parents}, vnodes=cfg.cluster.vnodes)
        if cfg.cluster and parents
        else None
    )
    print(f"\n==> ready. Every node serves every URL; send Host: {DEMO_HOST} so all nodes share one key.")
    print("    (the second request of each is a hit; Cache-Status says hit / fwd=miss / detail=peer-<owner>)")
    for path in DEMO_PATHS:
        key_id = make_key("http", DEMO_HOST, path).id
        owner = ring.owner(key_id) if ring is not None and len(region) > 1 else None
        note = f"   # owned by {owner}" if owner else ""
        if shield is not None:
            note += f", shield {shield.owner(key_id)}"
        print(f"    curl -si -H 'Host: {DEMO_HOST}' '{first}{path}' | head -20{note}")
    print(
        f"    curl -si -H 'Host: {DEMO_HOST}' -H 'Range: bytes=1000000-1000099' {first}/video/big.mp4"
        "   # seek in a 64 MiB MP4"
    )
    print(  # issue 14: a cold seek near the end costs the origin one 1 MiB slice
        f"    curl -si -H 'Host: {DEMO_HOST}' -H 'Range: bytes=66000000-66000099' {first}/video/big.mp4"
        "   # seek near its end: one slice from the origin"
    )
    admin = next((n for n in nodes.values() if n.admin_host), None)
    if admin is not None and cfg.admin.tokens:
        print(
            f"    purge everywhere: EDGECACHE_TOKEN={cfg.admin.tokens[0].token} .venv/bin/edgecache purge "
            f"url http://{DEMO_HOST}/index.html --wait --admin http://{admin.admin_host}:{admin.admin_port}"
        )
        print(
            f"    one node at a glance: .venv/bin/edgecache status --admin http://{admin.admin_host}:{admin.admin_port}"
        )
        print(f"    metrics: curl -s http://{admin.admin_host}:{admin.admin_port}/metrics")
    for name in dict.fromkeys(n.region for n in nodes.values()):
        members = [f"{n.name} http://{n.host}:{n.port}" for n in nodes.values() if n.region == name]
        parent = cfg.regions[name].parent if name in cfg.regions else None
        source = f" (fills from {parent})" if parent else " (talks to the origin)"
        print(f"    region {name}{source}: {', '.join(members)}")
    print(f"    origin request counts: curl -s http://{demo_host}:{demo_port}/__stats")


def main(argv: list[str] | None = None) -> int:
    """Runs the demo deployment until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m edge.cli.launch", description=__doc__)
    parser.add_argument("--config", default="config.toml", help="deployment file (default config.toml)")
    args = parser.parse_args(argv)
    try:
        cfg = next(iter(load_all(args.config).values()))  # every node's part validated before any starts
    except ConfigError as exc:
        print(f"edgecache: config error: {exc}", file=sys.stderr)
        return 2
    demo = cfg.demo or DemoConfig()
    demo_host, demo_port, root = demo.host, demo.port, demo.root
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    py = sys.executable
    try:
        print(
            f"==> starting the demo origin on http://{demo_host}:{demo_port} (sample site in {root})",
            flush=True,
        )
        origin = subprocess.Popen(
            [py, "-m", "origin.demo", "--listen", f"{demo_host}:{demo_port}", "--root", root, "--generate"]
        )
        procs.append(("demo origin", origin))
        _wait_port(demo_host, demo_port, origin, "the demo origin")
        first = None
        for name, node in cfg.nodes.items():
            host, port = node.host, node.port
            print(f"==> starting edge node {name} on http://{host}:{port}", flush=True)
            proc = subprocess.Popen([py, "-m", "edge", "--config", args.config, "--node", name])
            procs.append((f"node {name}", proc))
            _wait_port(host, port, proc, f"edge node {name}")
            first = first or f"http://{host}:{port}"
        _print_urls(cfg, first or "", demo_host, demo_port)
        print("==> Ctrl-C stops everything.\n", flush=True)
        while True:
            for what, proc in procs:
                if proc.poll() is not None:
                    print(f"==> {what} exited with code {proc.returncode}; stopping", flush=True)
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\n==> stopping", flush=True)
        return 0
    finally:
        for _, proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
