"""Deliver: writes a cached or in-flight response to the client, with Range and conditionals.

Three sources, one set of rules: a stored Hit (memory bytes, a file span for sendfile, or
a chunk stream), a Fill being read while it is written, and a prebuilt fast response for
fresh memory hits (`FastHeads`, rebuilt at most once a second per entry because Age and
the Cache-Status ttl change with time).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from cluster.peer import HOP_HEADER
from edge.fill.coalesce import Fill
from edge.rules.cache_control import CDN_ONLY_FIELDS, for_clients
from edge.rules.conditional import evaluate_preconditions
from edge.rules.outcome import CACHE_NAME, CacheOutcome, cache_status
from edge.rules.ranges import RangeKind, content_range, if_range_allows, parse_range
from edge.server.request import Request
from edge.server.writer import Writer, build_head
from edge.store.base import Hit
from edge.store.entry import EntryMeta

__all__ = [
    "FastHeads",
    "Plan",
    "deliver_fill",
    "deliver_hit",
    "deliver_relayed",
    "not_modified_headers",
    "plan_response",
    "send_head",
]

# RFC 9110 §15.4.5: the fields a 304 carries.
_304_FIELDS = frozenset(
    {"cache-control", "content-location", "date", "etag", "expires", "vary", "last-modified"}
)

INLINE_BODY_MAX = 64 * 1024  # fast hits up to this size go out as one prebuilt byte string


@dataclass(frozen=True, slots=True)
class Plan:
    """What to send: status, the byte range of the body (end exclusive), extra fields."""

    status: int
    start: int
    end: int
    extra: tuple[tuple[str, str], ...] = ()


def plan_response(
    request: Request, *, status: int, length: int | None, etag: str | None, last_modified: str | None
) -> Plan:
    """Applies preconditions and Range to a full response of `length` bytes."""
    pre = evaluate_preconditions(
        method=request.method, request_headers=request.headers, etag=etag, last_modified=last_modified
    )
    if pre is not None:
        return Plan(pre, 0, 0)
    full_end = length if length is not None else -1
    range_header = request.headers.get("range")
    if range_header is None or status != 200 or length is None:
        return Plan(status, 0, full_end)
    if not if_range_allows(request.headers.get("if-range"), etag, last_modified):
        return Plan(status, 0, full_end)
    kind, byte_range = parse_range(range_header, length)
    if kind is RangeKind.UNSATISFIABLE:
        return Plan(416, 0, 0, (("Content-Range", f"bytes */{length}"),))
    if kind is RangeKind.SINGLE and byte_range is not None:
        return Plan(
            206, byte_range.start, byte_range.end + 1, (("Content-Range", content_range(byte_range, length)),)
        )
    return Plan(status, 0, full_end)


def not_modified_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The stored fields a 304 repeats (RFC 9110 §15.4.5)."""
    return [(n, v) for n, v in headers if n.lower() in _304_FIELDS]


def _head_fields(
    plan: Plan, headers: Iterable[tuple[str, str]], trailer: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    if plan.status == 304:
        fields = not_modified_headers(headers)
    elif plan.status == 416:
        fields = [(n, v) for n, v in headers if n.lower() in ("date", "etag", "last-modified")]
    else:
        fields = list(headers)
    fields.extend(plan.extra)
    if plan.status in (200, 206, 416):
        fields.append(("Accept-Ranges", "bytes"))
    fields.extend(trailer)
    return fields


def _start(
    request: Request,
    writer: Writer,
    plan: Plan,
    headers: Iterable[tuple[str, str]],
    trailer: list[tuple[str, str]],
    length: int | None,
) -> bool:
    """Sends the head; True when a body follows, False when the response is already complete."""
    if HOP_HEADER not in request.headers:  # a client, not a peer: no CDN-only fields
        headers = for_clients(headers)
    fields = _head_fields(plan, headers, trailer)
    if plan.status in (304, 412, 416):
        writer.start(plan.status, fields, None if plan.status == 304 else 0)
        writer.finish()
        return False
    writer.start(plan.status, fields, length)
    return True


def send_head(
    request: Request,
    writer: Writer,
    plan: Plan,
    headers: Iterable[tuple[str, str]],
    trailer: list[tuple[str, str]],
    length: int | None,
) -> bool:
    """Sends the head of `plan` (sliced objects, edge.request.sliced); True when a body follows."""
    return _start(request, writer, plan, headers, trailer, length)


async def deliver_hit(request: Request, writer: Writer, hit: Hit, trailer: list[tuple[str, str]]) -> int:
    """Sends a stored entry (with Range/conditionals applied); returns the status sent."""
    meta = hit.meta
    plan = plan_response(
        request, status=meta.status, length=meta.body_length, etag=meta.etag, last_modified=meta.last_modified
    )
    count = plan.end - plan.start
    if not _start(request, writer, plan, meta.headers, trailer, count):
        return plan.status
    if request.method != "HEAD" and count > 0:
        body = hit.body_bytes()
        span = hit.file_span() if body is None else None
        if body is not None:
            await writer.write(body if count == len(body) else body[plan.start : plan.end])
        elif span is not None:
            fd, offset, _ = span
            await writer.sendfile(fd, offset + plan.start, count)
        else:
            async for chunk in hit.read(plan.start, plan.end):
                await writer.write(chunk)
    writer.finish()
    return plan.status


async def deliver_fill(
    request: Request,
    writer: Writer,
    fill: Fill[Any],
    *,
    status: int,
    headers: Iterable[tuple[str, str]],
    length: int | None,
    meta: EntryMeta | None,
    trailer: list[tuple[str, str]],
) -> int:
    """Streams a fill's body to the client as it arrives; returns the status sent."""
    etag = meta.etag if meta else None
    last_modified = meta.last_modified if meta else None
    plan = plan_response(request, status=status, length=length, etag=etag, last_modified=last_modified)
    end = plan.end if plan.end >= 0 else None
    if not _start(request, writer, plan, headers, trailer, None if end is None else end - plan.start):
        return plan.status
    if request.method != "HEAD":
        async for chunk in fill.body(plan.start, end):
            await writer.write(chunk)
    writer.finish()
    return plan.status


async def deliver_relayed(
    request: Request,
    writer: Writer,
    *,
    status: int,
    headers: Iterable[tuple[str, str]],
    body: bytes | AsyncIterator[bytes],
    length: int | None,
    trailer: list[tuple[str, str]],
) -> None:
    """Sends a peer's answer to a plain request (no validators, no Range: the whole response).

    A body held whole goes out with its head in one write; a stream as it arrives.
    """
    if HOP_HEADER not in request.headers:  # a client, not a peer: no CDN-only fields
        headers = for_clients(headers)
    plan = Plan(status, 0, length if length is not None else -1)
    fields = _head_fields(plan, headers, trailer)
    if isinstance(body, bytes):
        writer.send_whole(status, fields, body)
        return
    writer.start(status, fields, length)
    if request.method != "HEAD":
        async for chunk in body:
            await writer.write(chunk)
    writer.finish()


class _Prebuilt:
    """One entry's prebuilt response for one second: what changes each second (Age, the ttl in
    Cache-Status) goes between a head prefix and suffix built once per stored entry."""

    __slots__ = ("head", "meta", "prefix", "start", "suffix", "until", "whole")

    def __init__(self, meta: EntryMeta, prefix: bytes, suffix: bytes) -> None:
        self.meta = meta  # the stored entry it was built for (the object: a new one rebuilds)
        self.prefix = prefix  # status line, stored fields, Accept-Ranges
        self.suffix = suffix  # Content-Length and the blank line
        self.start = 0.0  # head and whole serve while start <= now < until (one second at most)
        self.until = 0.0
        self.head = b""
        self.whole: bytes | None = None  # head + body for small bodies; else the body goes apart

    @property
    def held(self) -> int:
        """Bytes it holds beside the store's own copy of the body."""
        return len(self.prefix) + len(self.suffix) + len(self.head) + len(self.whole or b"")


class FastHeads:
    """Prebuilt responses for fresh memory hits, reused within the same second.

    Bounded in entries and in bytes (issue 10: the copies of small bodies are memory outside the
    store's budget): past either bound the table is emptied and refills with what is hit next.
    """

    __slots__ = ("_byte_limit", "_cache", "_limit", "_name", "held_bytes")

    def __init__(
        self, cache_name: str = CACHE_NAME, limit: int = 4096, byte_limit: int = 8 * 1024 * 1024
    ) -> None:
        self._name = cache_name  # this cache's Cache-Status member name
        self._cache: dict[bytes, _Prebuilt] = {}  # id → the response prebuilt for it
        self._limit = limit
        self._byte_limit = byte_limit
        self.held_bytes = 0  # heads and whole responses in the table

    def get(
        self, meta: EntryMeta, body: bytes, now: float, head_only: bool
    ) -> bytes | tuple[bytes, bytes] | None:
        """The full response (small bodies) or (head, body) of a fresh entry at `now`; None if not fresh."""
        built = self._cache.get(meta.key)
        if built is None or built.meta is not meta or not built.start <= now < built.until:
            built = self._build(built, meta, body, now)
            if built is None:
                return None
        if head_only:
            return built.head
        whole = built.whole
        return whole if whole is not None else (built.head, body)

    def _build(self, built: _Prebuilt | None, meta: EntryMeta, body: bytes, now: float) -> _Prebuilt | None:
        """The response of this second: the fields of the second between the entry's prefix and suffix."""
        ttl = meta.ttl(now)
        if ttl <= 0:
            return None
        replaced = built
        if built is None or built.meta is not meta:
            if meta.no_cache or any(n.lower() in CDN_ONLY_FIELDS for n, _ in meta.headers):
                return None  # (CDN-only fields go to peers, not clients: the slow path decides)
            fields = list(meta.headers)
            fields.append(("Accept-Ranges", "bytes"))
            built = _Prebuilt(
                meta, build_head(meta.status, fields)[:-2], b"Content-Length: %d\r\n\r\n" % len(body)
            )
        if len(self._cache) >= self._limit or self.held_bytes >= self._byte_limit:
            self._cache.clear()
            self.held_bytes = 0
            replaced = None
        if replaced is not None:
            self.held_bytes -= replaced.held
        second = float(int(now))
        status = cache_status(CacheOutcome.HIT, ttl=ttl, name=self._name)
        age = f"Age: {int(meta.age(now))}\r\nCache-Status: {status}\r\n".encode("latin-1", "replace")
        built.start, built.until = second, min(second + 1.0, now + ttl)
        built.head = head = built.prefix + age + built.suffix
        built.whole = head + body if len(body) <= INLINE_BODY_MAX else None
        self.held_bytes += built.held
        self._cache[meta.key] = built
        return built

    def drop(self, key: bytes) -> None:
        """Forgets a prebuilt response (its entry was replaced or removed)."""
        dropped = self._cache.pop(key, None)
        if dropped is not None:
            self.held_bytes -= dropped.held
