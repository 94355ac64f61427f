"""`edgecache status`: one screen about one node: hit ratio, store, ring, peers, purge lag, origins.

    edgecache status --admin http://127.0.0.2:7080      (token: $EDGECACHE_TOKEN or --token-file)

It reads the node's `GET /status` (token) and `GET /metrics` (ring shares) and prints plain
lines, or the /status document itself with --json. Exit codes as `edgecache purge`: 0 shown,
2 refused (wrong token), 1 unreachable.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from edge.cli.admin_client import AdminError, add_admin_flags, client_from

__all__ = ["build_status_parser", "main", "render"]

# outcomes answered without an origin fetch for this request
_SERVED_HERE = ("hit", "peer_hit", "stale", "revalidated")


def build_status_parser() -> argparse.ArgumentParser:
    """The `status` subcommand's parser."""
    p = argparse.ArgumentParser(
        prog="edgecache status",
        description="One screen about one running node: hit ratio, ring, peers, purge lag, origins.",
    )
    add_admin_flags(p)
    p.add_argument("--json", action="store_true", help="print the node's GET /status document instead")
    return p


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def ring_shares(metrics_text: str) -> dict[str, float]:
    """member → share of the key space, from the exposition text."""
    shares: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name == "edgecache_ring_share_ratio":
            for sample in family.samples:
                shares[sample.labels["member"]] = sample.value
    return shares


def _age(value: object) -> str:
    return "never" if value is None else f"{float(value):.1f} s ago"  # type: ignore[arg-type]


def render(status: Mapping[str, Any], shares: Mapping[str, float]) -> list[str]:
    """The lines of the screen."""
    requests: Mapping[str, int] = status.get("requests", {})
    total = sum(requests.values())
    here = sum(requests.get(o, 0) for o in _SERVED_HERE)
    ratio = f"{100 * here / total:.1f}%" if total else "n/a (no requests yet)"
    parts = ", ".join(f"{k} {v}" for k, v in requests.items() if v)
    store = status.get("store", {})
    lines = [
        f"node      {status.get('node')} (region {status.get('region')})",
        f"requests  {total}; hit ratio {ratio}" + (f" ({parts})" if parts else ""),
        f"store     {store.get('entries', 0)} objects, {_size(store.get('bytes', 0))}",
    ]
    peers = {p["name"]: p for p in status.get("peers", [])}
    if shares:
        members = [f"{m} {100 * s:.1f}%" for m, s in sorted(shares.items())]
        lines.append(f"ring      {'  '.join(members)}")
    if peers:
        lines.append(
            "peers     "
            + "; ".join(f"{n} ({p['region']}) {'up' if p['healthy'] else 'DOWN'}" for n, p in peers.items())
        )
    lag = status.get("purge_lag_s")
    lag_text = "not synced yet" if lag is None else f"{lag:.1f} s"
    trusted = "trusted" if status.get("trusted", True) else "NOT trusted: revalidating every hit"
    lines.append(
        f"purges    generation {status.get('generation', 0)}; lag {lag_text} "
        f"(max {status.get('max_purge_lag_s', math.nan):g} s); {trusted}"
    )
    for name, sync in sorted(dict(status.get("purge_peers", {})).items()):
        error = f" (last error: {sync['last_error']})" if sync.get("last_error") else ""
        lines.append(
            f"          {name} ({sync.get('region')}): synced {_age(sync.get('last_sync_age_s'))}{error}"
        )
    for pool in status.get("origins", []):
        servers = ", ".join(
            f"{s['url']} {'ok' if s.get('available') else 'DOWN'}" for s in pool.get("servers", [])
        )
        lines.append(f"origin    {pool.get('name')}: {servers}")
    return lines


def main(argv: list[str]) -> int:
    """Runs the status subcommand; returns the exit code."""
    args = build_status_parser().parse_args(argv)
    try:
        client = client_from(args)
        _, status = client.call("GET", "/status")
        if args.json:
            print(json.dumps(status, indent=2))
            return 0
        shares = ring_shares(client.metrics())
    except AdminError as exc:
        print(f"edgecache status: {exc}", file=sys.stderr)
        return exc.exit_code
    print("\n".join(render(status, shares)))
    return 0
