"""The demo origin's RFC 9110 rules: preconditions (§13) and single byte ranges (§14).

Pure functions shared by the static-file and synthetic-object handlers, so both answer
conditional and Range requests the same way a well-behaved origin does. They never read
the clock; the handlers pass in the representation's validators and length.
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from enum import Enum

__all__ = [
    "Precondition",
    "RangeDecision",
    "RangeKind",
    "Validators",
    "evaluate_preconditions",
    "http_date",
    "parse_http_date",
    "select_range",
]


@dataclass(frozen=True, slots=True)
class Validators:
    """The selected representation's validators; either may be absent."""

    etag: str | None  # as sent, quotes included: '"abc"' or 'W/"abc"'
    last_modified: int | None  # whole seconds since the epoch (HTTP-date precision)


class Precondition(Enum):
    """What the conditional headers decide."""

    PROCEED = "proceed"
    NOT_MODIFIED = "not_modified"  # 304
    FAILED = "failed"  # 412


class RangeKind(Enum):
    """How a Range request is answered."""

    FULL = "full"  # 200, whole representation (no Range, ignored, or If-Range failed)
    PARTIAL = "partial"  # 206, one range
    UNSATISFIABLE = "unsatisfiable"  # 416


@dataclass(frozen=True, slots=True)
class RangeDecision:
    """The range to send: bytes [start, end) of a representation of `size` bytes."""

    kind: RangeKind
    start: int
    end: int
    size: int

    @property
    def content_range(self) -> str:
        """The Content-Range value for a 206 or 416 (RFC 9110 §14.4)."""
        if self.kind is RangeKind.UNSATISFIABLE:
            return f"bytes */{self.size}"
        return f"bytes {self.start}-{self.end - 1}/{self.size}"


def http_date(epoch: float) -> str:
    """Formats an IMF-fixdate (RFC 9110 §5.6.7)."""
    return email.utils.formatdate(epoch, usegmt=True)


def parse_http_date(value: str | None) -> int | None:
    """Parses any of the three HTTP-date forms to whole seconds; None when invalid."""
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:  # "-0000" or an asctime date: HTTP dates are always GMT
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


def _opaque(tag: str) -> tuple[bool, str]:
    tag = tag.strip()
    if tag.startswith("W/"):
        return True, tag[2:]
    return False, tag


def _etag_list(value: str) -> list[str]:
    # Entity tags may contain commas only inside quotes; split outside quotes.
    tags: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in value:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            tags.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    tags.append("".join(current).strip())
    return [t for t in tags if t]


# RFC 9110 §8.8.3.2: strong comparison needs both tags strong and equal.
def _strong_match(a: str, b: str) -> bool:
    weak_a, op_a = _opaque(a)
    weak_b, op_b = _opaque(b)
    return not weak_a and not weak_b and op_a == op_b


# RFC 9110 §8.8.3.2: weak comparison compares the opaque tags only.
def _weak_match(a: str, b: str) -> bool:
    return _opaque(a)[1] == _opaque(b)[1]


def _any_match(header: str, etag: str | None, *, strong: bool) -> bool:
    if header.strip() == "*":
        return True  # "*" matches any current representation; every demo object has one
    if etag is None:
        return False
    match = _strong_match if strong else _weak_match
    return any(match(tag, etag) for tag in _etag_list(header))


# RFC 9110 §13.2.2: If-Match, If-Unmodified-Since, If-None-Match, If-Modified-Since, in order.
def evaluate_preconditions(method: str, headers: Mapping[str, str], validators: Validators) -> Precondition:
    """Evaluates the request's preconditions against the current representation."""
    safe = method in ("GET", "HEAD")
    if_match = headers.get("If-Match")
    if if_match is not None:
        # RFC 9110 §13.1.1: strong comparison.
        if not _any_match(if_match, validators.etag, strong=True):
            return Precondition.FAILED
    else:
        ius = parse_http_date(headers.get("If-Unmodified-Since"))
        lm = validators.last_modified
        # RFC 9110 §13.1.4: ignored when the date is invalid or there is no Last-Modified.
        if ius is not None and lm is not None and lm > ius:
            return Precondition.FAILED
    if_none_match = headers.get("If-None-Match")
    if if_none_match is not None:
        # RFC 9110 §13.1.2: weak comparison; 304 for GET/HEAD, 412 otherwise.
        if _any_match(if_none_match, validators.etag, strong=False):
            return Precondition.NOT_MODIFIED if safe else Precondition.FAILED
        return Precondition.PROCEED
    # RFC 9110 §13.1.3: only for GET/HEAD, and only without If-None-Match.
    ims = parse_http_date(headers.get("If-Modified-Since"))
    lm = validators.last_modified
    if safe and ims is not None and lm is not None and lm <= ims:
        return Precondition.NOT_MODIFIED
    return Precondition.PROCEED


# RFC 9110 §13.1.5: If-Range holds only for a strong ETag match or an exact Last-Modified.
def _if_range_holds(value: str, validators: Validators) -> bool:
    value = value.strip()
    if value.startswith('"') or value.startswith("W/"):
        return validators.etag is not None and _strong_match(value, validators.etag)
    date = parse_http_date(value)
    return date is not None and date == validators.last_modified


def _parse_single_range(value: str, size: int) -> RangeDecision | None:
    """Returns the decision for one byte range, or None when the header is to be ignored."""
    unit, sep, spec = value.partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in spec:
        return None  # another unit, bad syntax or several ranges: answered with 200
    first, dash, last = spec.strip().partition("-")
    first, last = first.strip(), last.strip()
    if not dash or not (first.isdigit() or first == "") or not (last.isdigit() or last == ""):
        return None
    unsatisfiable = RangeDecision(RangeKind.UNSATISFIABLE, 0, 0, size)
    if first == "":
        if last == "":
            return None
        # RFC 9110 §14.1.3: a suffix range of zero length is unsatisfiable.
        if int(last) == 0:
            return unsatisfiable
        return RangeDecision(RangeKind.PARTIAL, max(0, size - int(last)), size, size)
    start = int(first)
    if last != "" and int(last) < start:
        return None  # RFC 9110 §14.1.1: an invalid range-spec; the header is ignored
    if start >= size:
        return unsatisfiable
    end = size if last == "" else min(int(last) + 1, size)
    return RangeDecision(RangeKind.PARTIAL, start, end, size)


# RFC 9110 §14.2: Range applies to GET only; a server may ignore what it does not support.
def select_range(method: str, headers: Mapping[str, str], validators: Validators, size: int) -> RangeDecision:
    """Decides between the full representation, one range (206) and 416."""
    full = RangeDecision(RangeKind.FULL, 0, size, size)
    value = headers.get("Range")
    if method != "GET" or value is None or size == 0:
        return full
    if_range = headers.get("If-Range")
    if if_range is not None and not _if_range_holds(if_range, validators):
        return full
    parsed = _parse_single_range(value, size)
    return full if parsed is None else parsed
