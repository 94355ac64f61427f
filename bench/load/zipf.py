"""A Zipf load for wrk, the hot-copy share the ring should reach under it, and tier counters.

`lua_script` writes a wrk script that asks `keys` URLs with Zipf(s) popularity (rank r is
asked in proportion to 1/r^s), sampled per request from a cumulative table built once per
wrk thread. `expected_hot_share` says which share of the requests a non-owner should serve
from its hot copies: a key turns hot at a node once it is asked `min_hits` times within one
`window_s` (edge.peering.routing.HotCounter) and then stays (max-age outlives the run), so
with a node taking `node_rps`, rank r is hot when node_rps * P(r) * window_s >= min_hits.
`served_bytes` reads a node's `edgecache_served_bytes{tier=...}` from its /metrics.
"""

from __future__ import annotations

import http.client
import re

__all__ = ["expected_hot_share", "lua_script", "served_bytes", "zipf_path", "zipf_weights"]

_SAMPLE = re.compile(r'^edgecache_served_bytes(?:_total)?\{tier="(\w+)"\}\s+([0-9.e+]+)$', re.MULTILINE)


def zipf_path(size: int, rank: int) -> str:
    """The URL of the key of a given rank (1 = most asked)."""
    return f"/obj/zipf-{size}-{rank}?size={size}&cc=max-age=3600"


def zipf_weights(keys: int, s: float) -> list[float]:
    """P(rank) for ranks 1..keys."""
    raw = [1.0 / (r**s) for r in range(1, keys + 1)]
    total = sum(raw)
    return [w / total for w in raw]


def expected_hot_share(keys: int, s: float, node_rps: float, min_hits: int, window_s: float) -> float:
    """The share of a node's requests for keys it does not own that its hot copies answer."""
    return sum(p for p in zipf_weights(keys, s) if node_rps * p * window_s >= min_hits)


def lua_script(size: int, keys: int, s: float, seed: int, host: str) -> str:
    """A wrk script: every request asks one of `keys` URLs, drawn from Zipf(s)."""
    prefix, _, suffix = zipf_path(size, 0).partition("-0?")
    return f"""
wrk.headers["Host"] = "{host}"
local keys, s = {keys}, {s}
local paths, cdf, total = {{}}, {{}}, 0
for r = 1, keys do
  total = total + 1 / (r ^ s)
  cdf[r] = total
  paths[r] = "{prefix}-" .. r .. "?{suffix}"
end
for r = 1, keys do cdf[r] = cdf[r] / total end
local seeded = false
request = function()
  if not seeded then math.randomseed({seed}); seeded = true end
  local u, lo, hi = math.random(), 1, keys
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return wrk.format("GET", paths[lo])
end
"""


def served_bytes(host: str, admin_port: int) -> dict[str, float]:
    """Body bytes a node has sent to clients, by tier (memory, disk, hot, peer, origin)."""
    conn = http.client.HTTPConnection(host, admin_port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    return {tier: float(value) for tier, value in _SAMPLE.findall(text)}
