"""`edgecache purge`: sends one purge to a node's admin API and reports who acknowledged it.

    edgecache purge url http://demo.local/index.html          one URL, every Vary variant
    edgecache purge prefix http://demo.local/video/           every URL under a prefix
    edgecache purge tag segment --host demo.local              Surrogate-Key / Cache-Tag values
    edgecache purge host demo.local                            everything of a host ("all" is the same)
      [--soft] [--wait] [--admin URL] [--token-file PATH]

The token comes from $EDGECACHE_TOKEN or a file (edge.cli.admin_client), never an argument.
`--wait` keeps asking the node (`GET /purge/ID`) until every node of every region holds the
purge, printing each acknowledgement as it comes. Exit codes: 0 when every node acknowledged,
3 when some are still pending (they get the purge by catch-up), 2 when the API refused it
(4xx: the reason is printed) or the command line is wrong, 1 when the admin API could not
be reached or failed (5xx).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from edge.cli.admin_client import EXIT_REFUSED, AdminClient, AdminError, add_admin_flags, client_from

__all__ = ["build_purge_parser", "main"]

EXIT_ACKED, EXIT_PENDING = 0, 3
KINDS = ("url", "prefix", "tag", "host", "all")
POLL_INTERVAL_S = 0.5


def build_purge_parser() -> argparse.ArgumentParser:
    """The `purge` subcommand's parser."""
    p = argparse.ArgumentParser(
        prog="edgecache purge",
        description="Purge cached objects on every node of every region through one node's admin API.",
        epilog="kinds: url URL | prefix URL | tag TAG --host HOST | host HOST (all HOST: the same). "
        "The token comes from $EDGECACHE_TOKEN or --token-file, never the command line. "
        "Exit codes: 0 acknowledged by every node, 3 some pending, 2 refused, 1 unreachable.",
    )
    p.add_argument("kind", nargs="?", choices=KINDS, help="what to purge")
    p.add_argument("value", nargs="?", metavar="VALUE", help="the URL, prefix URL, tag or host")
    p.add_argument("--host", metavar="HOST", help="the host a tag purge applies to")
    p.add_argument(
        "--soft", action="store_true", help="mark stale (revalidate on next use) instead of removing"
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="wait until every node of every region holds the purge, printing progress",
    )
    p.add_argument(
        "--wait-timeout", type=float, default=60.0, metavar="S", help="how long --wait waits (default 60)"
    )
    add_admin_flags(p)
    # the flags of the first version (python -m edge purge --url U ...), kept for scripts
    for old in ("url", "prefix", "tag", "all"):
        p.add_argument(f"--{old}", dest=f"old_{old}", help=argparse.SUPPRESS)
    return p


def _body(args: argparse.Namespace) -> dict[str, Any]:
    """The POST /purge body; raises AdminError for a wrong combination."""
    kind, value = args.kind, args.value
    olds = [
        (k, getattr(args, f"old_{k}")) for k in ("url", "prefix", "tag", "all") if getattr(args, f"old_{k}")
    ]
    if kind is None and len(olds) == 1:
        kind, value = olds[0]
    elif olds or kind is None:
        raise AdminError(f"say what to purge: one of {', '.join(KINDS)} and its value", EXIT_REFUSED)
    if not value:
        raise AdminError(f"{kind}: missing its value (edgecache purge {kind} VALUE)", EXIT_REFUSED)
    if kind == "tag" and not args.host:
        raise AdminError("tag needs --host: the host whose objects carry the tag", EXIT_REFUSED)
    if args.host and kind != "tag":
        raise AdminError("--host goes with tag only", EXIT_REFUSED)
    body: dict[str, Any] = {"tag": value, "host": args.host} if kind == "tag" else {}
    if kind in ("url", "prefix"):
        body = {kind: value}
    elif kind in ("host", "all"):
        body = {"all": value}
    if args.soft:
        body["soft"] = True
    return body


def _wait(client: AdminClient, purge_id: str, pending: list[str], deadline_s: float) -> list[str]:
    """Polls GET /purge/ID until nothing is pending or the deadline; prints each new ack."""
    deadline = time.monotonic() + deadline_s
    while pending and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL_S)
        _, answer = client.call("GET", f"/purge/{purge_id}")
        now_pending = [str(n) for n in answer.get("pending", [])]
        acked = [str(n) for n in answer.get("acked", [])]
        for node in pending:
            if node not in now_pending:
                print(f"  {node} acknowledged ({len(acked)} of {len(acked) + len(now_pending)})", flush=True)
        pending = now_pending
    return pending


def main(argv: list[str]) -> int:
    """Runs the purge subcommand; returns the exit code."""
    args = build_purge_parser().parse_args(argv)
    try:
        body = _body(args)
        client = client_from(args)
        _, answer = client.call("POST", "/purge", body)
        purge_id = str(answer.get("id"))
        acked = [str(n) for n in answer.get("acked", [])]
        pending = [str(n) for n in answer.get("pending", [])]
        print(f"purge {purge_id}: acknowledged by {', '.join(acked) or 'none'}", flush=True)
        if pending and args.wait:
            print(f"waiting for {', '.join(pending)} ...", flush=True)
            pending = _wait(client, purge_id, pending, args.wait_timeout)
            if not pending:
                print(f"purge {purge_id}: every node holds it")
        if pending:
            print(f"pending (they catch up later): {', '.join(pending)}")
            return EXIT_PENDING
        return EXIT_ACKED
    except AdminError as exc:
        print(f"edgecache purge: {exc}", file=sys.stderr)
        return exc.exit_code
