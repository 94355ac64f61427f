"""Purging: the journal, the invalidator that applies purges to the stores, the hub that spreads them."""

from __future__ import annotations

import logging

import aiohttp

from cluster.propagate import PurgeHub
from cluster.purge import PurgeLog
from cluster.purge_wire import HttpPurgeTransport
from edge.app.startup import StartupError
from edge.app.workers import WorkerPlan, relay_target, replica_journal
from edge.config.deployment import EdgeConfig
from edge.purge.invalidate import Invalidator
from edge.rules.site_policy import PolicySet, key_url_form
from edge.store.base import Store
from edge.store.tiered import TieredStore

__all__ = ["build_purging", "catch_up"]

log = logging.getLogger("edge.app")


async def build_purging(
    cfg: EdgeConfig,
    store: TieredStore,
    stores: list[Store],
    session: aiohttp.ClientSession,
    worker: WorkerPlan | None = None,
) -> tuple[Invalidator, PurgeHub]:
    """Opens the purge journal, re-applies purges not yet swept, and builds the hub.

    `stores` are the ones purges apply to (the tiered store, and the hot-key store in a
    region). A journal or sweep state that cannot be read is a StartupError.
    """
    state = cfg.state_dir
    sync = cfg.purge_sync
    # a peer's copy may predate a purge that had not reached it yet: see edge.purge.invalidate
    window = sync.max_lag_s + sync.sync_interval_s + cfg.admin.purge_timeout_s
    replica = worker is not None and not worker.leader  # reads the leader's journal (edge.app.workers)
    swept = f"swept-w{worker.index}" if worker is not None and replica else "swept"
    invalidator = Invalidator(
        stores,
        state_path=state / swept if state is not None else None,
        peer_window_s=window,
        normalise_url=key_url_form(PolicySet(cfg.policies)),
    )
    try:
        if replica:
            journal = await replica_journal(state / "journal" if state is not None else None, cfg.node.name)
        else:
            journal = await PurgeLog.open(state / "journal" if state is not None else None, cfg.node.name)
        await invalidator.load(journal.generation)
    except OSError as exc:
        raise StartupError(
            f"purge state in {state}: {exc.strerror or exc} on {exc.filename or state}; make "
            f"nodes.{cfg.node.name}.state_dir (default <disk_dir>/purge) a writable directory"
        ) from exc
    for gen, purge in journal.after(invalidator.swept_through):
        await invalidator.apply(purge, gen)
    invalidator.start()
    peers = cfg.peers if cfg.cluster is not None and cfg.node.internal_url is not None and not replica else ()
    transport = HttpPurgeTransport(
        session, secret=cfg.cluster.secret if cfg.cluster else "", self_name=cfg.node.name
    )
    hub = PurgeHub(
        journal,
        invalidator if worker is None or replica else relay_target(worker, cfg, invalidator, session),
        invalidator,
        self_name=cfg.node.name,
        peers=peers,
        transport=transport,
        sync_interval_s=sync.sync_interval_s,
        max_lag_s=sync.max_lag_s,
        sync_timeout_s=cfg.admin.purge_timeout_s,
        trusted_at_start=store.stats.entries == 0,
    )
    return invalidator, hub


async def catch_up(hub: PurgeHub, cfg: EdgeConfig) -> None:
    """Catches up on purges missed while down, once, at start.

    Bounded: each peer gets one timeout; a node that reached none serves under the purge-lag
    rule.
    """
    synced = await hub.sync_round()
    if hub.has_peers:
        log.info(
            "purge catch-up at start: %d of %d peers answered; generation %d",
            synced,
            len(cfg.peers) - 1,
            hub.log.generation,
        )
