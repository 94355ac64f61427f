"""A deliberately careless origin, for attacker-then-victim tests of the edge (issue 12).

It behaves as the origins behind real cache-poisoning and cache-deception reports do, all
at once, in the test's event loop on 127.0.0.1:

- header names are folded as CGI/WSGI servers fold them: `_` and `-` are the same, so
  `X_Forwarded_Host` acts as `X-Forwarded-Host` (the underscore spelling wins);
- it reflects what it acts on into the body: the Host it saw, the forwarded host it
  builds its links from, a method override, and every request header (folded);
- it sends no cache headers unless the query asks (`cc=`, `lm=1`, `ct=`, `vary=`);
- a request header line (name + value) longer than 4 KiB gets a 400 that says
  `Cache-Control: max-age=600`, as a front server with a small line buffer does;
- any path whose *application* reading (`;` parameters dropped, `%2F` `%23` `%3B` `%2E`
  decoded, dot segments resolved) starts with /account serves a private HTML page for the
  Cookie (or Authorization) sent, with no cache headers at all;
- /static/<name> serves a public file typed by its extension, no cache headers;
- /ae/<name> answers per Accept-Encoding (the first coding it names), `Vary: Accept-Encoding`.

Counts every request by raw target (`counts`) and keeps the folded headers of each
(`seen`). Start with `await CarelessOrigin().start()`, stop with `await close()` in finally.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

from aiohttp import web

from tests.integration.conftest import next_loopback
from tests.integration.harness import Proc, free_port, start_edge, write_config

__all__ = ["LINE_LIMIT", "CarelessOrigin", "app_path", "start_careless_edge"]

LINE_LIMIT = 4096  # header lines above this get the cacheable 400
LAST_MODIFIED = "Tue, 14 Nov 2023 22:13:20 GMT"  # old: a heuristic lifetime of a day

_TYPES = {
    ".css": "text/css",
    ".js": "text/javascript",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".json": "application/json",
    ".txt": "text/plain",
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
}


def app_path(raw_path: str) -> str:
    """How a careless application reads a path: parameters dropped, decoded, dots resolved."""
    segments = [segment.split(";", 1)[0] for segment in raw_path.split("/")]
    decoded = unquote("/".join(segments))
    decoded = decoded.split("#", 1)[0].split(";", 1)[0]
    resolved = posixpath.normpath(decoded) if decoded else "/"
    return resolved if resolved.startswith("/") else "/" + resolved


class CarelessOrigin:
    """An origin that trusts everything it is sent."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()  # raw target (path and query) -> requests
        self.seen: list[dict[str, str]] = []  # folded headers of each request, in order
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> CarelessOrigin:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._serve)
        # long lines must reach the handler, which answers them with its cacheable 400
        self._runner = web.AppRunner(
            app, access_log=None, handler_args={"max_line_size": 65536, "max_field_size": 65536}
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        raw = request.raw_path
        self.counts[raw] += 1
        folded: dict[str, str] = {}
        for name, value in request.headers.items():
            key = name.lower().replace("_", "-")
            if key not in folded or "_" in name:
                folded[key] = value  # the underscore spelling wins, as with CGI variables
        self.seen.append(folded)
        for name, value in request.headers.items():
            if len(name) + len(value) > LINE_LIMIT:
                return web.Response(
                    status=400,
                    text="bad request: header line too long\n",
                    headers={"Cache-Control": "max-age=600"},
                )
        query = parse_qs(request.query_string)
        path = app_path(raw.split("?", 1)[0])
        headers: dict[str, str] = {}
        if "cc" in query:
            headers["Cache-Control"] = query["cc"][0]
        if "lm" in query:
            headers["Last-Modified"] = LAST_MODIFIED
        if "vary" in query:
            headers["Vary"] = query["vary"][0]
        if path == "/account" or path.startswith("/account/"):
            who = folded.get("cookie") or folded.get("authorization") or "anonymous"
            # private, but says nothing about it: the edge must not keep it
            return web.Response(
                text=f"<html>account page of {who}</html>\n",
                content_type="text/html",
                headers={k: v for k, v in headers.items() if k == "Last-Modified"},
            )
        if path.startswith("/static/"):
            suffix = posixpath.splitext(path)[1].lower()
            headers["Content-Type"] = query["ct"][0] if "ct" in query else _TYPES.get(suffix, "text/plain")
            return web.Response(body=f"static file {path}\n".encode(), headers=headers)
        if path.startswith("/ae/"):
            coding = (folded.get("accept-encoding") or "identity").split(",")[0].split(";")[0].strip()
            headers.update({"Vary": "Accept-Encoding", "Cache-Control": query.get("cc", ["max-age=600"])[0]})
            return web.Response(text=f"{path} encoded for {coding or 'identity'}\n", headers=headers)
        # everything else: a page that builds its links from what the request claims
        link_host = folded.get("x-forwarded-host") or folded.get("host", "")
        payload: dict[str, Any] = {
            "path": raw,
            "host": folded.get("host", ""),
            "link": f"http://{link_host}{path}",
            "method": folded.get("x-http-method-override") or request.method,
            "headers": folded,
        }
        headers["Content-Type"] = query["ct"][0] if "ct" in query else "application/json"
        return web.Response(body=json.dumps(payload).encode(), headers=headers)


def start_careless_edge(tmp_path: Path, origin: CarelessOrigin, *, extra: str = "",
                        cache: dict[str, Any] | None = None, name: str = "edge1") -> Proc:
    """One edge node process in front of the careless origin; `extra` is appended TOML."""
    host = next_loopback()
    config = write_config(tmp_path / f"{name}.toml", origin_url=origin.url,
                          nodes={name: f"{host}:{free_port(host)}"}, cache=cache, extra=extra)
    proc = start_edge(config, name, tmp_path / "logs")
    proc.extra["config"] = config
    return proc


LINK_RE = re.compile(r'"link": "http://([^/"]*)')
