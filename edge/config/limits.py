"""Request size limits of the public listener (`[limits]`), and their reader.

Each limit is answered by the listener itself, before anything reaches the cache or the
origin: 414 for a long target, 431 for too many or too large header fields, 413 for a body.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edge.config.checks import boolean, check_keys, parse_size

__all__ = ["Limits", "parse_limits"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Request size limits of the public listener."""

    max_url_bytes: int = 8192  # longer request targets get 414
    max_header_bytes: int = 32768  # all field names + values; more gets 431
    max_headers: int = 100  # more header fields gets 431
    max_body_bytes: int = 16 * 1024 * 1024  # request bodies (POST/PUT pass-through); more gets 413
    max_header_line_bytes: int = 8192  # one field's name + value; more gets 431 (issue 12)
    underscores_in_headers: bool = False  # keep fields named with "_" (dropped by default, as nginx)


def parse_limits(t: Mapping[str, Any]) -> Limits:
    """Validates `[limits]`."""
    d = Limits()
    check_keys(t, set(Limits.__dataclass_fields__), "limits")
    sizes = {
        k: parse_size(t.get(k, getattr(d, k)), f"limits.{k}")
        for k in Limits.__dataclass_fields__
        if k != "underscores_in_headers"
    }
    return Limits(
        **sizes,
        underscores_in_headers=boolean(t, "underscores_in_headers", d.underscores_in_headers, "limits"),
    )
