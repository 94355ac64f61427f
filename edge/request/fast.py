"""The fast path: a fresh memory hit answered from the parser callback, with no task or await.

`FastPath.try_fast` runs for every plain GET/HEAD before a Request object exists, so it
stays allocation-light: it hashes the request's own bytes with the key's hash
(`edge.rules.key.url_id`), peeks the memory tier (then, in a region, the hot copies of keys
other nodes own: edge.peering.routing, in the slow path's order), selects a Vary variant
straight from the raw header bytes, and returns a prebuilt response (`FastHeads`). Anything
it cannot answer alone (no entry, stale, purge rules pending, a normalised query) it
declines with None and the slow path (`Handler.handle`) takes the request.

Counting stays as cheap as the rest: the hit adds to a counter cell looked up by the raw
Host bytes (the route is memoised per host when the host's route ignores the path), and to
the hit-latency histogram, both plain ints (edge.metrics.counts); a hot-copy hit is counted
under the "hot" tier as the slow path counts it. The duration it reports
runs from the parsed request head to the response being handed to the listener.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping

from edge.fill.keep import VARY_MARKER_STATUS
from edge.metrics.counts import LATENCY_BOUNDS_S, Cell, RequestCounts
from edge.purge.invalidate import Invalidator
from edge.request.deliver import FastHeads
from edge.rules.accept_encoding import normalise_raw_accept_encoding
from edge.rules.host import is_normal_host
from edge.rules.key import url_id, variant_id
from edge.rules.outcome import CacheOutcome
from edge.rules.site_policy import PolicySet
from edge.server.accesslog import AccessLog
from edge.store.memory import MemoryStore
from origin.routes import Router

__all__ = ["FastAnswer", "FastPath", "FirstFields"]

# try_fast's shape: (head_only, host, target, raw header fields, peer) → the response or None
FastAnswer = Callable[
    [bool, bytes, bytes, list[tuple[bytes, bytes]], str], bytes | tuple[bytes, bytes] | None
]

_perf = time.perf_counter
_MAX_MEMO_HOSTS = 1024  # hosts whose route is memoised; the memo starts over beyond it
_FIRST_BOUND_S = LATENCY_BOUNDS_S[0]  # nearly every fast hit falls in the first bucket: skip bisect
# FastPath._hosts' values: the key prefix, the route's fast hit cell and the route's pool (None:
# the path decides the route)
_Known = tuple[bytes | None, Cell | None, str | None]


class FastPath:
    """Answers fresh memory hits synchronously; declines everything else."""

    def __init__(
        self,
        *,
        memory: MemoryStore,
        heads: FastHeads,
        policies: PolicySet,
        purges: Invalidator,
        clock: Callable[[], float],
        access_log: AccessLog | None,
        router: Router | None = None,
        counts: RequestCounts | None = None,
        hot: MemoryStore | None = None,
    ) -> None:
        self._router = router
        self._counts = counts  # None: not counted
        # raw Host → (b"http://" + its lower-case form, or None when it is not a normal Host;
        # its ("hit", route) counter cell when the host alone decides the route, else None)
        self._hosts: dict[bytes, _Known] = {}
        if counts is not None:
            self._latency = counts.latency["hit"]
        self._peek = memory.peek
        self._record_hit = memory.record_hit
        # hot copies (a region's non-owner): looked up after the main memory tier, as _find does
        self._peek_hot = hot.peek if hot is not None else None
        self._record_hot = hot.record_hit if hot is not None else None
        self._heads = heads  # shared with the handler, which drops entries it invalidates
        self._policies = policies
        self._purges = purges
        self._clock = clock
        self._log = access_log

    def try_fast(
        self, head_only: bool, host: bytes, target: bytes, raw_headers: list[tuple[bytes, bytes]], peer: str
    ) -> bytes | tuple[bytes, bytes] | None:
        """A fresh memory hit for a plain GET/HEAD, as prebuilt bytes; else None (slow path)."""
        started = _perf()
        if self._policies.rewrites and 63 in target:  # "?" (an int needle: see HttpProtocol.on_header)
            return None  # the key uses a normalised target: let the slow path compute it
        known = self._hosts.get(host)
        if known is None:
            known = self._learn(host)
        prefix = known[0]
        if prefix is None:
            return None  # an invalid Host (400) or one the slow path rewrites to its normal form
        now = self._clock()
        if now > self._purges.fast_until:
            return None  # purge rules pending or purge lag exceeded: the slow path checks each hit
        # peek, and count the hit only once it is served here: a declined request is looked up
        # (and counted) again by the slow path
        store_id = url_id(prefix + target)
        peek = self._peek
        hit = peek(store_id)
        if hit is None:
            peek_hot = self._peek_hot  # not in the main store: a hot copy (the slow path's order)
            if peek_hot is None:
                return None
            peek = peek_hot
            hit = peek(store_id)
            if hit is None:
                return None
        meta = hit.meta
        if meta.status == VARY_MARKER_STATUS:
            # select the variant from the raw fields, as CacheKey.variant does on the slow path
            store_id = variant_id(store_id, meta.vary, FirstFields(raw_headers, meta.vary))
            hit = peek(store_id)  # in the marker's store, as _find looks
            if hit is None:
                return None
            meta = hit.meta
        if meta.status < 100:
            return None  # a sliced object's record (issue 14): the slow path serves its slices
        response = self._heads.get(meta, hit.body, now, head_only)
        if response is None:
            return None
        hot = peek is not self._peek
        if hot:
            assert self._record_hot is not None
            self._record_hot(store_id)
        else:
            self._record_hit(store_id)
        size = 0 if head_only else len(hit.body)
        seconds = _perf() - started
        counts = self._counts
        if counts is not None:
            latency = self._latency
            latency.buckets[0 if seconds <= _FIRST_BOUND_S else bisect_left(LATENCY_BOUNDS_S, seconds)] += 1
            latency.sum += seconds
            if hot:  # counted as the slow path counts a hot-copy hit: bytes under the "hot" tier
                route = known[2]
                cell = counts.cell("hit", route if route is not None else self._route(host, target))
                counts.bytes_by_tier["hot"] += size
            else:
                cell = known[1] or self._route_cell(host, target)
            cell.count += 1
            cell.bytes += size
        if self._log is not None:
            method = "HEAD" if head_only else "GET"
            self._log.write_fast(
                peer, method, host, target, meta.status, size, CacheOutcome.HIT, seconds, raw_headers
            )
        return response

    def _learn(self, host: bytes) -> _Known:
        """What the fast path keeps of a Host it has not seen yet (memoised; the memo is bounded)."""
        if len(self._hosts) >= _MAX_MEMO_HOSTS:
            self._hosts.clear()
        known: _Known = (None, None, None)
        if is_normal_host(host):
            cell = route = None
            if self._counts is not None:
                rule = self._router.host_route(host.decode("latin-1")) if self._router is not None else None
                if self._router is None or rule is not None:  # the host alone decides the route
                    route = rule.pool if rule is not None else ""
                    cell = self._counts.fast_cell(route)
            known = (b"http://" + host.lower(), cell, route)
        self._hosts[host] = known
        return known

    def _route_cell(self, host: bytes, target: bytes) -> Cell:
        """The hit counter cell of a host whose route the path decides (looked up every time)."""
        assert self._counts is not None
        return self._counts.fast_cell(self._route(host, target))

    def _route(self, host: bytes, target: bytes) -> str:
        """The route's pool of a host whose route the path decides (looked up every time)."""
        assert self._router is not None
        rule = self._router.match(host.decode("latin-1"), target.decode("latin-1"))
        return rule.pool if rule is not None else ""


class FirstFields(Mapping[str, str]):
    """The first value of each wanted field among raw (bytes) header fields, as CIMultiDict.get gives."""

    __slots__ = ("_values",)

    def __init__(self, raw_headers: list[tuple[bytes, bytes]], wanted: tuple[str, ...]) -> None:
        self._values: dict[str, str] = {}
        for name, value in raw_headers:
            lname = name.lower().decode("latin-1")
            if lname in wanted and lname not in self._values:
                self._values[lname] = value.decode("latin-1")
        if "accept-encoding" in wanted:  # the slow path keys on the normalised value (issue 12)
            self._values["accept-encoding"] = normalise_raw_accept_encoding(raw_headers)

    def __getitem__(self, name: str) -> str:
        return self._values[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)
