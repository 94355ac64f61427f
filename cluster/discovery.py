"""Region membership from DNS: re-resolves a name at an interval and tells Membership who came and went.

    A     the A and AAAA records of a name (a headless Service): each address + `port` is a
          node named "address:port" (pod addresses change on restart, so its keys move)
    SRV   the SRV records (`_peer._tcp.<service>`): each target + its port is a node named by
          the target's first label, e.g. edgecache-eu-0 for a StatefulSet's pod (stable names)

A node that appears is added to Membership, which keeps it out of the ring until
`recover_after` good probes; a node missing from `fail_after` answers in a row is removed. A
failed lookup (timeout, SERVFAIL, no server) changes nothing: a DNS hiccup never empties a
ring. This node (its name or its internal URL) and nodes configured in `[nodes.*]` are never
touched. Resolution uses dnspython's asyncio resolver, so it never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum, StrEnum

import dns.asyncresolver
import dns.exception
import dns.resolver

from cluster.config import PeerConfig
from cluster.members import Membership

__all__ = ["DiscoveryConfig", "DnsDiscovery", "LookupOutcome", "Plan", "RecordType", "plan", "to_peers"]

_log = logging.getLogger(__name__)


class RecordType(StrEnum):
    """Which records name the region's nodes; the value is config.toml's."""

    A = "A"  # A and AAAA
    SRV = "SRV"


class LookupOutcome(Enum):
    """What one lookup told us."""

    ANSWER = "answer"  # records (maybe none): the set of nodes is what they say
    FAILED = "failed"  # timeout, SERVFAIL, unreachable server: nothing is concluded


@dataclass(frozen=True, slots=True, kw_only=True)
class DiscoveryConfig:
    """`[regions.NAME] discover*` keys: where a region's nodes are published in DNS."""

    region: str
    name: str  # the DNS name to resolve
    record: RecordType = RecordType.A
    port: int = 0  # the internal port of every node, for A records (SRV records carry theirs)
    interval_s: float = 10.0  # re-resolve this often
    timeout_s: float = 2.0  # one lookup, all its tries
    nameservers: tuple[tuple[str, int], ...] = ()  # (address, port); () = the system's resolv.conf
    fail_after: int = 3  # answers in a row without a node before it is removed

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("name must not be empty")
        if self.record is RecordType.A and not 0 < self.port < 65536:
            raise ValueError("port must be given (1-65535) for A records")
        if not (self.interval_s > 0 and self.timeout_s > 0) or self.fail_after < 1:
            raise ValueError("interval_s and timeout_s must be > 0 and fail_after >= 1")
        if len({port for _, port in self.nameservers}) > 1:
            raise ValueError("every nameserver must use the same port")


def to_peers(region: str, records: Sequence[tuple[str, int]], record: RecordType) -> tuple[PeerConfig, ...]:
    """The nodes that (host or address, port) records name — pure."""
    peers: dict[str, PeerConfig] = {}
    for host, port in records:
        host = host.rstrip(".")
        if record is RecordType.SRV:
            name, url = host.split(".", 1)[0], f"http://{host}:{port}"
        else:
            bracketed = f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
            name = url_host = f"{bracketed}:{port}"
            url = f"http://{url_host}"
        peers.setdefault(name, PeerConfig(name=name, region=region, internal_url=url))
    return tuple(peers[name] for name in sorted(peers))


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do after one answer."""

    join: tuple[PeerConfig, ...]
    leave: tuple[str, ...]
    missed: Mapping[str, int] = field(default_factory=dict)  # per known discovered node: answers without it


def plan(missed: Mapping[str, int], found: Sequence[PeerConfig], fail_after: int) -> Plan:
    """Who joins (new in the answer) and who leaves (absent `fail_after` answers in a row) — pure."""
    names = {p.name for p in found}
    join = tuple(p for p in found if p.name not in missed)
    counts = {name: 0 if name in names else count + 1 for name, count in missed.items()}
    leave = tuple(sorted(name for name, count in counts.items() if count >= fail_after))
    for name in leave:
        del counts[name]
    counts.update({p.name: 0 for p in join})
    return Plan(join=join, leave=leave, missed=counts)


class DnsDiscovery:
    """Keeps one region's discovered nodes in Membership; `on_join`/`on_leave` let the node
    build and drop its peer clients."""

    def __init__(
        self,
        config: DiscoveryConfig,
        membership: Membership,
        *,
        self_name: str,
        self_url: str | None,
        on_join: Callable[[PeerConfig], object] = lambda peer: None,
        on_leave: Callable[[str], object] = lambda name: None,
    ) -> None:
        self._config = config
        self._members = membership
        self._self = (self_name, (self_url or "").rstrip("/"))
        self._on_join = on_join
        self._on_leave = on_leave
        self._missed: dict[str, int] = {}  # the nodes this discovery added, and answers without them
        self._resolver = dns.asyncresolver.Resolver(configure=not config.nameservers)
        if config.nameservers:
            self._resolver.nameservers = [address for address, _ in config.nameservers]
            self._resolver.port = config.nameservers[0][1]
        self._resolver.lifetime = config.timeout_s
        self._resolver.timeout = config.timeout_s
        self._task: asyncio.Task[None] | None = None
        self.lookups = {outcome: 0 for outcome in LookupOutcome}  # for status

    @property
    def discovered(self) -> tuple[str, ...]:
        """The names of the nodes this discovery currently tracks."""
        return tuple(sorted(self._missed))

    async def lookup(self) -> tuple[LookupOutcome, tuple[tuple[str, int], ...]]:
        """One resolution: the (host, port) records, or FAILED."""
        cfg = self._config
        types = ("SRV",) if cfg.record is RecordType.SRV else ("A", "AAAA")
        records: list[tuple[str, int]] = []
        for rdtype in types:
            try:
                answer = await self._resolver.resolve(cfg.name, rdtype, search=False)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                continue  # the name has no such records: an answer, with no nodes in it
            except dns.exception.DNSException as exc:
                _log.warning("discovery of %s (%s %s) failed: %s", cfg.region, rdtype, cfg.name, exc)
                return LookupOutcome.FAILED, ()
            for rr in answer:
                if rdtype == "SRV":
                    records.append((rr.target.to_text(), int(rr.port)))
                else:
                    records.append((rr.address, cfg.port))
        return LookupOutcome.ANSWER, tuple(records)

    async def resolve_once(self) -> LookupOutcome:
        """Looks the name up once and applies what it says to Membership."""
        outcome, records = await self.lookup()
        self.lookups[outcome] += 1
        if outcome is LookupOutcome.FAILED:
            return outcome
        found = [
            p
            for p in to_peers(self._config.region, records, self._config.record)
            if p.name != self._self[0] and p.internal_url != self._self[1]
        ]
        # configured nodes (and any another discovery added) are not ours to add or remove
        found = [p for p in found if p.name in self._missed or self._members.peer(p.name) is None]
        step = plan(self._missed, found, self._config.fail_after)
        self._missed = dict(step.missed)
        for name in step.leave:
            self._members.remove_peer(name)
            self._on_leave(name)
        for peer in step.join:
            self._on_join(peer)
            self._members.add_peer(peer)
        return outcome

    async def run(self) -> None:
        """Resolves every `interval_s` until cancelled."""
        while True:
            try:
                await self.resolve_once()
            except Exception:  # a bug here must not end discovery for good
                _log.exception("discovery of region %s failed", self._config.region)
            await asyncio.sleep(self._config.interval_s)

    def start(self) -> None:
        """Starts `run()` as a task this object owns; call from a running loop."""
        self._task = asyncio.get_running_loop().create_task(
            self.run(), name=f"discovery:{self._config.region}"
        )

    async def stop(self) -> None:
        """Cancels the task and waits for it to end."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
