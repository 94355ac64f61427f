"""The invalidator: applies purges to this node's stores without scanning them on the request path.

After Varnish's ban list. Applying a purge records a rule (its local generation, what it
matches, hard or soft) and returns; a URL purge also removes the URL's primary key from
every store at once. A background sweep then walks the stores and removes (hard) or marks
stale (soft) every match; while a rule waits for its sweep, every lookup checks the entry
lazily (`check`). An entry is covered by a rule only if its fill began before the rule
arrived (`EntryMeta.purge_gen < rule.gen`): a fill that began after it carries newer bytes.

Fill versus purge: a fill registers its start generation (`begin_fill`); at commit the
filler asks `admits(meta)`, false when a matching rule arrived during the fill, and the
body is not stored (its waiters still get it); it asks again once the commit is published
and removes the entry if a rule arrived meanwhile, since the sweep may have walked past the
key before it existed and the rule is dropped when the fill ends. A request that joins a fill asks
`admits(meta, began=...)` with the fill's real start generation: only a fill that began
here before a matching purge is the purged version, and the handler then starts one new
fill for every request that arrives after the purge (edge.fill.coalesce `detach`). Rules
stay listed while any fill older than them runs, so that check and the lazy check never
miss one. A fill from a peer may carry
bytes the peer held before the purge reached it, so it counts as begun `peer_window_s`
earlier.

Trust: when the purge-lag watchdog (cluster.propagate) says this node may have missed
purges, `check` answers UNTRUSTED for every entry and the handler revalidates it.
`fast_until` folds "no rule pending" and "trusted" into one number the fast path compares
with its clock. Restart: the last generation whose sweep finished is kept in a small file;
rules after it are applied again before the node serves.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from cluster.purge import Purge, PurgeKind
from edge.rules.key import make_key
from edge.store.base import RemoveReason, Store
from edge.store.entry import EntryMeta

__all__ = ["Invalidator", "Rule", "Verdict", "url_host"]

log = logging.getLogger("edge.purge.invalidate")

_YIELD_EVERY = 2000  # entries a sweep examines between yields to the event loop


class Verdict(Enum):
    """What the purge state says about one stored entry."""

    VALID = "valid"
    SOFT = "soft"  # a soft purge covers it: serve only as stale (revalidate; swr applies)
    PURGED = "purged"  # a hard purge covers it: treat as absent and remove it
    UNTRUSTED = "untrusted"  # purges may have been missed: revalidate before serving


def url_host(url: str) -> str:
    """The host[:port] of a normalised "scheme://host/target" URL."""
    rest = url.partition("://")[2]
    return rest.partition("/")[0]


@dataclass(frozen=True, slots=True)
class Rule:
    """One applied purge as a predicate over EntryMeta."""

    gen: int  # local arrival generation
    kind: PurgeKind
    value: str
    host: str
    soft: bool
    arrived: float  # clock() when it was applied

    @classmethod
    def of(cls, purge: Purge, gen: int, now: float) -> Rule:
        """The rule for a purge that arrived at `now` as generation `gen`."""
        return cls(gen, purge.kind, purge.value, purge.host, purge.soft, now)

    def matches(self, meta: EntryMeta) -> bool:
        """Whether the rule names this entry (its generation is not considered)."""
        kind = self.kind
        if kind is PurgeKind.URL:
            return meta.url == self.value
        if kind is PurgeKind.PREFIX:
            return meta.url.startswith(self.value)
        if kind is PurgeKind.TAG and self.value not in meta.tags:
            return False  # the cheap test first: most entries do not carry the tag
        return url_host(meta.url) == self.host


class Invalidator:
    """This node's purge state; implements cluster.purge.PurgeTarget."""

    def __init__(
        self,
        stores: Sequence[Store],
        *,
        state_path: Path | None = None,
        peer_window_s: float = 0.0,
        clock: Callable[[], float] = time.time,
        executor: Executor | None = None,
        normalise_url: Callable[[str], str] = lambda url: url,
    ) -> None:
        # a purged URL is put in the form keys use (lower-case host, the policy's query handling)
        self._normalise_url = normalise_url
        self._stores = tuple(stores)  # the main TieredStore, and the hot-copy store if any
        self._state_path = state_path  # holds swept_through; None: not kept (memory-only node)
        self._peer_window_s = peer_window_s
        self._clock = clock  # wall clock, the handler's
        self._executor = executor
        self.generation = 0  # the last applied purge's generation; fills record it at start
        self.swept_through = 0  # every rule up to this generation has been swept
        self.trusted_until = math.inf  # set by the purge-lag watchdog; inf for a lone node
        self.fast_until = math.inf  # the fast path may answer while clock() <= this
        self._pending: list[Rule] = []  # rules the lazy check applies (unswept, or older fills run)
        self._unswept: list[Rule] = []  # rules the sweeper has not finished
        self._recent: deque[Rule] = deque()  # rules applied within peer_window_s (peer fills)
        self._fills: dict[int, int] = {}  # start generation -> running fills
        self._wake = asyncio.Event()  # set when a rule is waiting for the sweeper
        self._idle = asyncio.Event()  # set while every rule is swept
        self._idle.set()
        self._sweeper: asyncio.Task[None] | None = None
        self.removed = 0  # entries removed or marked stale by purges

    # -- lifecycle ------------------------------------------------------------------------
    async def load(self, journal_generation: int) -> None:
        """Reads swept_through; a cache newer than the journal (journal lost) is dropped whole."""
        if self._state_path is not None:
            path = self._state_path
            text = await asyncio.get_running_loop().run_in_executor(
                self._executor, lambda: path.read_text() if path.exists() else "0"
            )
            self.swept_through = int(text.strip() or "0")
        if self.swept_through > journal_generation:
            log.error(
                "purge journal has %d purges but the cache was swept through %d: the journal was lost; "
                "dropping every cached object",
                journal_generation,
                self.swept_through,
            )
            for store in self._stores:
                for meta in store.entries():
                    await store.remove(meta.key, RemoveReason.PURGE)
            self.swept_through = 0
        self.generation = self.swept_through

    def start(self) -> None:
        """Starts the background sweeper."""
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_loop(), name="purge-sweep")

    async def close(self) -> None:
        """Stops the sweeper."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.wait([self._sweeper])
            self._sweeper = None

    async def wait_swept(self) -> None:
        """Returns once every applied rule has been swept (the sweeper must be running)."""
        await self._idle.wait()

    def set_trusted_until(self, deadline: float) -> None:
        """The watchdog's verdict: entries are trusted while clock() <= deadline."""
        self.trusted_until = deadline
        self._update_fast()

    # -- PurgeTarget ----------------------------------------------------------------------
    async def apply(self, purge: Purge, gen: int) -> int:
        """Records the rule (fills started from now on are newer) and removes a URL's primary key."""
        if gen <= self.generation:
            return 0  # already applied (replayed after a restart)
        self.generation = gen
        rule = Rule.of(purge, gen, self._clock())
        if rule.kind is PurgeKind.URL or rule.kind is PurgeKind.PREFIX:
            rule = dataclasses.replace(rule, value=self._normalise_url(rule.value))
        self._pending.append(rule)
        self._unswept.append(rule)
        self._recent.append(rule)
        self._trim_recent()
        self._update_fast()
        removed = 0
        if rule.kind is PurgeKind.URL:
            scheme, _, rest = rule.value.partition("://")
            host, slash, target = rest.partition("/")
            key = make_key(scheme, host, slash + target).id
            for store in self._stores:
                removed += await self._invalidate(store, key, rule.soft, None)
        self._idle.clear()
        self._wake.set()
        log.info(
            "purge %s (%s %s%s) applied as generation %d",
            purge.id,
            rule.kind.value,
            rule.value,
            " soft" if rule.soft else "",
            gen,
        )
        return removed

    # -- request path ---------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Rules the lazy check currently applies."""
        return len(self._pending)

    def check(self, meta: EntryMeta, now: float) -> Verdict:
        """The lazy check of a looked-up entry against pending rules and the watchdog."""
        soft = False
        gen = meta.purge_gen
        for rule in self._pending:
            if rule.gen > gen and rule.matches(meta):
                if not rule.soft:
                    return Verdict.PURGED
                soft = True
        if now > self.trusted_until:
            return Verdict.UNTRUSTED
        return Verdict.SOFT if soft else Verdict.VALID

    # -- fills ----------------------------------------------------------------------------
    def begin_fill(self, *, from_peer: bool) -> int:
        """Registers a starting fill; returns the generation to store in its EntryMeta."""
        gen = self.generation
        self._trim_recent()
        if from_peer and self._recent:
            gen = min(gen, self._recent[0].gen - 1)
        self._fills[gen] = self._fills.get(gen, 0) + 1
        return gen

    def end_fill(self, gen: int) -> None:
        """The fill registered with `gen` ended (stored, refused or failed)."""
        left = self._fills.get(gen, 0) - 1
        if left > 0:
            self._fills[gen] = left
        else:
            self._fills.pop(gen, None)
            self._prune()

    def admits(self, meta: EntryMeta, *, began: int | None = None) -> bool:
        """Whether a fill's entry may be stored: no matching purge arrived since it began.

        `began` asks instead about this node's generation when the fill began (a peer fill's
        meta counts as older, see begin_fill): whether requests that arrive now may read it.
        """
        gen = meta.purge_gen if began is None else began
        for rules in (self._pending, self._recent):
            for rule in rules:
                if rule.gen > gen and rule.matches(meta):
                    return False
        return True

    def hard_purged(self, meta: EntryMeta) -> bool:
        """Whether a hard purge matching `meta` arrived after it was stored (soft ones do not count)."""
        for rules in (self._pending, self._recent):
            for rule in rules:
                if not rule.soft and rule.gen > meta.purge_gen and rule.matches(meta):
                    return True
        return False

    # -- sweeping -------------------------------------------------------------------------
    async def _sweep_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch = list(self._unswept)
            if not batch:
                continue
            started = time.monotonic()
            count = await self.sweep(batch)
            done = {rule.gen for rule in batch}
            self._unswept = [rule for rule in self._unswept if rule.gen not in done]
            self._prune()
            await self._save()
            if not self._unswept:
                self._idle.set()
            log.info(
                "swept %d purge rules: %d entries invalidated in %.3fs",
                len(batch),
                count,
                time.monotonic() - started,
            )

    async def sweep(self, rules: Sequence[Rule]) -> int:
        """Walks every store once and applies the rules to each entry they cover."""
        count = 0
        seen = 0
        for store in self._stores:
            for meta in store.entries():
                seen += 1
                if seen % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)
                hard = soft = False
                for rule in rules:
                    if rule.gen > meta.purge_gen and rule.matches(meta):
                        hard = hard or not rule.soft
                        soft = True
                if hard or (soft and not meta.invalidated):
                    count += await self._invalidate(store, meta.key, not hard, meta)
        return count

    async def _invalidate(self, store: Store, key: bytes, soft: bool, meta: EntryMeta | None) -> int:
        if not soft:
            removed = await store.remove(key, RemoveReason.PURGE)
        elif meta is not None:
            removed = await store.update_meta(key, meta.replace(invalidated=True), expect=meta)
        else:
            hit = await store.lookup(key)
            if hit is None:
                return 0
            await hit.close()
            removed = await store.update_meta(key, hit.meta.replace(invalidated=True), expect=hit.meta)
        self.removed += removed
        return int(removed)

    def _prune(self) -> None:
        """Drops swept rules that no running fill is older than."""
        oldest = min(self._fills) if self._fills else math.inf
        unswept = {rule.gen for rule in self._unswept}
        self._pending = [r for r in self._pending if r.gen in unswept or r.gen > oldest]
        self._update_fast()

    def _trim_recent(self) -> None:
        horizon = self._clock() - self._peer_window_s
        while self._recent and self._recent[0].arrived < horizon:
            self._recent.popleft()

    def _update_fast(self) -> None:
        self.fast_until = -math.inf if self._pending else self.trusted_until

    async def _save(self) -> None:
        through = min((rule.gen for rule in self._unswept), default=self.generation + 1) - 1
        if through <= self.swept_through:
            return
        self.swept_through = through
        if self._state_path is not None:
            await asyncio.get_running_loop().run_in_executor(
                self._executor, _write_atomic, self._state_path, str(through)
            )


def _write_atomic(path: Path, text: str) -> None:
    """Runs in an executor: tmp file, fsync, rename, fsync of the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
