"""`python -m edge purge`: sends one purge to a node's admin API and prints who acknowledged it.

    python -m edge purge --admin http://127.0.0.2:7080 --token T
        (--url URL | --prefix URL | --tag TAG --host HOST | --all HOST) [--soft]

Exit codes: 0 when every node acknowledged (200), 3 when some are still pending (202; they
get the purge by catch-up), 2 when the API refused it (4xx: the reason is printed) or the
command line is wrong, 1 when the admin API could not be reached or failed (5xx).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any

__all__ = ["build_purge_parser", "main"]

EXIT_ACKED, EXIT_FAILED, EXIT_REFUSED, EXIT_PENDING = 0, 1, 2, 3


def build_purge_parser() -> argparse.ArgumentParser:
    """The `purge` subcommand's parser."""
    p = argparse.ArgumentParser(
        prog="python -m edge purge",
        description="Purge cached objects on every node of every region through one node's admin API.",
    )
    p.add_argument(
        "--admin", required=True, metavar="URL", help="the node's admin API, e.g. http://127.0.0.2:7080"
    )
    p.add_argument(
        "--token",
        metavar="TOKEN",
        default=os.environ.get("EDGE_ADMIN_TOKEN"),
        help="bearer token from [[admin.tokens]] (default: $EDGE_ADMIN_TOKEN)",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--url", metavar="URL", help="one URL, every Vary variant of it")
    what.add_argument("--prefix", metavar="URL", help="every URL starting with this, e.g. http://site/img/")
    what.add_argument(
        "--tag", metavar="TAG", help="every object tagged so by Surrogate-Key / Cache-Tag (needs --host)"
    )
    what.add_argument("--all", metavar="HOST", help="everything cached for this host")
    p.add_argument("--host", metavar="HOST", help="the host a --tag purge applies to")
    p.add_argument(
        "--soft", action="store_true", help="mark stale (revalidate on next use) instead of removing"
    )
    p.add_argument(
        "--timeout", type=float, default=30.0, metavar="S", help="seconds to wait for the API (default 30)"
    )
    return p


def _body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any]
    if args.url is not None:
        body = {"url": args.url}
    elif args.prefix is not None:
        body = {"prefix": args.prefix}
    elif args.tag is not None:
        body = {"tag": args.tag, "host": args.host}
    else:
        body = {"all": args.all}
    if args.soft:
        body["soft"] = True
    return body


def main(argv: list[str]) -> int:
    """Runs the purge subcommand; returns the exit code."""
    parser = build_purge_parser()
    args = parser.parse_args(argv)
    if args.tag is not None and not args.host:
        parser.error("--tag needs --host: the host whose objects carry the tag")
    if args.host and args.tag is None:
        parser.error("--host goes with --tag only")
    if not args.token:
        parser.error("--token (or $EDGE_ADMIN_TOKEN) is required")
    request = urllib.request.Request(
        args.admin.rstrip("/") + "/purge",
        data=json.dumps(_body(args)).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {args.token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            status, text = response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as exc:
        print(f"edgecache purge: cannot reach {args.admin}: {getattr(exc, 'reason', exc)}", file=sys.stderr)
        return EXIT_FAILED
    try:
        answer = json.loads(text)
    except json.JSONDecodeError:
        answer = {"error": text.strip()[:200]}
    if status in (200, 202):
        print(f"purge {answer.get('id')}: acknowledged by {', '.join(answer.get('acked', [])) or 'none'}")
        if status == 202:
            print(f"pending (they catch up later): {', '.join(answer.get('pending', []))}")
            return EXIT_PENDING
        return EXIT_ACKED
    print(f"edgecache purge: refused ({status}): {answer.get('error', text.strip())}", file=sys.stderr)
    return EXIT_REFUSED if 400 <= status < 500 else EXIT_FAILED
