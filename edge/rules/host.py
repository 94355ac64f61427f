"""The Host a request names: validated against the URI host grammar and put in normal form — pure.

RFC 9110 §7.2 makes Host `uri-host [ ":" port ]`, with uri-host from RFC 3986 §3.2.2
(IP-literal, IPv4address or reg-name). The cache key is built from scheme, host and
target, so a Host that could carry a `/`, `?`, `#`, `%`, `\\`, `@` or whitespace would let
one request name another URL's key (`Host: site/static` + `/app.js` is the key of
`/static/app.js`). We accept a strict subset of the grammar and answer everything else 400:

- a name: dot-separated labels of letters, digits, `-` and `_` (1 to 63 each, 253 in all),
  which also covers dotted IPv4 addresses; no percent-encoding and no sub-delims (no name
  a resolver can look up uses them);
- an IPv6 literal in brackets (no zone id, no IPvFuture);
- an optional port of 1 to 65535.

The normal form is lower case, without the trailing dot of a fully qualified name,
without the scheme's default port (:80) or an empty one, and with the port's leading
zeros removed, so `Example.COM.:080` and `example.com` are one key. `is_normal_host` is
the hot path's check that a raw Host is already in normal form (up to case), so the fast
path can hash its bytes as they are and leave every other spelling to the slow path.
"""

from __future__ import annotations

import functools
import ipaddress
import re

__all__ = ["DEFAULT_PORT", "is_normal_host", "normalise_host"]

DEFAULT_PORT = 80  # the listener speaks plain http: its default port is never in a key

_MAX_NAME = 253  # RFC 1035 §2.3.4, without the trailing dot
_NAME = re.compile(r"(?:[a-z0-9_-]{1,63}\.)*[a-z0-9_-]{1,63}")
_PORT = re.compile(r"[0-9]{0,5}")
# a Host already in normal form (any case): a name, and a port that is neither 80 nor padded
_FAST = re.compile(rb"((?:[A-Za-z0-9_-]{1,63}\.)*[A-Za-z0-9_-]{1,63})(?::([1-9][0-9]{0,4}))?")


def _port(text: str) -> str | None:
    """The normal port suffix (":8080", or "" for none or the default); None when invalid."""
    if not _PORT.fullmatch(text):
        return None
    if not text:
        return ""  # RFC 3986 §3.2.3: an empty port is as if none were given
    number = int(text)
    if not 0 < number <= 65535:
        return None
    return "" if number == DEFAULT_PORT else f":{number}"


def normalise_host(raw: str) -> str | None:
    """The normal form of a Host value, or None when it is not a host with an optional port."""
    if not raw or len(raw) > _MAX_NAME + 8 or not raw.isascii():
        return None
    host = raw.lower()
    if host.startswith("["):
        # RFC 3986 §3.2.2 IP-literal: IPv6 only (IPvFuture and zone ids are refused)
        end = host.find("]")
        if end < 0 or "%" in host or (end + 1 < len(host) and host[end + 1] != ":"):
            return None
        try:
            address = ipaddress.IPv6Address(host[1:end])
        except ValueError:
            return None
        port = _port(host[end + 2 :]) if end + 1 < len(host) else ""
        return None if port is None else f"[{address.compressed}]{port}"
    name, sep, port_text = host.partition(":")
    port = _port(port_text) if sep else ""
    if port is None:
        return None
    if name.endswith("."):
        name = name[:-1]  # a fully qualified name names the same host
    if len(name) > _MAX_NAME or not _NAME.fullmatch(name):
        return None
    return name + port


@functools.lru_cache(maxsize=1024)
def is_normal_host(raw: bytes) -> bool:
    """True when `raw` is a valid Host already in normal form up to ASCII case (hot path)."""
    match = _FAST.fullmatch(raw)
    if match is None or len(match.group(1)) > _MAX_NAME:
        return False
    port = match.group(2)
    return port is None or (port != b"80" and int(port) <= 65535)
