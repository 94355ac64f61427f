"""Command line: start one node from config.toml, or a quick-start node in front of one origin.

    python -m edge --config config.toml --node edge1
    python -m edge purge --admin http://127.0.0.2:7080 --token T (--url U | --prefix P | --tag T --host H
                   | --all HOST) [--soft]        (see edge/cli/purge.py; exit 0 acked, 3 pending)
    python -m edge --origin http://127.0.0.1:8000 --listen 127.0.0.1:8080 [--memory 256MiB]
                   [--disk-dir DIR --disk 2GiB] [--policy gdsf|s3fifo|lru] [--memory-max-object 64KiB]

Exit codes: 0 after a clean stop, 2 for a bad command line or config, 1 when the node fails.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from edge.app import EdgeNode, StartupError
from edge.config.deployment import CacheConfig, ConfigError, EdgeConfig, load, parse_size, quickstart

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; --help explains every flag."""
    p = argparse.ArgumentParser(
        prog="python -m edge",
        description="edgecache: a caching CDN edge node (RFC 9111 shared cache) in front of origin servers.",
        epilog="Either --config and --node, or --origin and --listen for a one-node quick start.",
    )
    g = p.add_argument_group("from a config file")
    g.add_argument("--config", metavar="PATH", help="the deployment's config.toml")
    g.add_argument("--node", metavar="NAME", help="which [nodes.NAME] of the config this process is")
    q = p.add_argument_group("quick start (no config file)")
    q.add_argument(
        "--origin",
        metavar="URL",
        help="origin base URL, e.g. http://127.0.0.1:8000; every path and method is forwarded",
    )
    q.add_argument(
        "--listen",
        metavar="HOST:PORT",
        default="127.0.0.1:8080",
        help="address to serve on (default 127.0.0.1:8080)",
    )
    q.add_argument(
        "--memory", metavar="SIZE", default="256MiB", help="memory tier budget, e.g. 256MiB (default 256MiB)"
    )
    q.add_argument("--disk-dir", metavar="DIR", help="directory of the disk tier (default: memory only)")
    q.add_argument(
        "--disk", metavar="SIZE", default="2GiB", help="disk tier budget, e.g. 2GiB (default 2GiB)"
    )
    q.add_argument(
        "--policy",
        choices=["gdsf", "s3fifo", "lru"],
        default=None,
        help="memory tier eviction policy (default gdsf, size-aware); "
        "the disk tier runs s3fifo (lru under lru)",
    )
    q.add_argument(
        "--memory-max-object",
        metavar="SIZE",
        default=None,
        help="largest body kept in RAM, e.g. 256KiB (default 64KiB with --disk-dir, where larger ones "
        "are sent from disk; 8MiB without)",
    )
    o = p.add_argument_group("output")
    o.add_argument("--no-access-log", action="store_true", help="do not print one JSON line per request")
    o.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="level of the node's own log on stderr (default INFO)",
    )
    return p


def _config(args: argparse.Namespace) -> EdgeConfig:
    if args.config:
        if args.origin:
            raise ConfigError("--origin: give either --config/--node or --origin/--listen, not both")
        if not args.node:
            raise ConfigError("--node: missing; say which node of the config this process is")
        cfg = load(args.config, args.node)
        if args.no_access_log:
            from dataclasses import replace

            cfg = replace(cfg, access_log=False)
        return cfg
    if not args.origin:
        raise ConfigError("--origin: missing; pass --config config.toml --node NAME, or --origin URL")
    return quickstart(
        origin=args.origin,
        listen=args.listen,
        memory_bytes=parse_size(args.memory, "--memory"),
        disk_dir=args.disk_dir,
        disk_bytes=parse_size(args.disk, "--disk"),
        access_log=not args.no_access_log,
        cache=_quick_cache(args),
    )


def _quick_cache(args: argparse.Namespace) -> CacheConfig:
    d = CacheConfig()
    return CacheConfig(
        policy=args.policy or d.policy,
        memory_max_object_bytes=None
        if args.memory_max_object is None
        else parse_size(args.memory_max_object, "--memory-max-object"),
    )


async def _serve(cfg: EdgeConfig) -> int:
    node = EdgeNode(cfg)
    await node.start()
    print(
        f"edgecache node {cfg.node.name} serving on http://{cfg.node.host}:{node.port}",
        file=sys.stderr,
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        logging.getLogger("edge").info("stopping node %s", cfg.node.name)
        await node.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["purge"]:
        from edge.cli import purge

        return purge.main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        cfg = _config(args)
    except ConfigError as exc:
        print(f"edgecache: config error: {exc}", file=sys.stderr)
        return 2
    try:
        import uvloop

        return uvloop.run(_serve(cfg))
    except StartupError as exc:
        print(f"edgecache: cannot start: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
