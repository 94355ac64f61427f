"""Field-name folding: how lists of header names are compared — pure.

Many origins (CGI, WSGI, PHP, Rails, and servers that map fields to variables) treat `_`
and `-` in a field name alike: `X_Forwarded_Host` arrives as `HTTP_X_FORWARDED_HOST`, the
same variable as `X-Forwarded-Host`. A denylist that compares names byte for byte lets the
underscore spelling through to an origin that acts on it (issue 12). Every denylist and
allowlist of ours compares `fold_name(name)`: lower case with `_` folded into `-`.
"""

from __future__ import annotations

__all__ = ["fold_name"]


def fold_name(name: str) -> str:
    """The name as lists compare it: lower case, `_` read as `-`."""
    return name.lower().replace("_", "-")
