"""Cold seeks into large objects: edgecache with slices of several sizes, without, and nginx.

`.venv/bin/python bench/load/seek.py` starts the demo origin and, each behind its own
byte-counting relay (so the bytes the origin sent to each server are measured the same way),
edge nodes with `slice_bytes` = 0 (whole objects), 512 KiB, 1 MiB and 4 MiB, and nginx with
`slice 1m` + `proxy_cache_lock` when an nginx with the slice module is installed. For each
origin rate (4 and 40 MB/s by default) and server it measures, on objects nobody asked for yet:

- seek: a 64 KiB Range request inside the last MiB: time to first byte, time to last byte,
  and the bytes the origin sent for it (counted until the server's fetch went quiet);
- leave: a full GET whose client reads 1 MiB and leaves: the bytes the origin sent;
- hit: the MB/s of full GETs of an object already cached whole (edge without slices: one
  memory entry, as `memory_max_object_bytes` is raised to 128 MiB here) or as slices (memory
  entries too), from an unthrottled origin, so the cost of slice boundaries on the hit path
  shows. The client is curl (aiohttp when curl is missing); the best of `--hit-rounds` runs.
Everything listens on 127.0.0.1; every process is stopped at the end; results go to
bench/results/seek-<time>.json. `--size` (default 64MiB; the issue's 256MiB takes minutes at
4 MB/s without slices), `--rates 4e6,40e6`, `--hit-rounds N`, `--only-hits`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from servers import HOST, Services, free_port

ROOT = Path(__file__).resolve().parents[2]
MiB = 1 << 20
SLICES = {"edge-whole": 0, "edge-512k": 512 * 1024, "edge-1m": MiB, "edge-4m": 4 * MiB}
NGINX_SLICE = """user root;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    proxy_temp_path {prefix}/proxy_temp;
    client_body_temp_path {prefix}/client_body;
    proxy_cache_path {prefix}/cache levels=1:2 keys_zone=seek:16m max_size=8g inactive=1h use_temp_path=off;
    server {{
        listen {listen};
        location / {{
            slice 1m;
            proxy_cache seek;
            proxy_cache_key $uri$is_args$args$slice_range;
            proxy_set_header Range $slice_range;
            proxy_cache_valid 200 206 1h;
            proxy_cache_lock on;
            proxy_http_version 1.1;
            proxy_pass http://{origin};
        }}
    }}
}}
"""


class Relay:
    """A TCP relay in front of the origin that counts the bytes the origin sends back."""

    def __init__(self, origin_port: int) -> None:
        self.origin_port = origin_port
        self.bytes = 0
        self.port = 0
        self.last_change = time.monotonic()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> Relay:
        self._server = await asyncio.start_server(self._accept, HOST, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()

    async def _accept(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        try:
            orr, ow = await asyncio.open_connection(HOST, self.origin_port)
        except OSError:
            cw.close()
            return
        self._writers.update((cw, ow))
        try:
            await asyncio.gather(self._pipe(cr, ow, False), self._pipe(orr, cw, True), return_exceptions=True)
        finally:
            self._writers.difference_update((cw, ow))

    async def _pipe(self, r: asyncio.StreamReader, w: asyncio.StreamWriter, count: bool) -> None:
        try:
            while data := await r.read(256 * 1024):
                if count:
                    self.bytes += len(data)
                    self.last_change = time.monotonic()
                w.write(data)
                await w.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            w.close()

    async def quiet(self, timeout_s: float) -> int:
        """Waits until no byte came for 1 s (at most timeout_s); returns the byte count."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and time.monotonic() - self.last_change < 1.0:
            await asyncio.sleep(0.1)
        return self.bytes


def edge_config(path: Path, name: str, port: int, origin_port: int, slice_bytes: int, disk: Path) -> Path:
    path.write_text(
        f'access_log = false\n[nodes.{name}]\nlisten = "{HOST}:{port}"\n'
        f'[cache]\nmemory_bytes = "1GiB"\nmemory_max_object_bytes = "128MiB"\n'
        f'disk_dir = "{disk}"\ndisk_bytes = "8GiB"\n'
        f'[origins.demo]\nservers = ["http://{HOST}:{origin_port}"]\n'
        f'[[routes]]\nhost = "*"\norigin = "demo"\n'
        f"[[policies]]\nslice_bytes = {slice_bytes}\n"
    )
    return path


def nginx_with_slice() -> str | None:
    nginx = shutil.which("nginx")
    if nginx is None:
        return None
    out = subprocess.run([nginx, "-V"], capture_output=True, text=True, timeout=10, check=False).stderr
    return nginx if "http_slice_module" in out else None


async def seek(session: aiohttp.ClientSession, url: str, start: int) -> tuple[float, float]:
    began = time.monotonic()
    async with session.get(url, headers={"Range": f"bytes={start}-{start + 65535}"}) as resp:
        assert resp.status == 206, resp.status
        first = await resp.content.readany()
        ttfb = time.monotonic() - began
        rest = await resp.read()
        assert len(first) + len(rest) == 65536
    return ttfb, time.monotonic() - began


async def leave(session: aiohttp.ClientSession, url: str) -> None:
    async with session.get(url) as resp:
        got = 0
        while got < MiB and (chunk := await resp.content.read(64 * 1024)):
            got += len(chunk)
        resp.close()


async def hit_mbps(session: aiohttp.ClientSession, url: str, size: int, rounds: int) -> float:
    """MB/s of full GETs of a cached object: the best of `rounds` curl runs (aiohttp without curl)."""
    async with session.get(url) as resp:  # fill
        assert len(await resp.read()) == size
    curl = shutil.which("curl")
    speeds = []
    for _ in range(rounds):
        if curl is not None:
            proc = await asyncio.create_subprocess_exec(
                curl, "-s", "-o", "/dev/null", "-w", "%{speed_download}", url, stdout=asyncio.subprocess.PIPE
            )
            out, _ = await proc.communicate()
            speeds.append(float(out) / 1e6)
            continue
        began = time.monotonic()
        async with session.get(url) as resp:
            while await resp.content.readany():
                pass
        speeds.append(size / (time.monotonic() - began) / 1e6)
    return max(speeds)


async def run(args: argparse.Namespace) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="seek-bench-"))
    services = Services(tmp, ROOT)
    relays: dict[str, Relay] = {}
    say = print
    try:
        origin_port = free_port()
        services.start(
            "origin",
            [sys.executable, "-m", "origin.demo", "--listen", f"{HOST}:{origin_port}"],
            origin_port,
            say,
        ).wait_ready(30)
        servers: dict[str, int] = {}
        for name, size in SLICES.items():
            relays[name] = await Relay(origin_port).start()
            port = free_port()
            cfg = edge_config(tmp / f"{name}.toml", "n", port, relays[name].port, size, tmp / f"disk-{name}")
            services.start(
                name, [sys.executable, "-m", "edge", "--config", str(cfg), "--node", "n"], port, say
            ).wait_ready(30)
            servers[name] = port
        nginx = nginx_with_slice()
        if nginx is None:
            say("nginx with the slice module not installed: nginx column skipped")
        else:
            relays["nginx-slice-1m"] = await Relay(origin_port).start()
            port = free_port()
            prefix = tmp / "nginx"
            prefix.mkdir()
            conf = prefix / "nginx.conf"
            conf.write_text(
                NGINX_SLICE.format(
                    prefix=prefix, listen=f"{HOST}:{port}", origin=f"{HOST}:{relays['nginx-slice-1m'].port}"
                )
            )
            services.start(
                "nginx-slice-1m", [nginx, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"], port, say
            ).wait_ready(30)
            servers["nginx-slice-1m"] = port
        results: dict[str, object] = {"size": args.size, "rows": []}
        await asyncio.sleep(1.0)  # let the servers' start-up traffic (health checks) settle
        rows: list[dict[str, object]] = results["rows"]  # type: ignore[assignment]
        timeout = aiohttp.ClientTimeout(total=args.size / min(args.rates) + 120)
        async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:
            for rate in [] if args.only_hits else args.rates:
                for name, port in servers.items():
                    relay = relays[name]
                    query = f"size={args.size}&rate={int(rate)}&etag=auto&cc=max-age=3600"
                    target = f"/obj/seek-{name}-{int(rate)}?{query}"
                    before = relay.bytes
                    ttfb, total = await seek(session, f"http://{HOST}:{port}{target}", args.size - MiB + 4096)
                    seek_bytes = await relay.quiet(args.size / rate + 30) - before
                    target = target.replace("seek-", "leave-")
                    before = await relay.quiet(5)
                    await leave(session, f"http://{HOST}:{port}{target}")
                    leave_bytes = await relay.quiet(args.size / rate + 30) - before
                    row = {
                        "server": name,
                        "rate": rate,
                        "seek_ttfb_s": round(ttfb, 3),
                        "seek_total_s": round(total, 3),
                        "seek_origin_mib": round(seek_bytes / MiB, 2),
                        "leave_origin_mib": round(leave_bytes / MiB, 2),
                    }
                    rows.append(row)
                    say(json.dumps(row))
            for name, port in servers.items():
                url = f"http://{HOST}:{port}/obj/hit-{name}?size={args.size}&etag=auto&cc=max-age=3600"
                mbps = await hit_mbps(session, url, args.size, args.hit_rounds)
                rows.append({"server": name, "hit_mb_s": round(mbps, 1)})
                say(json.dumps(rows[-1]))
        return results
    finally:
        for relay in relays.values():
            await relay.close()
        services.stop_all(say)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size", type=lambda v: int(v.removesuffix("MiB")) * MiB, default=64 * MiB)
    parser.add_argument("--rates", type=lambda v: [float(x) for x in v.split(",")], default=[4e6, 40e6])
    parser.add_argument("--hit-rounds", type=int, default=5)
    parser.add_argument("--only-hits", action="store_true", help="skip the seek and leave runs")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    out = ROOT / "bench" / "results" / f"seek-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
