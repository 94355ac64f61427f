"""Slices of large objects: aligned byte ranges, and whether an origin's answer fits — pure.

An object whose length exceeds the policy's slice size is kept as slices of that size: slice
k holds bytes [k*S, min((k+1)*S, total)). The origin is asked for a slice with
`Range: bytes=a-b` and its answer must agree with the object the edge already holds (RFC 9110
§14.4, §15.3.7.3: partial content may be combined only under the same strong validator):
a 206 whose Content-Range names exactly that range and the same total length, and the same
ETag and Last-Modified. A 200 means the origin ignored Range; anything else is an error. An
object is sliced only when it can be checked that way: a strong ETag or a Last-Modified.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

__all__ = [
    "SLICED_MAX_BYTES",
    "SliceCheck",
    "SliceExpect",
    "SliceSpan",
    "accepts_ranges",
    "check_slice",
    "cold_slice_index",
    "parse_content_range",
    "slice_count",
    "slice_span",
    "sliceable_head",
    "slices_for",
    "worth_slicing",
]

# The largest object kept as slices: each slice must fit a tier, the whole object need not.
SLICED_MAX_BYTES = 1 << 40


class SliceCheck(Enum):
    """What an origin's answer to a slice request is."""

    OK = "ok"  # 206 with exactly the asked range of the same object
    WHOLE = "whole"  # 200: the origin ignored Range (the whole object follows)
    CHANGED = "changed"  # another object now: total length or validators differ
    WRONG_RANGE = "wrong_range"  # 206 for a range other than the one asked
    BAD_STATUS = "bad_status"  # neither 200 nor 206 (416, 404, 5xx, ...)


@dataclass(frozen=True, slots=True)
class SliceSpan:
    """Slice `index` of an object: bytes [start, end)."""

    index: int
    start: int
    end: int

    @property
    def length(self) -> int:
        """Bytes in the slice."""
        return self.end - self.start

    @property
    def range_header(self) -> str:
        """The Range field value that asks the origin for this slice."""
        return f"bytes={self.start}-{self.end - 1}"


@dataclass(frozen=True, slots=True)
class SliceExpect:
    """What a slice answer must agree with: the span, and the object's total and validators.

    `total` is None for the first slice request of an unknown object (a cold seek): the answer
    then defines the object.
    """

    span: SliceSpan
    total: int | None
    etag: str | None
    last_modified: str | None


def slice_count(total: int, size: int) -> int:
    """How many slices an object of `total` bytes has."""
    return (total + size - 1) // size


def slice_span(index: int, total: int, size: int) -> SliceSpan:
    """Slice `index` of an object of `total` bytes (the last slice may be short)."""
    start = index * size
    return SliceSpan(index, start, min(start + size, total))


def slices_for(start: int, end: int, size: int) -> range:
    """The indices of the slices that hold bytes [start, end)."""
    if end <= start:
        return range(0)
    return range(start // size, (end - 1) // size + 1)


def worth_slicing(
    *, status: int, length: int | None, size: int, etag: str | None, last_modified: str | None
) -> bool:
    """Whether a 200 of `length` bytes is kept as slices of `size` (0: slicing is off)."""
    if size <= 0 or status != 200 or length is None or length <= size:
        return False
    strong = etag is not None and not etag.startswith("W/")
    return strong or last_modified is not None


def sliceable_head(status: int, headers: Iterable[tuple[str, str]], size: int) -> bool:
    """`worth_slicing` read from a response head (before any entry is made of it)."""
    headers = tuple(headers)
    length = _field(headers, "content-length")
    return worth_slicing(
        status=status,
        length=int(length) if length is not None and length.isascii() and length.isdigit() else None,
        size=size,
        etag=_field(headers, "etag"),
        last_modified=_field(headers, "last-modified"),
    )


def accepts_ranges(headers: Iterable[tuple[str, str]]) -> bool:
    """Whether the origin said it serves byte ranges (Accept-Ranges: bytes)."""
    return any(
        name.lower() == "accept-ranges" and "bytes" in (t.strip() for t in value.lower().split(","))
        for name, value in headers
    )


def cold_slice_index(range_value: str | None, size: int) -> int | None:
    """The slice a Range request on an unknown object starts in, when that is past slice 0.

    Only a single `bytes=a-[b]` range with a >= size qualifies: a range in the first slice
    (or a suffix range, whose start depends on the unknown length) is served by the whole
    fill, which delivers its first bytes as soon as they arrive anyway.
    """
    if range_value is None or size <= 0:
        return None
    unit, sep, spec = range_value.partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not first.isascii() or not first.isdigit():
        return None
    if last and (not last.isascii() or not last.isdigit() or int(last) < int(first)):
        return None
    start = int(first)
    return start // size if start >= size else None


def parse_content_range(value: str | None) -> tuple[int, int, int] | None:
    """`bytes a-b/total` as (a, b + 1, total); None for anything else (`*` totals included)."""
    if value is None:
        return None
    unit, _, rest = value.strip().partition(" ")
    if unit.lower() != "bytes":
        return None
    span, slash, total_s = rest.strip().partition("/")
    first, dash, last = span.partition("-")
    parts = (first, last, total_s)
    if not slash or not dash or not all(p.isascii() and p.isdigit() for p in parts):
        return None
    a, b, total = int(first), int(last), int(total_s)
    if b < a or b >= total:
        return None
    return a, b + 1, total


def _field(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    for n, v in headers:
        if n.lower() == name:
            return v
    return None


def check_slice(
    status: int, headers: Iterable[tuple[str, str]], expect: SliceExpect
) -> tuple[SliceCheck, int | None]:
    """Checks an origin's answer to a slice request; returns the verdict and the total it names."""
    headers = tuple(headers)
    if status == 200:
        length = _field(headers, "content-length")
        total = int(length) if length is not None and length.isascii() and length.isdigit() else None
        verdict = SliceCheck.WHOLE
    elif status == 206:
        parsed = parse_content_range(_field(headers, "content-range"))
        if parsed is None:
            return SliceCheck.WRONG_RANGE, None
        start, end, total = parsed
        if (start, end) != (expect.span.start, expect.span.end):
            # The last slice of a cold seek may be shorter than asked: the object ends there.
            cut = expect.total is None and start == expect.span.start and end == total < expect.span.end
            if not cut:
                return SliceCheck.WRONG_RANGE, total
        verdict = SliceCheck.OK
    else:
        return SliceCheck.BAD_STATUS, None
    if expect.total is not None and total != expect.total:
        return SliceCheck.CHANGED, total
    if expect.etag is not None and _field(headers, "etag") != expect.etag:
        return SliceCheck.CHANGED, total
    if expect.last_modified is not None and _field(headers, "last-modified") != expect.last_modified:
        return SliceCheck.CHANGED, total
    return verdict, total
