"""The bytes of a peer hop: request heads, response framing and whether a connection is reused — pure.

A request head is built as one bytes object per request: the request line, `Host`, the
forwarded fields (hop-by-hop ones and those the client named in `Connection` dropped, as
origin/hopbyhop.py says), then the node's own fields, which `HopHead` encodes once per peer
client (`X-Edge-Hop`, `X-Edge-Secret`), and last the per-request `X-Edge-Deadline` and, when
a body is sent, `Content-Length`. A target that is not origin-form, or any field that would
split the head (CR or LF in a name or value), is refused with InvalidTarget before a byte
is sent.

A response's framing decides whether its connection may carry the next request
(`reuse_verdict`): only a complete response that ended where its framing said
(Content-Length or the last chunk, or a status that has no body) on a connection the peer
keeps open. Everything else closes, each "no" named by `Reuse`.
"""

from __future__ import annotations

from enum import Enum

from origin.errors import InvalidTarget
from origin.hopbyhop import HOP_BY_HOP, connection_options

__all__ = ["Framing", "HopHead", "Reuse", "framing_of", "reuse_verdict"]

Headers = tuple[tuple[str, str], ...]

# Fields the client sets itself: Host from the request, Content-Length from the body.
_OWN_REQUEST_FIELDS = frozenset({"host", "content-length"})


class Framing(Enum):
    """How a response body ends (RFC 9112 §6.3)."""

    NONE = "none"  # no body: 204, 304, or the answer to HEAD
    LENGTH = "length"  # Content-Length bytes
    CHUNKED = "chunked"  # the last (zero-size) chunk
    UNTIL_CLOSE = "until-close"  # neither: the body ends when the peer closes


class Reuse(Enum):
    """Whether a connection may carry another request after a response; each no named."""

    REUSE = "reuse"
    NOT_FRAMED = "not-framed"  # the body ran to the close of the connection
    INCOMPLETE = "incomplete"  # the response had not ended (abandoned, failed, cut off)
    PEER_CLOSES = "peer-closes"  # Connection: close, or HTTP/1.0 without keep-alive
    HEAD_ONLY = "head-only"  # answer to HEAD: the parser cannot be told to expect no body
    EXTRA_BYTES = "extra-bytes"  # bytes after the end of the response that nobody asked for


def framing_of(status: int, head_only: bool, content_length: bool, chunked: bool) -> Framing:
    """The framing of a final response from its status and its framing fields."""
    if head_only or status in (204, 304):
        return Framing.NONE
    if chunked:
        return Framing.CHUNKED  # RFC 9112 §6.3: chunked wins over Content-Length
    if content_length:
        return Framing.LENGTH
    return Framing.UNTIL_CLOSE


def reuse_verdict(framing: Framing, *, complete: bool, keep_alive: bool, extra_bytes: bool) -> Reuse:
    """Whether the connection that carried a response may carry the next request."""
    if not complete:
        return Reuse.INCOMPLETE
    if framing is Framing.UNTIL_CLOSE:
        return Reuse.NOT_FRAMED
    if extra_bytes:
        return Reuse.EXTRA_BYTES
    if not keep_alive:
        return Reuse.PEER_CLOSES
    return Reuse.REUSE


def _check_target(target: str) -> None:
    # RFC 9112 §3.2.1: origin-form is absolute-path [ "?" query ]; no fragment, no whitespace.
    if not target.startswith("/") or "#" in target:
        raise InvalidTarget(f"target {target!r} is not origin-form (/path?query)")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in target):
        raise InvalidTarget(f"target {target!r} contains whitespace or control characters")


class HopHead:
    """Builds request heads for one peer: the node's own fields are encoded once."""

    __slots__ = ("_drop", "_own", "_own_lines")

    def __init__(self, own: Headers, replaced: frozenset[str]) -> None:
        """`own`: fields added to every request; `replaced`: lower-case names dropped from the
        forwarded fields (the own ones and the per-request ones the caller appends)."""
        for name, value in own:
            _check_field(name, value)
        self._own = "".join(f"{name}: {value}\r\n" for name, value in own)
        self._own_lines = len(own)
        self._drop = HOP_BY_HOP | _OWN_REQUEST_FIELDS | replaced

    def build(
        self, method: str, target: str, host: str, headers: Headers, last: Headers, body_length: int | None
    ) -> bytes:
        """The whole request head; `last` fields go after the own ones (e.g. the deadline)."""
        _check_target(target)
        if not method.isalpha() or not method.isascii():
            raise InvalidTarget(f"method {method!r} is not a token")
        drop = self._drop
        for name, _ in headers:
            if name.lower() == "connection":  # rare: fields it names go too (RFC 9110 §7.6.1)
                drop = drop | connection_options(headers)
                break
        parts = [f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n"]
        lines = 2
        for name, value in headers:
            if name.lower().replace("_", "-") not in drop:
                parts.append(f"{name}: {value}\r\n")
                lines += 1
        parts.append(self._own)
        lines += self._own_lines
        for name, value in last:
            parts.append(f"{name}: {value}\r\n")
            lines += 1
        if body_length is not None:
            parts.append(f"Content-Length: {body_length}\r\n")
            lines += 1
        parts.append("\r\n")
        text = "".join(parts)
        # one count instead of a check per field: a CR or LF inside any name or value (the host
        # included) would add to it and split the head; a stray ":" is harmless to llhttp peers
        if text.count("\n") != lines + 1 or text.count("\r") != lines + 1:
            raise InvalidTarget("a header field or the host contains CR or LF; not sent")
        try:
            return text.encode("latin-1")
        except UnicodeEncodeError as exc:
            raise InvalidTarget(f"a header field is not latin-1: {exc}") from exc


def _check_field(name: str, value: str) -> None:
    if not name or any(c in name for c in ":\r\n ") or "\r" in value or "\n" in value:
        raise ValueError(f"header field {name!r} cannot be sent as is")
