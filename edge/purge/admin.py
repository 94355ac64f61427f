"""The admin API, on its own listener (`[nodes.NAME] admin`, never the public one).

    POST /purge   {"url": "http://host/path"} | {"prefix": "http://host/p"} | {"tag": "t", "host": "h"}
                  | {"all": "host"}, optional "soft": true
                  200 {"id", "acked": [nodes], "pending": []} when every node acknowledged in time,
                  202 with the nodes still pending otherwise (catch-up brings them the purge)
    GET  /purge/ID  {"id", "acked", "pending"}: which nodes are known to hold that purge now
                  (peers report what they hold when they catch up; `edgecache purge --wait` polls it)
    GET  /status  node, purge generation, cursor, peers' purge-lag state, store stats
    GET  /_edge/live  liveness (no token): 200 while the node's event loop answers
    (more routes, GET /metrics and the status page GET /dashboard, come from `extra_routes`:
    edge.metrics.http)

Every request but liveness needs `Authorization: Bearer <token>` from `[[admin.tokens]]`, compared in
constant time with every configured token. The checks run in this order and each refusal
purges nothing: 401 (token missing or unknown), 429 with Retry-After (that token's bucket is
empty), 400 (malformed JSON, unknown field, bad URL: one-line reason), 403 (the token may not
purge that host), 503 (the node cannot journal purges right now). Every purge request is
logged with the token's name, what it asked and the result.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from cluster.propagate import PurgeResult
from cluster.purge import JournalError, PurgeKind
from edge.config.purge import AdminConfig, AdminToken

__all__ = ["LIVE_PATH", "Admin", "BadPurge", "PurgeRequest", "TokenBucket", "parse_purge"]

log = logging.getLogger("edge.purge.admin")

_MAX_BODY_BYTES = 64 * 1024


class TokenBucket:
    """`rate_per_s` tokens a second up to `burst`; pure: the caller passes the clock."""

    def __init__(self, rate_per_s: float, burst: int, now: float) -> None:
        self._rate = rate_per_s
        self._burst = float(burst)
        self._tokens = float(burst)
        self._at = now

    def take(self, now: float) -> float:
        """Takes one token: 0.0 when allowed, else the seconds until one is available."""
        self._tokens = min(self._burst, self._tokens + max(0.0, now - self._at) * self._rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self._rate


class BadPurge(ValueError):
    """The purge request is malformed; the message is the one-line reason."""


@dataclass(frozen=True, slots=True)
class PurgeRequest:
    """A validated purge request."""

    kind: PurgeKind
    value: str  # normalised "http://host/target" for url/prefix; the tag; the host for all
    host: str  # lower-cased host[:port] whose objects it concerns
    soft: bool


def _normalise_url(raw: object, field: str) -> tuple[str, str]:
    """("http://host/target", host) as cache keys spell them; raises BadPurge."""
    if not isinstance(raw, str) or not raw:
        raise BadPurge(f'{field}: expected an absolute URL such as "http://example.com/path"')
    parts = urllib.parse.urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc or "@" in parts.netloc:
        raise BadPurge(
            f'{field}: expected an absolute http(s) URL such as "http://example.com/path", got {raw!r}'
        )
    if parts.fragment or "#" in raw:
        raise BadPurge(f"{field}: a URL with a #fragment never names a cached object")
    if any(c.isspace() for c in raw):
        raise BadPurge(f"{field}: URL contains whitespace")
    host = parts.netloc.lower()
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query or raw.endswith("?") else "")
    return f"http://{host}{target}", host  # keys always use "http" (edge.rules.key.make_key)


def _host(raw: object, field: str) -> str:
    if not isinstance(raw, str) or not raw or any(c.isspace() or c in "/*?#@" for c in raw):
        raise BadPurge(f'{field}: expected a host name such as "example.com"')
    return raw.lower()


def parse_purge(body: bytes) -> PurgeRequest:
    """Validates a POST /purge body; raises BadPurge with a one-line reason."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadPurge(f"body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadPurge('body must be a JSON object such as {"url": "http://example.com/path"}')
    kinds = [k for k in ("url", "prefix", "tag", "all") if k in data]
    unknown = sorted(set(data) - {"url", "prefix", "tag", "all", "host", "soft"})
    if unknown:
        raise BadPurge(f"unknown field {unknown[0]!r}; use one of url, prefix, tag (+ host), all, and soft")
    if len(kinds) != 1:
        raise BadPurge("give exactly one of url, prefix, tag or all")
    soft = data.get("soft", False)
    if not isinstance(soft, bool):
        raise BadPurge("soft: expected true or false")
    kind = kinds[0]
    if "host" in data and kind != "tag":
        raise BadPurge("host: only a tag purge takes a host (url and prefix name theirs, all is the host)")
    if kind in ("url", "prefix"):
        value, host = _normalise_url(data[kind], kind)
        return PurgeRequest(PurgeKind.URL if kind == "url" else PurgeKind.PREFIX, value, host, soft)
    if kind == "tag":
        tag = data["tag"]
        if not isinstance(tag, str) or not tag or any(c.isspace() or c == "," for c in tag):
            raise BadPurge("tag: expected one tag (no spaces or commas)")
        if "host" not in data:
            raise BadPurge("host: a tag purge needs the host whose objects carry the tag")
        return PurgeRequest(PurgeKind.TAG, tag, _host(data["host"], "host"), soft)
    host = _host(data["all"], "all")
    return PurgeRequest(PurgeKind.ALL, host, host, soft)


class PurgeService(Protocol):
    """What the admin API submits purges to (cluster.propagate.PurgeHub)."""

    @property
    def accepting(self) -> bool: ...

    async def submit(
        self, kind: PurgeKind, value: str, host: str, soft: bool, *, timeout_s: float
    ) -> PurgeResult: ...

    def holders(self, node: str, seq: int) -> tuple[tuple[str, ...], tuple[str, ...]]: ...


LIVE_PATH = "/_edge/live"


async def _live(request: web.Request) -> web.Response:
    return web.Response(text="alive\n", headers={"Cache-Control": "no-store"})


def _reply(status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, text=json.dumps(body) + "\n", content_type="application/json", headers=headers
    )


class Admin:
    """The admin listener: purge and status, behind bearer tokens and per-token rate limits."""

    def __init__(
        self,
        config: AdminConfig,
        purges: PurgeService,
        status: Callable[[], Mapping[str, Any]],
        *,
        clock: Callable[[], float] = time.monotonic,
        extra_routes: Callable[[web.Application], None] | None = None,
    ) -> None:
        self._extra_routes = extra_routes  # adds routes with their own access rules
        self._config = config
        self._purges = purges
        self._status = status
        self._clock = clock
        self._buckets = {t.name: TokenBucket(config.rate_per_s, config.burst, clock()) for t in config.tokens}
        self._runner: web.AppRunner | None = None
        self.port = 0

    def reconfigure(self, config: AdminConfig) -> None:
        """A config reload: new tokens and rate limits (a kept token keeps its bucket's level)."""
        same_rate = (config.rate_per_s, config.burst) == (self._config.rate_per_s, self._config.burst)
        old = self._buckets if same_rate else {}
        self._config = config
        now = self._clock()
        rate, burst = config.rate_per_s, config.burst
        self._buckets = {t.name: old.get(t.name) or TokenBucket(rate, burst, now) for t in config.tokens}

    def app(self) -> web.Application:
        """The aiohttp application (also used by tests on a test server)."""
        app = web.Application(client_max_size=_MAX_BODY_BYTES)
        app.router.add_post("/purge", self._purge)
        app.router.add_get("/status", self._get_status)
        app.router.add_get(LIVE_PATH, _live)  # liveness: no token, says nothing but "the loop runs"
        app.router.add_get("/purge/{id}", self._get_purge)
        if self._extra_routes is not None:
            self._extra_routes(app)
        return app

    async def start(self, host: str, port: int) -> None:
        """Listens on host:port."""
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await site.start()
        addresses = self._runner.addresses  # the bound (host, port), also for port 0
        self.port = int(addresses[0][1]) if addresses else port

    async def stop(self) -> None:
        """Closes the listener."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _authenticate(self, request: web.Request) -> AdminToken | None:
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return None
        given = presented.strip().encode("utf-8", "surrogateescape")
        found = None
        for token in self._config.tokens:  # every token is compared: timing says nothing about which
            if hmac.compare_digest(given, token.token.encode("utf-8")):
                found = token
        return found

    async def _purge(self, request: web.Request) -> web.Response:
        token = self._authenticate(request)
        if token is None:
            log.warning("purge refused (401): missing or unknown token from %s", request.remote)
            return _reply(
                401,
                {"error": "missing or unknown bearer token; send Authorization: Bearer <token>"},
                {"WWW-Authenticate": 'Bearer realm="edgecache-admin"'},
            )
        wait = self._buckets[token.name].take(self._clock())
        if wait > 0:
            log.warning("purge refused (429): token %s over its rate limit", token.name)
            return _reply(
                429,
                {
                    "error": f"rate limit of {self._config.rate_per_s:g}/s (burst "
                    f"{self._config.burst}) exceeded for token {token.name}"
                },
                {"Retry-After": str(max(1, math.ceil(wait)))},
            )
        try:
            wanted = parse_purge(await request.read())
        except BadPurge as exc:
            log.warning("purge refused (400) for %s: %s", token.name, exc)
            return _reply(400, {"error": str(exc)})
        what = f"{wanted.kind.value} {wanted.value}{' soft' if wanted.soft else ''}"
        bare = wanted.host.rpartition(":")[0] if wanted.host.rpartition(":")[2].isdigit() else wanted.host
        if "*" not in token.hosts and bare not in token.hosts:
            log.warning(
                "purge refused (403): token %s may not purge host %s (%s)", token.name, wanted.host, what
            )
            return _reply(403, {"error": f"token {token.name} may not purge host {wanted.host}"})
        if not self._purges.accepting:
            log.warning("purge refused (503): still catching up with peers (%s by %s)", what, token.name)
            return _reply(
                503,
                {"error": "node is still catching up with its peers; retry in a second"},
                {"Retry-After": "1"},
            )
        try:
            result = await self._purges.submit(
                wanted.kind, wanted.value, wanted.host, wanted.soft, timeout_s=self._config.purge_timeout_s
            )
        except JournalError as exc:
            log.error("purge failed (503): %s by %s: %s", what, token.name, exc)
            return _reply(503, {"error": f"cannot journal the purge: {exc}"})
        status = 200 if not result.pending else 202
        log.info(
            "purge %s by %s: %s; acked by %s%s",
            result.purge.id,
            token.name,
            what,
            ",".join(result.acked),
            f"; pending {','.join(result.pending)}" if result.pending else "",
        )
        return _reply(
            status, {"id": result.purge.id, "acked": list(result.acked), "pending": list(result.pending)}
        )

    async def _get_purge(self, request: web.Request) -> web.Response:
        if self._authenticate(request) is None:
            return _unauthorised()
        node, _, seq = request.match_info["id"].rpartition(":")
        if not node or not seq.isdigit():
            return _reply(400, {"error": 'purge id: expected "node:seq" as POST /purge answered'})
        acked, pending = self._purges.holders(node, int(seq))
        return _reply(200, {"id": f"{node}:{int(seq)}", "acked": list(acked), "pending": list(pending)})

    async def _get_status(self, request: web.Request) -> web.Response:
        if self._authenticate(request) is None:
            return _reply(
                401,
                {"error": "missing or unknown bearer token; send Authorization: Bearer <token>"},
                {"WWW-Authenticate": 'Bearer realm="edgecache-admin"'},
            )
        return _reply(200, self._status())


def _unauthorised() -> web.Response:
    return _reply(
        401,
        {"error": "missing or unknown bearer token; send Authorization: Bearer <token>"},
        {"WWW-Authenticate": 'Bearer realm="edgecache-admin"'},
    )
