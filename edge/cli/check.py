"""`python -m edge check-config`: validates a deployment file without starting anything (as `nginx -t`).

    python -m edge check-config --config config.toml [--node NAME]

Reads the whole file as every node would at start (each node's part when no --node is
given) and prints OK with one line per node: where it listens, its region and shield,
peer and admin listeners, its memory and disk tiers. It creates no directory and binds no
port, so a disk or address problem still shows only when the node starts. Each secret
written inline rather than read from a file or the environment (edge/config/secrets.py) is
named in a warning on stderr; the check still passes. Exit codes: 0 when valid, 2 with the
ConfigError (naming the dotted key) when not.
"""

from __future__ import annotations

import argparse
import sys

from edge.config.deployment import ConfigError, EdgeConfig, load, load_all, read
from edge.config.secrets import inline_secrets

__all__ = ["build_check_parser", "main", "node_summary"]

EXIT_OK, EXIT_INVALID = 0, 2


def build_check_parser() -> argparse.ArgumentParser:
    """The `check-config` subcommand's parser."""
    p = argparse.ArgumentParser(
        prog="python -m edge check-config",
        description="Validate a deployment's config.toml without starting a node; prints OK and one "
        "line per node, or the first error (naming its dotted key) and exits 2.",
    )
    p.add_argument("--config", required=True, metavar="PATH", help="the deployment's config.toml")
    p.add_argument("--node", metavar="NAME", help="check only this node's part (default: every node)")
    return p


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale}{unit}"
    return f"{n}B"


def node_summary(cfg: EdgeConfig) -> str:
    """One line saying what this node of the deployment will be."""
    node = cfg.node
    region = cfg.regions.get(node.region)
    parts = [f"listen {node.host}:{node.port}", f"region {node.region}"]
    if region is not None and region.parent is not None:
        parts[-1] += f" (fills from {region.parent})"
    if node.internal_host is not None:
        parts.append(f"peers on {node.internal_host}:{node.internal_port}")
    if node.admin_host is not None:
        parts.append(f"admin on {node.admin_host}:{node.admin_port}")
    parts.append(f"memory {_size(cfg.cache.memory_bytes)}")
    disk = cfg.disk_dir
    parts.append(f"disk {disk} {_size(cfg.cache.disk_bytes)}" if disk is not None else "no disk tier")
    parts.append(f"eviction {cfg.cache.policy.value}")
    return f"{node.name}: " + ", ".join(parts)


def _deployment_summary(cfgs: list[EdgeConfig]) -> str:
    any_cfg = cfgs[0]
    regions = {n.region for n in any_cfg.nodes.values()}
    return (
        f"{len(any_cfg.nodes)} node(s) in {len(regions)} region(s), {len(any_cfg.pools)} origin pool(s), "
        f"{len(any_cfg.routes)} route(s), {len(any_cfg.policies)} cache policy rule(s)"
    )


def main(argv: list[str]) -> int:
    """Runs the check; returns the exit code."""
    args = build_check_parser().parse_args(argv)
    try:
        cfgs = [load(args.config, args.node)] if args.node else list(load_all(args.config).values())
    except ConfigError as exc:
        print(f"edgecache: config error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    for key in inline_secrets(read(args.config)):
        print(
            f"edgecache: warning: {key} is written inline in {args.config}; read it from a file "
            f"({key.rpartition('.')[2]}_file) or the environment ({key.rpartition('.')[2]}_env) instead",
            file=sys.stderr,
        )
    print(f"{args.config}: OK: {_deployment_summary(cfgs)}")
    for cfg in cfgs:
        print(f"  {node_summary(cfg)}")
    return EXIT_OK
