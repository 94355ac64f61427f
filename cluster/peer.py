"""PeerClient: fetches a key from the node that owns it, over that node's internal listener.

It is an origin.upstream.Upstream built on origin.client.OriginClient (raw target, phase
timeouts, hop-by-hop stripping, error translation) aimed at the peer's `internal_url`. It
adds two headers: `X-Edge-Hop: <this node>`, so the owner never forwards the request again
(no loops, even when two nodes disagree about the ring), and `X-Edge-Secret`, without which
the owner's internal endpoints answer 403. Whatever the caller put in those two headers is
replaced. Errors keep their origin.errors class but name the peer: `upstream="peer:<name>"`,
inside the body iterator too. `check_secret` is the owner's side of the secret check.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator

import aiohttp

from cluster.config import PeerConfig
from cluster.internal_paths import is_internal_target
from origin.client import OriginClient
from origin.config import TimeoutConfig
from origin.errors import InvalidTarget, UpstreamError
from origin.upstream import UpstreamRequest, UpstreamResponse

__all__ = ["HOP_HEADER", "SECRET_HEADER", "PeerClient", "check_secret"]

HOP_HEADER = "X-Edge-Hop"  # name of the node that forwarded the request; never forward again
SECRET_HEADER = "X-Edge-Secret"  # the cluster secret; internal endpoints require it

_OWN_HEADERS = frozenset({HOP_HEADER.lower(), SECRET_HEADER.lower()})


def check_secret(presented: str | None, secret: str) -> bool:
    """Whether the presented secret is the cluster secret; constant-time, never true if empty."""
    if presented is None or not secret:
        return False
    # compare_digest on bytes: a str argument with non-ASCII characters would raise TypeError.
    return hmac.compare_digest(presented.encode("utf-8"), secret.encode("utf-8"))


def _renamed(exc: UpstreamError, label: str) -> UpstreamError:
    """The same error class and message, attributed to the peer."""
    return type(exc)(str(exc), upstream=label)


class PeerClient:
    """Fetches from one peer's internal listener; an Upstream."""

    __slots__ = ("_client", "_label", "_peer", "_secret", "_self_name")

    def __init__(
        self,
        peer: PeerConfig,
        *,
        self_name: str,
        secret: str,
        session: aiohttp.ClientSession,
        timeouts: TimeoutConfig,
    ) -> None:
        self._peer = peer
        self._self_name = self_name
        self._secret = secret
        self._label = f"peer:{peer.name}"
        self._client = OriginClient(peer.server, timeouts, session)

    @property
    def peer(self) -> PeerConfig:
        """The peer this client talks to."""
        return self._peer

    async def fetch(self, request: UpstreamRequest) -> UpstreamResponse:
        """Sends the request to the peer with hop and secret headers; raises UpstreamError."""
        if is_internal_target(request.target):  # issue 12: a client request never reaches /_edge/
            raise InvalidTarget("internal paths are never forwarded to a peer", upstream=self._label)
        headers = tuple((n, v) for n, v in request.headers if n.lower() not in _OWN_HEADERS)
        forwarded = UpstreamRequest(
            method=request.method,
            host=request.host,  # the owner derives the same cache key from the same Host
            target=request.target,
            headers=(*headers, (HOP_HEADER, self._self_name), (SECRET_HEADER, self._secret)),
            body=request.body,
        )
        try:
            response = await self._client.fetch(forwarded)
        except UpstreamError as exc:
            raise _renamed(exc, self._label) from exc
        return UpstreamResponse(
            status=response.status,
            reason=response.reason,
            headers=response.headers,
            request_time=response.request_time,
            response_time=response.response_time,
            body=_PeerBody(response.body, self._label),
            close=response.close,
            upstream=self._label,
        )


class _PeerBody:
    """The peer response's body iterator, with its errors attributed to the peer."""

    __slots__ = ("_inner", "_label")

    def __init__(self, inner: AsyncIterator[bytes], label: str) -> None:
        self._inner = inner
        self._label = label

    def __aiter__(self) -> _PeerBody:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self._inner.__anext__()
        except UpstreamError as exc:
            raise _renamed(exc, self._label) from exc
