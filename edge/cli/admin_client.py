"""Talking to a node's admin API from the command line: the address, the token, one-line errors.

The bearer token never goes on the command line (every user sees arguments in `ps`): it
comes from `$EDGECACHE_TOKEN`, or from a file named by `--token-file` or
`$EDGECACHE_TOKEN_FILE` (first line, surrounding space stripped). Every failure becomes an
AdminError whose message is one line and whose `exit_code` says what kind it was: 1 the
node could not be reached or failed (5xx), 2 it refused the request (4xx) or the command
line is wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

__all__ = ["EXIT_FAILED", "EXIT_REFUSED", "AdminClient", "AdminError", "add_admin_flags", "client_from"]

EXIT_FAILED, EXIT_REFUSED = 1, 2
TOKEN_ENV, TOKEN_FILE_ENV, ADMIN_ENV = "EDGECACHE_TOKEN", "EDGECACHE_TOKEN_FILE", "EDGECACHE_ADMIN"
_LEGACY_TOKEN_ENV = "EDGE_ADMIN_TOKEN"  # read too, for scripts written before issue 16


class AdminError(Exception):
    """A request to the admin API failed; the message is one line."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def add_admin_flags(p: argparse.ArgumentParser) -> None:
    """--admin, --token-file and --timeout (and the old --token, hidden, which warns)."""
    p.add_argument(
        "--admin",
        metavar="URL",
        default=os.environ.get(ADMIN_ENV),
        help=f"the node's admin API, e.g. http://127.0.0.2:7080 (default: ${ADMIN_ENV})",
    )
    p.add_argument(
        "--token-file",
        metavar="PATH",
        default=os.environ.get(TOKEN_FILE_ENV),
        help=f"file holding the bearer token (default: ${TOKEN_FILE_ENV}; or set ${TOKEN_ENV})",
    )
    p.add_argument("--token", help=argparse.SUPPRESS)  # visible in ps: kept for old scripts, warns
    p.add_argument(
        "--timeout", type=float, default=30.0, metavar="S", help="seconds to wait for the API (default 30)"
    )


def _token(args: argparse.Namespace) -> str:
    if args.token:
        print(
            f"edgecache: warning: --token shows the secret to every user in ps; set ${TOKEN_ENV} "
            "or use --token-file",
            file=sys.stderr,
        )
        return str(args.token)
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as f:
                token = f.readline().strip()
        except OSError as exc:
            raise AdminError(
                f"cannot read the token file {args.token_file}: {exc.strerror}", EXIT_REFUSED
            ) from exc
        if not token:
            raise AdminError(f"the token file {args.token_file} is empty", EXIT_REFUSED)
        return token
    from_env = os.environ.get(TOKEN_ENV) or os.environ.get(_LEGACY_TOKEN_ENV)
    if not from_env:
        raise AdminError(
            f"no admin token: set ${TOKEN_ENV} or pass --token-file PATH (a token from [[admin.tokens]])",
            EXIT_REFUSED,
        )
    return from_env


@dataclass(frozen=True, slots=True)
class AdminClient:
    """One node's admin API."""

    base: str  # http://host:port
    token: str
    timeout_s: float

    def call(self, method: str, path: str, body: object = None) -> tuple[int, dict[str, Any]]:
        """Sends one request; (status, JSON answer) for 2xx; raises AdminError otherwise."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                status, text = response.status, response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read().decode("utf-8", "replace")
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise AdminError(f"cannot reach {self.base}: {reason}", EXIT_FAILED) from exc
        try:
            answer = json.loads(text)
        except json.JSONDecodeError:
            answer = {"error": " ".join(text.split())[:200]}
        if not isinstance(answer, dict):
            answer = {"error": str(answer)[:200]}
        if 200 <= status < 300:
            return status, answer
        error = " ".join(str(answer.get("error", "")).split()) or f"HTTP {status}"
        raise AdminError(f"refused ({status}): {error}", EXIT_REFUSED if 400 <= status < 500 else EXIT_FAILED)

    def metrics(self) -> str:
        """GET /metrics (Prometheus text; no token needed)."""
        try:
            with urllib.request.urlopen(self.base + "/metrics", timeout=self.timeout_s) as response:
                return str(response.read().decode("utf-8", "replace"))
        except urllib.error.HTTPError as exc:
            raise AdminError(f"GET /metrics answered {exc.code}", EXIT_FAILED) from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise AdminError(f"cannot reach {self.base}: {reason}", EXIT_FAILED) from exc


def client_from(args: argparse.Namespace) -> AdminClient:
    """The client the flags and environment describe; raises AdminError for what is missing."""
    if not args.admin:
        raise AdminError(
            f"--admin URL (or ${ADMIN_ENV}) is required, e.g. http://127.0.0.2:7080", EXIT_REFUSED
        )
    base = str(args.admin).rstrip("/")
    if not base.startswith(("http://", "https://")):
        base = "http://" + base
    return AdminClient(base, _token(args), args.timeout)
