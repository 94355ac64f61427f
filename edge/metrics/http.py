"""The admin listener's observability routes: `GET /metrics` (Prometheus text exposition) and
the live status page (`GET /dashboard`, edge.metrics.page).

The admin listener is bound to an operator network (`[nodes.NAME] admin`), and Prometheus
scrapers rarely carry bearer tokens, so /metrics needs none: it shows counters, never
cached content or secrets. Rendering walks bounded label sets (outcomes, routes, tiers,
servers, peers), so a scrape costs well under a millisecond of the event loop.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from edge.metrics.collector import Sources, registry_for
from edge.metrics.page import status_page_routes
from edge.metrics.series import Series

__all__ = ["metrics_routes", "observability_routes"]


def metrics_routes(registry: CollectorRegistry) -> Callable[[web.Application], None]:
    """Adds GET /metrics serving `registry` to an admin application."""

    async def metrics(request: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def add(app: web.Application) -> None:
        app.router.add_get("/metrics", metrics)

    return add


def observability_routes(sources: Sources, series: Series) -> Callable[[web.Application], None]:
    """GET /metrics and the status page, on one registry of their own."""
    metrics = metrics_routes(registry_for(sources))
    page = status_page_routes(sources, series)

    def add(app: web.Application) -> None:
        metrics(app)
        page(app)

    return add
