"""Which request targets name a cluster-internal endpoint (`/_edge/...`) — pure.

The internal listener serves health probes and purge traffic under `/_edge/` to callers
that present the cluster secret. The public listener must never become a way to reach
them (issue 12: `GET /_edge/purges?cursor=...` on the public port was forwarded to the
owner with the secret attached, and answered with the purge journal). So the public
handler answers 404 to, and the peer client refuses to forward, any target that some
reading of its path puts under `/_edge`: case folded, percent-decoding repeated (double
encoding), `\\` read as `/`, `;` parameters dropped, empty and dot segments resolved.
A false positive costs a 404 for an origin path under `/_edge`, which the edge reserves.
"""

from __future__ import annotations

import posixpath
from urllib.parse import unquote

__all__ = ["INTERNAL_PREFIX", "is_internal_target"]

INTERNAL_PREFIX = "/_edge"  # every internal endpoint lives below it

_MAX_DECODES = 4  # %255F%2565dge: each pass removes one layer of encoding


def _readings(path: str) -> list[str]:
    """The path as origins and proxies might read it: raw, then each decoding, all normalised."""
    readings = [path]
    for _ in range(_MAX_DECODES):
        decoded = unquote(readings[-1], errors="replace")
        if decoded == readings[-1]:
            break
        readings.append(decoded)
    return readings


def _normal(path: str) -> str:
    path = path.replace("\\", "/").lower()
    path = "/".join(segment.split(";", 1)[0] for segment in path.split("/"))
    resolved = posixpath.normpath("/" + path)
    return "/" + resolved.lstrip("/")  # normpath keeps a leading "//"


def is_internal_target(target: str) -> bool:
    """True when any reading of the target's path is `/_edge` or below it."""
    path = target.split("?", 1)[0].split("#", 1)[0]
    for reading in _readings(path):
        normal = _normal(reading)
        if normal == INTERNAL_PREFIX or normal.startswith(INTERNAL_PREFIX + "/"):
            return True
    return False
