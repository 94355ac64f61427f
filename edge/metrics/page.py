"""The live status page on the admin listener: `GET /dashboard` and the JSON it polls.

The page (status_page.html, shipped in the package) has no external assets: inline CSS,
inline JavaScript and SVG, so it works on an operator network without internet access. It
polls `GET /dashboard/data` once a second: the last minutes of rates from the Series, the
region's ring (each member's share of the key space, and who is down), every region's
nodes, and the purge lag per peer. Like /metrics it needs no token: it shows counters and
node names, never cached content or secrets.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib import resources
from typing import Any

from aiohttp import web

from edge.metrics.collector import Sources
from edge.metrics.series import Series

__all__ = ["dashboard_data", "status_page_routes"]


def dashboard_data(sources: Sources, series: Series, now: float) -> dict[str, Any]:
    """What the page draws, as JSON-ready data."""
    peers = sources.peer_status() if sources.peer_status is not None else []
    up = {p.name: p.healthy for p in peers}
    up[sources.node] = True
    shares = sources.ring().shares() if sources.ring is not None else {sources.node: 1.0}
    region_nodes = sorted({sources.node, *(p.name for p in peers if p.region == sources.region)})
    ring = [{"name": n, "share": shares.get(n, 0.0), "up": up.get(n, False)} for n in region_nodes]
    regions: dict[str, list[dict[str, Any]]] = {sources.region: []}
    for name, region in sorted([(sources.node, sources.region), *((p.name, p.region) for p in peers)]):
        regions.setdefault(region, []).append({"name": name, "up": up[name]})
    purge: dict[str, Any] = {"lag_s": None, "peers": []}
    if sources.purge_status is not None:
        status = sources.purge_status(now)
        purge["lag_s"] = status["purge_lag_s"]
        purge["peers"] = [{"name": name, **state} for name, state in sorted(dict(status["peers"]).items())]
    return {
        "node": sources.node,
        "region": sources.region,
        "series": series.view(),
        "ring": ring,
        "regions": regions,
        "purge": purge,
    }


def status_page_routes(
    sources: Sources, series: Series, clock: Callable[[], float] = time.time
) -> Callable[[web.Application], None]:
    """Adds GET /dashboard, GET /dashboard/data and GET / (a redirect) to an admin application."""
    page = resources.files("edge.metrics").joinpath("status_page.html").read_bytes()

    async def dashboard(request: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html", charset="utf-8")

    async def data(request: web.Request) -> web.Response:
        return web.json_response(
            dashboard_data(sources, series, clock()), headers={"Cache-Control": "no-store"}
        )

    async def root(request: web.Request) -> web.Response:
        raise web.HTTPFound("/dashboard")

    def add(app: web.Application) -> None:
        app.router.add_get("/dashboard", dashboard)
        app.router.add_get("/dashboard/data", data)
        app.router.add_get("/", root)

    return add
