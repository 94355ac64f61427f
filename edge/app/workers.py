"""A worker process of a machine that runs several (docs/workers.md): its plan and its parts.

The supervisor (edge.cli.supervisor) starts N copies of the same command with a
`WorkerPlan` in the environment. Each worker then runs an ordinary EdgeNode with these
differences, all wired here:
- its config is shaped (`WorkerPlan.shape`): 1/N of the memory and disk budgets, and only
  worker 0 (the leader) keeps the admin listener;
- its disk tier is its share of the machine's directory (edge.store.shared);
- it serves its sibling listener, an already listening socket the supervisor made and kept
  (so a restarted worker is found at the same 127.0.0.1 port), behind the worker secret;
- a miss for a key another worker owns is asked of that worker (`build_siblings`);
- purges: the leader owns the machine's one journal. Whatever it journals it applies, then
  pokes every sibling (`RelayTarget`), which reads the journal file's new records and applies
  them under the same generations (`SiblingPurges`), waits for its sweep and answers; the
  leader answers the purge once every sibling has. A purge a peer node sends to another
  worker's internal listener is handed to the leader (`LeaderForward`). The file, not the
  poke, is the source of truth, so a restarted worker catches up by reading it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp

from cluster.config import PeerConfig
from cluster.peer import PeerClient
from cluster.propagate import PurgeHub
from cluster.purge import JournalError, Purge, PurgeLog, read_journal
from cluster.purge_wire import HttpPurgeTransport, PropagationError
from edge.config.deployment import EdgeConfig
from edge.peering.routing import PeerGate
from edge.peering.workers import Siblings, owner_worker, worker_label
from edge.purge.invalidate import Invalidator
from edge.request.handler import Handler
from edge.rules.key import url_bytes, url_id
from edge.server.connections import Connections
from edge.server.protocol import HttpProtocol
from edge.store.entry import EntryMeta
from origin.config import TimeoutConfig
from origin.upstream import Upstream

__all__ = [
    "ENV",
    "LeaderForward",
    "RelayTarget",
    "SiblingPurges",
    "WorkerPlan",
    "build_siblings",
    "purge_endpoints",
    "relay_target",
    "replica_journal",
    "serve_siblings",
    "sibling_timeouts",
    "watch_parent",
]

log = logging.getLogger("edge.app.workers")

ENV = "EDGECACHE_WORKER"  # the plan, as JSON, in each worker's environment
SIBLING_HOST = "127.0.0.1"  # sibling listeners are loopback only
_LONGEST_BODY_S = 86_400.0  # a sibling's body may stream this long (its idle gap is what bounds it)


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerPlan:
    """What the supervisor tells one worker: who it is and the descriptors it inherits."""

    index: int  # 0..count-1; worker 0 is the leader (admin API, purge journal)
    count: int
    secret: str  # asked of every request on the sibling listeners (fresh per supervisor)
    ports: tuple[int, ...]  # each worker's sibling listener on 127.0.0.1, by index
    listen_fd: int  # this worker's sibling listener, already listening
    parent_fd: int  # read end of a pipe the supervisor keeps open: end of file = it is gone
    ready_fd: int  # write end: one byte once this worker serves

    @property
    def leader(self) -> bool:
        """Worker 0 keeps the admin API and the purge journal."""
        return self.index == 0

    @property
    def tmp(self) -> str:
        """This worker's tmp directory under the disk directory."""
        return f"tmp-w{self.index}"

    def owns(self, meta: EntryMeta) -> bool:
        """Whether this worker writes, evicts and purges the object on disk (its primary key's owner)."""
        return owner_worker(url_id(url_bytes(meta.url)), self.count) == self.index

    def shape(self, cfg: EdgeConfig) -> EdgeConfig:
        """The config this worker runs: its share of the budgets; the admin API only in the leader."""
        cache = replace(
            cfg.cache,
            memory_bytes=max(1, cfg.cache.memory_bytes // self.count),
            disk_bytes=max(1, cfg.cache.disk_bytes // self.count),
        )
        node = cfg.node if self.leader else replace(cfg.node, admin_host=None)
        return replace(cfg, cache=cache, node=node, nodes={**cfg.nodes, node.name: node})

    def peer(self, index: int, region: str) -> PeerConfig:
        """Sibling `index` as a peer to ask (its sibling listener)."""
        return PeerConfig(
            name=worker_label(index), region=region, internal_url=f"http://{SIBLING_HOST}:{self.ports[index]}"
        )

    def encode(self) -> str:
        """The plan as the JSON put in ENV."""
        return json.dumps(
            {
                "index": self.index,
                "count": self.count,
                "secret": self.secret,
                "ports": list(self.ports),
                "fds": [self.listen_fd, self.parent_fd, self.ready_fd],
            }
        )

    @classmethod
    def decode(cls, text: str) -> WorkerPlan:
        """Reads ENV's JSON; ValueError when it is not a plan."""
        try:
            data = json.loads(text)
            listen_fd, parent_fd, ready_fd = (int(fd) for fd in data["fds"])
            plan = cls(
                index=int(data["index"]),
                count=int(data["count"]),
                secret=str(data["secret"]),
                ports=tuple(int(p) for p in data["ports"]),
                listen_fd=listen_fd,
                parent_fd=parent_fd,
                ready_fd=ready_fd,
            )
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{ENV}: not a worker plan ({exc})") from exc
        if not 0 <= plan.index < plan.count or len(plan.ports) != plan.count or not plan.secret:
            raise ValueError(f"{ENV}: index, count and ports do not agree")
        return plan

    def announce_ready(self) -> None:
        """Tells the supervisor this worker serves (one byte on the ready pipe)."""
        try:
            os.write(self.ready_fd, bytes([self.index % 256]))
        except OSError as exc:  # the supervisor is gone: the parent pipe ends this worker
            log.warning("cannot tell the supervisor this worker is ready: %s", exc)


def sibling_timeouts(cfg: EdgeConfig) -> TimeoutConfig:
    """A sibling is asked for as long as its own fill may take to begin, and its body may idle."""
    co = cfg.coalesce
    return TimeoutConfig(
        connect_s=2.0,
        first_byte_s=co.head_timeout_s + 1.0,
        total_s=_LONGEST_BODY_S,
        idle_s=co.idle_timeout_s + 1.0,
    )


def build_siblings(plan: WorkerPlan, cfg: EdgeConfig, session: aiohttp.ClientSession | None) -> Siblings:
    """The clients that ask the other workers of this machine (over the node's client session)."""
    assert session is not None, "the node's session is opened before its handler is built"
    clients: dict[int, Upstream] = {
        i: PeerClient(
            plan.peer(i, cfg.node.region),
            self_name=f"{cfg.node.name}/{worker_label(plan.index)}",
            secret=plan.secret,
            timeouts=sibling_timeouts(cfg),
        )
        for i in range(plan.count)
        if i != plan.index
    }
    return Siblings(index=plan.index, count=plan.count, clients=clients)


async def replica_journal(path: Path | None, node_name: str) -> PurgeLog:
    """A non-leader's in-memory copy of the leader's journal file (read only, never written)."""
    journal = await PurgeLog.open(None, node_name)
    if path is not None:
        for purge in await asyncio.to_thread(read_journal, path):
            await journal.record(purge)
    return journal


def relay_target(
    plan: WorkerPlan, cfg: EdgeConfig, invalidator: Invalidator, session: aiohttp.ClientSession
) -> RelayTarget:
    """The leader's purge target: its invalidator, then every sibling."""
    transport = HttpPurgeTransport(session, secret=plan.secret, self_name=cfg.node.name)
    siblings = [plan.peer(i, cfg.node.region) for i in range(plan.count) if i != plan.index]
    return RelayTarget(invalidator, transport, siblings, cfg.admin.purge_timeout_s)


def purge_endpoints(
    plan: WorkerPlan | None,
    cfg: EdgeConfig,
    hub: PurgeHub,
    invalidator: Invalidator,
    session: aiohttp.ClientSession | None,
) -> tuple[PurgeEndpoint, PurgeEndpoint]:
    """Who takes purge traffic on the internal and the sibling listener (the hub, but in a non-leader)."""
    if plan is None or plan.leader:
        return hub, hub
    assert session is not None, "the node's session is opened before purging is wired"
    transport = HttpPurgeTransport(session, secret=plan.secret, self_name=cfg.node.name)
    timeout = cfg.admin.purge_timeout_s
    journal = cfg.state_dir / "journal" if cfg.state_dir is not None else None
    return (
        LeaderForward(hub, transport, plan.peer(0, cfg.node.region), timeout * 2),
        SiblingPurges(hub, invalidator, journal, timeout),
    )


class RelayTarget:
    """The leader's PurgeTarget: apply here, then on every sibling; return once all swept or timed out."""

    def __init__(
        self,
        invalidator: Invalidator,
        transport: HttpPurgeTransport,
        siblings: Sequence[PeerConfig],
        timeout_s: float,
    ) -> None:
        self._invalidator = invalidator
        self._transport = transport
        self._siblings = tuple(siblings)
        self._timeout_s = timeout_s

    async def apply(self, purge: Purge, gen: int) -> int:
        """Applies the journaled purge in every worker of the machine."""
        removed = await self._invalidator.apply(purge, gen)
        results = await asyncio.gather(
            *(self._transport.send(p, purge, self._timeout_s) for p in self._siblings),
            self._swept(),
            return_exceptions=True,
        )
        for sibling, result in zip(self._siblings, results, strict=False):
            if isinstance(result, PropagationError):
                # a dead or restarting sibling reads the journal before it serves again
                log.warning("purge %s not confirmed by %s: %s", purge.id, sibling.name, result)
            elif isinstance(result, BaseException):
                raise result
        return removed

    async def _swept(self) -> None:
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._invalidator.wait_swept()
        except TimeoutError:
            log.warning("purge sweep still running after %.1fs; the lazy check covers it", self._timeout_s)


class SiblingPurges:
    """A non-leader's purge endpoint on its sibling listener: catch up from the journal file."""

    def __init__(
        self, hub: PurgeHub, invalidator: Invalidator, journal: Path | None, timeout_s: float
    ) -> None:
        self.self_name = hub.self_name
        self._hub = hub
        self._invalidator = invalidator
        self._journal = journal  # None: the leader keeps no file; the poke's purge is applied
        self._timeout_s = timeout_s
        self._lock = asyncio.Lock()  # one catch-up at a time: records apply in journal order

    async def receive(self, purge: Purge) -> int | None:
        """The leader's poke: apply the journal's new records, wait (bounded) for the sweep."""
        if self._journal is None:
            gen = await self._hub.receive(purge)
        else:
            async with self._lock:
                records = await asyncio.to_thread(read_journal, self._journal)
                for record in records[self._hub.log.generation :]:
                    await self._hub.receive(record)
                gen = self._hub.log.generation
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._invalidator.wait_swept()
        except TimeoutError:
            log.warning("purge %s: sweep still running; the lazy check covers it", purge.id)
        return gen

    def missing(
        self, cursor: Mapping[str, int], limit: int = 1000, *, asker: str | None = None
    ) -> tuple[Sequence[Purge], bool]:
        """What a peer lacks, from this worker's copy of the journal."""
        return self._hub.missing(cursor, limit, asker=asker)


class LeaderForward:
    """A non-leader's purge endpoint on the internal listener: peers' purges go to the leader."""

    def __init__(
        self, hub: PurgeHub, transport: HttpPurgeTransport, leader: PeerConfig, timeout_s: float
    ) -> None:
        self.self_name = hub.self_name
        self._hub = hub
        self._transport = transport
        self._leader = leader
        self._timeout_s = timeout_s

    async def receive(self, purge: Purge) -> int | None:
        """Hands the purge to the leader, which journals it and applies it in every worker."""
        try:
            await self._transport.send(self._leader, purge, self._timeout_s)
        except PropagationError as exc:
            raise JournalError(f"the leader worker did not take the purge: {exc}") from exc
        return None

    def missing(
        self, cursor: Mapping[str, int], limit: int = 1000, *, asker: str | None = None
    ) -> tuple[Sequence[Purge], bool]:
        """What a peer lacks, from this worker's copy of the journal (the leader's, as of its last poke)."""
        return self._hub.missing(cursor, limit, asker=asker)


PurgeEndpoint = PurgeHub | SiblingPurges | LeaderForward  # what a PeerGate hands purge traffic to


async def serve_siblings(
    plan: WorkerPlan,
    handler: Handler,
    purges: PurgeEndpoint,
    cfg: EdgeConfig,
    nofile: int,
    tasks: set[asyncio.Task[None]],
) -> tuple[asyncio.Server, PeerGate]:
    """Serves the sibling listener the supervisor made (inherited, already listening), and its gate."""
    gate = PeerGate(handler.for_peers(), plan.secret, purges=purges)
    conns = Connections.for_listener(cfg.server, nofile)
    sock = socket.socket(fileno=plan.listen_fd)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: HttpProtocol(gate, cfg.limits, tasks, conns), sock=sock)
    return server, gate


async def watch_parent(plan: WorkerPlan, gone: Callable[[], None]) -> None:
    """Calls `gone` when the supervisor's end of the parent pipe closes (it died: drain and exit)."""
    loop = asyncio.get_running_loop()
    ended = asyncio.Event()
    loop.add_reader(plan.parent_fd, ended.set)
    try:
        await ended.wait()
    finally:
        loop.remove_reader(plan.parent_fd)
    log.error("worker %d: the supervisor is gone; stopping", plan.index)
    gone()
