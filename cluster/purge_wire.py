"""Purges between nodes: the msgpack wire format and the HTTP client for the internal endpoints.

Two endpoints on every node's internal listener (both need the cluster secret):

    POST /_edge/purge              body: one msgpack purge; 200 once journaled (fsync) and applied
    GET  /_edge/purges?cursor=C    C: URL-encoded JSON {node: seq}; 200 with a msgpack page
                                   {"node": name, "purges": [...], "more": bool}

`HttpPurgeTransport` is the sending side; edge.peering.routing.PeerGate serves the receiving side
with `decode_purge`, `parse_cursor` and `encode_page`. Failures reach the caller as
PropagationError (connection refused, timeout, non-200, undecodable answer).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping, Sequence

import aiohttp
import msgpack

from cluster.config import PeerConfig
from cluster.peer import HOP_HEADER, SECRET_HEADER
from cluster.purge import Purge, pack_purge, unpack_purge

__all__ = [
    "PURGES_PATH",
    "PURGE_PATH",
    "HttpPurgeTransport",
    "Page",
    "PropagationError",
    "decode_page",
    "decode_purge",
    "encode_page",
    "encode_purge",
    "parse_cursor",
]

PURGE_PATH = "/_edge/purge"
PURGES_PATH = "/_edge/purges"
CONTENT_TYPE = "application/msgpack"


class PropagationError(Exception):
    """A peer did not take or give purges; the message names the peer and why."""


def encode_purge(purge: Purge) -> bytes:
    """One purge as a msgpack body."""
    return msgpack.packb(pack_purge(purge), use_bin_type=True)  # type: ignore[no-any-return]


def decode_purge(data: bytes | None) -> Purge:
    """Parses encode_purge's body; raises ValueError on anything else."""
    if not data:
        raise ValueError("empty body; expected one msgpack purge")
    try:
        return unpack_purge(msgpack.unpackb(data, raw=False, use_list=True))
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise ValueError(f"undecodable purge: {exc}") from exc


class Page:
    """One catch-up answer: purges the asker was missing, and whether more remain."""

    __slots__ = ("more", "node", "purges")

    def __init__(self, node: str, purges: Sequence[Purge], more: bool) -> None:
        self.node = node
        self.purges = purges
        self.more = more


def encode_page(node: str, purges: Sequence[Purge], more: bool) -> bytes:
    """A catch-up page as a msgpack body."""
    page = {"node": node, "purges": [pack_purge(p) for p in purges], "more": more}
    encoded: bytes = msgpack.packb(page, use_bin_type=True)
    return encoded


def decode_page(data: bytes) -> Page:
    """Parses encode_page's body; raises ValueError on anything else."""
    try:
        obj = msgpack.unpackb(data, raw=False, use_list=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise ValueError(f"undecodable page: {exc}") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("purges"), list):
        raise ValueError("a page is a map with a purges list")
    return Page(str(obj.get("node", "")), [unpack_purge(p) for p in obj["purges"]], bool(obj.get("more")))


def cursor_query(cursor: Mapping[str, int]) -> str:
    """The query string carrying a cursor."""
    return urllib.parse.urlencode({"cursor": json.dumps(dict(cursor), separators=(",", ":"))})


def parse_cursor(target: str) -> dict[str, int]:
    """The cursor in a GET /_edge/purges target; raises ValueError when malformed."""
    query = urllib.parse.parse_qs(target.partition("?")[2])
    raw = query.get("cursor", ["{}"])[0]
    cursor = json.loads(raw)
    if not isinstance(cursor, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
        for k, v in cursor.items()
    ):
        raise ValueError("cursor must be a JSON object of node name -> sequence number")
    return cursor


class HttpPurgeTransport:
    """Sends purges to peers and fetches what this node missed, over their internal listeners."""

    def __init__(self, session: aiohttp.ClientSession, *, secret: str, self_name: str) -> None:
        self._session = session
        self._headers = {SECRET_HEADER: secret, HOP_HEADER: self_name}

    async def send(self, peer: PeerConfig, purge: Purge, timeout_s: float) -> None:
        """POSTs one purge; returns once the peer has journaled and applied it."""
        headers = {**self._headers, "Content-Type": CONTENT_TYPE}
        await self._call("POST", peer, PURGE_PATH, encode_purge(purge), headers, timeout_s)

    async def fetch(self, peer: PeerConfig, cursor: Mapping[str, int], timeout_s: float) -> Page:
        """GETs the purges the peer has beyond `cursor` (one page)."""
        body = await self._call(
            "GET", peer, f"{PURGES_PATH}?{cursor_query(cursor)}", None, self._headers, timeout_s
        )
        try:
            return decode_page(body)
        except ValueError as exc:
            raise PropagationError(f"peer {peer.name}: {exc}") from exc

    async def _call(
        self,
        method: str,
        peer: PeerConfig,
        target: str,
        data: bytes | None,
        headers: Mapping[str, str],
        timeout_s: float,
    ) -> bytes:
        url = peer.internal_url + target
        try:
            async with self._session.request(
                method, url, data=data, headers=dict(headers), timeout=aiohttp.ClientTimeout(total=timeout_s)
            ) as response:
                body = await response.read()
                if response.status != 200:
                    reason = body[:200].decode("utf-8", "replace").strip()
                    raise PropagationError(
                        f"peer {peer.name}: {method} {target.partition('?')[0]} answered "
                        f"{response.status} {reason}"
                    )
                return body
        except TimeoutError as exc:
            raise PropagationError(f"peer {peer.name}: no answer within {timeout_s:g}s") from exc
        except aiohttp.ClientError as exc:
            raise PropagationError(f"peer {peer.name}: {type(exc).__name__}: {exc}") from exc
