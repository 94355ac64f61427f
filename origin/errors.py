"""The one error tree for talking upstream (origin servers, peers, shields).

    UpstreamError                 retryable: may another server / one more try help?
    ├── ConnectError              could not open a connection (refused, unreachable, DNS)   retryable
    ├── UpstreamTimeout           connect, first-byte or total timeout expired              retryable
    │   └── DeadlineExceeded      the request's own deadline (from the asking node) passed   not retryable
    ├── ProtocolError             malformed or truncated response from upstream             retryable
    │   └── StaleConnection       a reused keep-alive connection closed before any response  retryable
    ├── BodyError                 the body broke after the head was received               not retryable
    │   └── BodyTimeout           idle or total timeout mid-body (also an UpstreamTimeout)  not retryable
    ├── InvalidTarget             the request target cannot be sent byte-for-byte           not retryable
    ├── NoServerAvailable         no server left to try (never from health alone: panic mode) not retryable
    └── PoolSaturated             the pool runs max_in_flight fetches and its queue is full   not retryable
                                  or the wait for a slot timed out (origin/admission.py)

aiohttp and OS exceptions are translated into these where they enter (origin/client.py),
inside body iterators too, with `raise ... from exc`. The edge maps them to HTTP status in
one place: timeouts to 504, PoolSaturated to 503 with Retry-After, everything else to 502.
"""

from __future__ import annotations

__all__ = [
    "BodyError",
    "BodyTimeout",
    "ConnectError",
    "DeadlineExceeded",
    "InvalidTarget",
    "NoServerAvailable",
    "PoolSaturated",
    "ProtocolError",
    "StaleConnection",
    "UpstreamError",
    "UpstreamTimeout",
]


class UpstreamError(Exception):
    """An upstream fetch failed; `retryable` says whether another try could succeed."""

    retryable: bool = True

    def __init__(self, message: str, *, upstream: str = "") -> None:
        super().__init__(message)
        self.upstream = upstream  # which server or peer failed, for logs


class ConnectError(UpstreamError):
    """The connection could not be opened."""


class UpstreamTimeout(UpstreamError):
    """A connect, first-byte or total timeout expired."""


class DeadlineExceeded(UpstreamTimeout):
    """The deadline the request came with (origin/deadline.py) passed before a head arrived.

    Not retryable, and no verdict on the server: the node that asked stops waiting then, so
    another try or server could not help, and a server slower than someone else's deadline is
    not down.
    """

    retryable = False


class ProtocolError(UpstreamError):
    """Upstream sent a malformed or truncated response head."""


class StaleConnection(ProtocolError):
    """A reused keep-alive connection closed or reset before any byte of the response.

    The server may have closed the idle connection just as it was reused (RFC 9112 §9.3.1):
    the one failure worth trying again on the same server, on a fresh connection. A pool's
    retry policy decides whether it is (origin/pool.py); a lone OriginClient (a peer's)
    resends it once itself.
    """


class BodyError(UpstreamError):
    """The body failed after the head arrived; bytes may already be on their way to clients."""

    retryable = False


class BodyTimeout(BodyError, UpstreamTimeout):
    """The idle (between chunks) or total timeout expired while the body was streaming."""

    retryable = False


class InvalidTarget(UpstreamError):
    """The target is not origin-form ("/path?query") and cannot be sent unchanged."""

    retryable = False


class NoServerAvailable(UpstreamError):
    """No healthy server is left to try."""

    retryable = False


class PoolSaturated(UpstreamError):
    """The pool already runs its `max_in_flight` fetches and this one found no slot: the
    queue was full, or the wait for a slot ran out. Not retryable here (another try would
    queue again); clients are told to come back after `retry_after_s` seconds."""

    retryable = False

    def __init__(self, message: str, *, upstream: str = "", retry_after_s: int = 1) -> None:
        super().__init__(message, upstream=upstream)
        self.retry_after_s = retry_after_s
