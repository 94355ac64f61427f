"""Why the miss path looks the key up again, and how often it may — pure.

A fill can end in "look again" rather than in an answer: a revalidation's 304 refreshed
the stored entry (serve it from the store), a request joined a fill that is fetching
another variant of a Vary'ing object, or it joined a fill that began before a purge it
arrived after (the handler detaches that fill, so the next lookup coalesces onto a new one).
The handler then restarts its lookup in a loop, never by recursion, at most
`MAX_RESTARTS` times, and each reason has its own bound.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["MAX_RESTARTS", "RestartReason", "may_restart"]


class RestartReason(Enum):
    """Why a lookup is restarted."""

    REVALIDATED = "revalidated"  # a 304 refreshed the stored entry: serve it from the store
    VARY_MISMATCH = "vary-mismatch"  # the joined fill fetches another variant: look up again
    PURGED_FILL = "purged-fill"  # the joined fill began before a matching purge: join a new one


# Restarts allowed before a restart for this reason gives up (counted over the request).
_LIMIT = {RestartReason.REVALIDATED: 2, RestartReason.VARY_MISMATCH: 1, RestartReason.PURGED_FILL: 1}
MAX_RESTARTS = max(_LIMIT.values())


def may_restart(reason: RestartReason, restarts: int) -> bool:
    """Whether a request that has restarted `restarts` times may restart again for `reason`."""
    return restarts < _LIMIT[reason]
