"""The demo origin: a real aiohttp server for `make run`, integration tests and benchmarks.

Routes (each counted in RequestStats on arrival, except the two /__ ones):

    GET  /__stats                     JSON: total, per-target counts, last requests per target
    POST /__reset                     zeroes the stats
    *    /obj/<name>?size=&cc=&...    synthetic objects (origin.demo.objects)
    *    /echo/<any>                  the request echoed as JSON (origin.demo.misc)
    GET  /hang/<any>, /reset/<any>, /status/<code>, /private/<name>, /whoami   (origin.demo.misc)
    GET  /<file>                      static files under --root (origin.demo.static)

Run it with `python -m origin.demo --listen 127.0.0.1:8000 --root DIR --generate`; tests
use `start_demo_origin()` on port 0. Responses are deterministic: the same request gets
the same bytes and validators every time.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Middleware

from origin.demo import sample
from origin.demo.live import LiveStream
from origin.demo.misc import MiscHandlers, request_headers
from origin.demo.objects import SyntheticObjects
from origin.demo.static import StaticFiles
from origin.demo.stats import RequestStats

__all__ = ["DemoOrigin", "RequestStats", "build_app", "main", "start_demo_origin"]

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_UNCOUNTED = frozenset({"/__stats", "/__reset"})
_SHUTDOWN_TIMEOUT_S = 5.0  # in-flight handlers get this long after close before cancellation

CLOSING_KEY = web.AppKey("closing", asyncio.Event)


def _counting_middleware(stats: RequestStats, verbose: bool) -> Middleware:
    @web.middleware
    async def count(request: web.Request, handler: _Handler) -> web.StreamResponse:
        # Counted before the first await, so a client that got any answer sees its count.
        if request.path not in _UNCOUNTED:
            stats.record(request.method, request.raw_path, request_headers(request))
        if not verbose:
            return await handler(request)
        try:
            resp = await handler(request)
        except web.HTTPException as exc:  # e.g. the router's 404 and 405
            print(f"{request.method} {request.raw_path} {exc.status}", flush=True)
            raise
        print(f"{request.method} {request.raw_path} {resp.status}", flush=True)
        return resp

    return count


def build_app(root: Path | None, stats: RequestStats, *, verbose: bool = False) -> web.Application:
    """Builds the demo origin's application; `root` is None for no static files."""
    app = web.Application(middlewares=[_counting_middleware(stats, verbose)])
    closing = asyncio.Event()  # set on shutdown: releases /hang and cuts delays short
    app[CLOSING_KEY] = closing

    async def on_shutdown(_: web.Application) -> None:
        closing.set()

    app.on_shutdown.append(on_shutdown)

    async def get_stats(_: web.Request) -> web.Response:
        return web.json_response(stats.to_json())

    async def post_reset(_: web.Request) -> web.Response:
        stats.reset()
        return web.json_response({"total": 0})

    objects = SyntheticObjects(closing)
    misc = MiscHandlers(closing)
    app.router.add_get("/__stats", get_stats)
    app.router.add_post("/__reset", post_reset)
    for method in ("GET", "POST", "PUT", "DELETE"):
        app.router.add_route(method, "/obj/{name:.+}", objects.handle)
        app.router.add_route(method, "/echo/{tail:.*}", misc.echo)
    app.router.add_route("HEAD", "/obj/{name:.+}", objects.handle)
    app.router.add_route("HEAD", "/echo/{tail:.*}", misc.echo)
    app.router.add_get("/hang/{tail:.*}", misc.hang)
    app.router.add_get("/reset/{tail:.*}", misc.reset)
    app.router.add_get("/status/{code}", misc.status)
    app.router.add_get("/private/{name:.+}", misc.private)
    app.router.add_get("/whoami", misc.whoami)
    live = LiveStream()  # a live-like HLS stream (issue 14)
    app.router.add_get("/live/index.m3u8", live.playlist)
    app.router.add_get(r"/live/seg{n:\d{1,12}}.ts", live.segment)
    if root is not None:
        app.router.add_get("/{tail:.*}", StaticFiles(root).handle)
    return app


class DemoOrigin:
    """A running demo origin bound to 127.0.0.1 (or the given host) on `port`."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, stats: RequestStats) -> None:
        self._runner = runner
        self.host = host
        self.port = port
        self.stats = stats

    @property
    def url(self) -> str:
        """The base URL, e.g. "http://127.0.0.1:41234"."""
        return f"http://{self.host}:{self.port}"

    async def close(self) -> None:
        """Stops listening, releases hung requests and waits for handlers to finish."""
        await self._runner.cleanup()


async def start_demo_origin(
    host: str = "127.0.0.1",
    port: int = 0,
    root: Path | None = None,
    *,
    verbose: bool = False,
    stats: RequestStats | None = None,
) -> DemoOrigin:
    """Starts a demo origin; port 0 picks a free port (read it from `.port`)."""
    stats = stats if stats is not None else RequestStats()
    app = build_app(root, stats, verbose=verbose)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]
    except BaseException:
        await runner.cleanup()
        raise
    return DemoOrigin(runner, host, int(bound), stats)


def _parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError("expected HOST:PORT, e.g. 127.0.0.1:8000")
    return host.strip("[]") or "127.0.0.1", int(port)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m origin.demo",
        description="Deterministic demo origin for edgecache: static files and synthetic objects.",
    )
    parser.add_argument(
        "--listen",
        type=_parse_listen,
        default=("127.0.0.1", 8000),
        metavar="HOST:PORT",
        help="address to listen on (default 127.0.0.1:8000; port 0 picks a free one)",
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help="directory of static files to serve at / (default: none, only the synthetic routes)",
    )
    parser.add_argument(
        "--generate",
        action="store_true",
        help="write the sample site (HTML, CSS, JS, PNG, HLS, DASH, a 64 MiB MP4) into --root "
        "first; files already there with the right size are kept",
    )
    parser.add_argument("--verbose", action="store_true", help="print one line per request to stdout")
    return parser


async def _serve(args: argparse.Namespace) -> None:
    host, port = args.listen
    origin = await start_demo_origin(host, port, args.root, verbose=args.verbose)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"demo origin listening on {origin.url} (root: {args.root or 'none'})", flush=True)
    try:
        await stop.wait()
    finally:
        print("demo origin stopping", flush=True)
        await origin.close()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    args = _parser().parse_args(argv)
    if args.generate:
        if args.root is None:
            _parser().error("--generate needs --root DIR")
        sample.generate(args.root)
    try:
        import uvloop  # the project's default loop when installed
    except ImportError:
        asyncio.run(_serve(args))
    else:
        uvloop.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
