"""Range requests against a stored body of known length (RFC 9110 §14, If-Range §13.1.5).

The edge answers one byte range with 206, an unsatisfiable one with 416, and everything
else with the full 200. A multi-range request is served as a full 200 (§14.2 lets a server
ignore Range), which avoids multipart/byteranges and the small-ranges amplification of
§14.1.1; a malformed header or an unknown unit is ignored the same way.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from edge.rules.conditional import parse_etag, strong_match
from edge.rules.httpdate import parse_http_date

__all__ = ["ByteRange", "RangeKind", "content_range", "if_range_allows", "parse_range"]


class RangeKind(enum.Enum):
    """How to answer a request's Range header."""

    NONE = "none"  # no usable Range: full 200
    SINGLE = "single"  # one satisfiable range: 206
    UNSATISFIABLE = "unsatisfiable"  # 416 with `Content-Range: bytes */LEN`


@dataclass(frozen=True, slots=True)
class ByteRange:
    """An inclusive byte range [start, end] inside the representation."""

    start: int
    end: int

    @property
    def length(self) -> int:
        """Number of bytes in the range."""
        return self.end - self.start + 1


_NONE: tuple[RangeKind, ByteRange | None] = (RangeKind.NONE, None)
_UNSATISFIABLE: tuple[RangeKind, ByteRange | None] = (RangeKind.UNSATISFIABLE, None)


def parse_range(header: str | None, length: int) -> tuple[RangeKind, ByteRange | None]:
    """Resolves a Range header against a body of `length` bytes (§14.1.2, §14.2)."""
    if header is None:
        return _NONE
    unit, sep, spec = header.partition("=")
    # §14.1: range units are case-insensitive; only bytes is known here.
    if not sep or unit.strip().lower() != "bytes":
        return _NONE
    if "," in spec:
        specs = [s for s in (s.strip() for s in spec.split(",")) if s]  # §5.6.1: skip empties
        if len(specs) != 1:
            return _NONE  # zero (malformed) or several ranges: full 200
        spec = specs[0]
    first, dash, last = spec.strip().partition("-")
    if not dash or (last and not _digits(last)):
        return _NONE
    if not first:
        # suffix-range "-N": the last N bytes; "-0" selects nothing (§14.1.2).
        if not _digits(last):
            return _NONE
        suffix = int(last)
        if suffix == 0 or length == 0:
            return _UNSATISFIABLE
        return RangeKind.SINGLE, ByteRange(max(0, length - suffix), length - 1)
    if not _digits(first):
        return _NONE
    start = int(first)
    end = int(last) if last else length - 1
    # §14.1.1: last-pos < first-pos makes the range invalid, so the header is ignored.
    if last and end < start:
        return _NONE
    # §14.1.2: a first-pos at or past the end is unsatisfiable.
    if start >= length:
        return _UNSATISFIABLE
    return RangeKind.SINGLE, ByteRange(start, min(end, length - 1))


def if_range_allows(if_range: str | None, etag: str | None, last_modified: str | None) -> bool:
    """Whether If-Range lets the Range apply: a strong ETag match or the exact date (§13.1.5)."""
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith(('"', "W/")):
        condition, current = parse_etag(value), parse_etag(etag)
        # Weak entity-tags never match here: strong comparison only.
        return condition is not None and current is not None and strong_match(condition, current)
    wanted = parse_http_date(value)
    modified = parse_http_date(last_modified)
    return wanted is not None and modified is not None and wanted == modified


def content_range(r: ByteRange | None, length: int) -> str:
    """The Content-Range value for a 206 (`bytes a-b/len`) or a 416 (`bytes */len`)."""
    if r is None:
        return f"bytes */{length}"
    return f"bytes {r.start}-{r.end}/{length}"


def _digits(s: str) -> bool:
    return s.isascii() and s.isdigit()
