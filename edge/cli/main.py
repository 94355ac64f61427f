"""Command line: start one node from config.toml, or a quick-start node in front of one origin.

    python -m edge --config config.toml --node edge1
    python -m edge --origin http://127.0.0.1:8000 --listen 127.0.0.1:8080 [--memory 256MiB]
                   [--disk-dir DIR [--disk 2GiB]] [--policy gdsf|s3fifo|lru] [--memory-max-object 64KiB]
    python -m edge check-config --config config.toml [--node NAME]   (see edge/cli/check.py)
    edgecache purge url|prefix|tag|host VALUE [--soft] [--wait] --admin URL   (edge/cli/purge.py)
    edgecache status --admin URL                 (one screen about a node: edge/cli/status.py)
    edgecache serve ...                          (the same as without `serve`)
    python -m edge --version

`edgecache` is the installed console script; `python -m edge` is the same program.

Exit codes: 0 after a clean stop, 2 for a bad command line or config, 1 when the node fails
(cannot start included: one line saying why and what to do, never a traceback).
"""

from __future__ import annotations

import argparse
import atexit
import os
import sys
from dataclasses import replace
from importlib import metadata

from edge.app import StartupError
from edge.app.stderr_log import start_stderr_log
from edge.cli.supervisor import supervise, worker_count, worker_plan
from edge.config.cache import Eviction
from edge.config.deployment import CacheConfig, ConfigError, EdgeConfig, load, parse_size, quickstart
from edge.config.quick_media import quick_media

__all__ = ["build_parser", "main", "version"]

# Quick-start flags and their defaults (None in argparse, so a flag given with --config shows).
DEFAULT_LISTEN, DEFAULT_MEMORY, DEFAULT_DISK = "127.0.0.1:8080", "256MiB", "2GiB"
_QUICK_FLAGS = {
    "origin": "--origin",
    "listen": "--listen",
    "memory": "--memory",
    "disk_dir": "--disk-dir",
    "policy": "--policy",
    "memory_max_object": "--memory-max-object",
}
_QUICK_FLAGS |= {
    "slice_size": "--slice-size",
    "fill_idle_timeout": "--fill-idle-timeout",
    "playlist_ttl": "--playlist-ttl",
}

EPILOG = """Either --config and --node, or --origin (and --listen) for a one-node quick start.

other commands:
  python -m edge check-config --config FILE [--node NAME]
        validate a deployment file (every node's part without --node) and print one line
        per node; exit 2 naming the bad key
  edgecache serve [flags above]
        start a node (the same as without `serve`)
  edgecache purge url|prefix|tag|host VALUE [--host H] [--soft] [--wait] --admin URL
        purge through a node's admin API; the token comes from $EDGECACHE_TOKEN or
        --token-file, never the command line (edgecache purge --help)
  edgecache status --admin URL
        one screen about a running node: hit ratio, ring, peers, purge lag, origins

exit codes: 0 clean stop, 1 the node failed or cannot start, 2 bad command line or config
"""


def version() -> str:
    """The installed package's version."""
    try:
        return metadata.version("edgecache")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed; run make setup)"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; --help explains every flag."""
    p = argparse.ArgumentParser(
        prog="edgecache",
        description="edgecache: a caching CDN edge node (RFC 9111 shared cache) in front of origin servers.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"edgecache {version()}")
    g = p.add_argument_group("from a config file")
    g.add_argument("--config", metavar="PATH", help="the deployment's config.toml")
    g.add_argument("--node", metavar="NAME", help="which [nodes.NAME] of the config this process is")
    q = p.add_argument_group("quick start (no config file)")
    q.add_argument(
        "--origin",
        metavar="URL",
        help="origin base URL, e.g. http://127.0.0.1:8000; every path and method is forwarded",
    )
    q.add_argument("--listen", metavar="HOST:PORT", help=f"address to serve on (default {DEFAULT_LISTEN})")
    q.add_argument(
        "--memory", metavar="SIZE", help=f"memory tier budget, e.g. 256MiB (default {DEFAULT_MEMORY})"
    )
    q.add_argument("--disk-dir", metavar="DIR", help="directory of the disk tier (default: memory only)")
    q.add_argument(
        "--disk",
        metavar="SIZE",
        help=f"disk tier budget, e.g. 2GiB (default {DEFAULT_DISK}); needs --disk-dir",
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
    q.add_argument(  # issue 14: large objects and streaming
        "--slice-size",
        metavar="SIZE",
        help="fetch and keep objects above SIZE as slices of it (default 1MiB; 0 = off)",
    )
    q.add_argument(
        "--fill-idle-timeout",
        metavar="S",
        help="longest gap between a fill's body bytes, seconds (default 10)",
    )
    q.add_argument(
        "--playlist-ttl",
        metavar="S",
        help="lifetime of live HLS/DASH playlists (default: half the target duration)",
    )
    p.add_argument(  # issue 13: docs/workers.md
        "--workers",
        metavar="N",
        help='worker processes sharing one cache: "auto" (one per core) or a number (default: [server] '
        "workers, else $EDGECACHE_WORKERS, else auto)",
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


def _flag_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the combination of flags, or None (the values are checked later)."""
    if args.config:
        given = [flag for attr, flag in _QUICK_FLAGS.items() if getattr(args, attr) is not None]
        if args.disk is not None:
            given.append("--disk")
        if given:
            return (
                f"{', '.join(given)}: quick-start flags do not go with --config; set them in the config file"
            )
        if not args.node:
            return "--node: missing; say which [nodes.NAME] of the config this process is"
        return None
    if args.node:
        return "--node: needs --config (the deployment file the node is named in)"
    if not args.origin:
        return "--origin: missing; pass --config config.toml --node NAME, or --origin URL"
    if args.disk is not None and args.disk_dir is None:
        return (
            "--disk: needs --disk-dir (the directory of the disk tier); without it the node keeps memory only"
        )
    return None


def _config(args: argparse.Namespace) -> EdgeConfig:
    if args.config:
        cfg = load(args.config, args.node)
        return replace(cfg, access_log=False) if args.no_access_log else cfg
    cfg = quickstart(
        origin=args.origin,
        listen=args.listen or DEFAULT_LISTEN,
        memory_bytes=parse_size(args.memory or DEFAULT_MEMORY, "--memory"),
        disk_dir=args.disk_dir,
        disk_bytes=parse_size(args.disk or DEFAULT_DISK, "--disk"),
        access_log=not args.no_access_log,
        cache=_quick_cache(args),
    )
    return quick_media(  # issue 14
        cfg,
        slice_size=args.slice_size,
        fill_idle_timeout=args.fill_idle_timeout,
        playlist_ttl=args.playlist_ttl,
    )


def _quick_cache(args: argparse.Namespace) -> CacheConfig:
    d = CacheConfig()
    return CacheConfig(
        policy=Eviction(args.policy) if args.policy else d.policy,
        memory_max_object_bytes=None
        if args.memory_max_object is None
        else parse_size(args.memory_max_object, "--memory-max-object"),
    )


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        argv = argv[1:]  # `edgecache serve ...` is the default command, named
    if argv[:1] == ["purge"]:
        from edge.cli import purge

        return purge.main(argv[1:])
    if argv[:1] == ["status"]:
        from edge.cli import status

        return status.main(argv[1:])
    if argv[:1] == ["check-config"]:
        from edge.cli import check

        return check.main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    problem = _flag_problem(args)
    if problem is not None:
        parser.error(problem)  # usage and the problem on stderr, exit 2
    # the node's log: a bounded queue and a writer thread, so a stalled stderr never blocks the loop
    atexit.register(start_stderr_log(args.log_level).stop)  # queued lines get a bounded time at exit
    try:
        cfg = _config(args)
        count = worker_count(args.workers, cfg.server.workers, os.environ)
        worker = worker_plan(os.environ)
    except ConfigError as exc:
        print(f"edgecache: config error: {exc}", file=sys.stderr)
        return 2
    if worker is None and count > 1:
        return supervise(argv, cfg, count)  # starts the workers, each runs this again (issue 13)
    try:
        import uvloop

        from edge.cli.serve import serve

        def read() -> EdgeConfig:
            return _config(args) if worker is None else worker.shape(_config(args))

        reload = read if args.config else None  # SIGHUP reads the file again
        return uvloop.run(serve(cfg if worker is None else worker.shape(cfg), reload, worker))
    except StartupError as exc:
        print(f"edgecache: cannot start: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
