"""Cache-Control, CDN-Cache-Control and Surrogate-Control parsing into a frozen Directives value.

`parse_cache_control` reads the RFC 9111 §5.2 directive list (request and response side,
RFC 5861 stale-* extensions included); `response_directives` picks what a CDN obeys:
  1. a valid, non-empty CDN-Cache-Control (RFC 9213) replaces Cache-Control and Expires;
  2. else Surrogate-Control (W3C Edge Architecture 1.0) overrides Cache-Control's freshness
     (its max-age wins over max-age, s-maxage and Expires) and its no-store / no-store-remote
     stop storing; Cache-Control's other directives (private, no-store, no-cache, ...) still
     apply, so Surrogate-Control can set a CDN's TTL but never makes a private answer public;
  3. else Cache-Control.
Surrogate-Control is meant for the CDN only: `for_clients` removes it from what clients get.

Choices, where the RFCs leave room:
- Duplicate value directives: the first occurrence wins (RFC 9111 §4.2.1 "first
  occurrence"); flag directives count if present anywhere; field lists are merged.
- Cache-Control: invalid max-age / s-maxage arguments mean "already stale" (0); an invalid
  argument to stale-while-revalidate, stale-if-error, min-fresh or max-stale drops the
  directive. A quoted argument (`max-age="60"`) is accepted: RFC 9111 §5.2 only forbids
  senders to generate it and asks recipients to accept both forms.
- CDN-Cache-Control is a Structured Fields Dictionary (RFC 9213 §2.1, RFC 8941): max-age,
  s-maxage, stale-while-revalidate, stale-if-error, min-fresh and max-stale take an Integer
  >= 0; any other type (`max-age="60"` is a String, `max-age=1.5` a Decimal) makes the whole
  field invalid, so it is ignored and Cache-Control applies.
- Surrogate-Control: `max-age=N+M` uses N (the +M stale extension is not implemented);
  directives aimed at a named device (`max-age=60;edge2`) are not for us and are skipped;
  an invalid max-age (`max-age =60`, `max-age=abc`) is dropped, leaving Cache-Control's.
- Unknown directives are ignored (they still make a CDN-Cache-Control field non-empty).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache

from edge.rules.httpdate import parse_delta_seconds

__all__ = [
    "CDN_ONLY_FIELDS",
    "EMPTY",
    "Directives",
    "for_clients",
    "parse_cache_control",
    "request_directives",
    "response_directives",
]


@dataclass(frozen=True, slots=True)
class Directives:
    """The cache directives of one message; absent value directives are None."""

    max_age: int | None = None
    s_maxage: int | None = None
    no_store: bool = False
    no_cache: bool = False
    no_cache_fields: tuple[str, ...] = ()  # lower-cased; empty when unqualified
    private: bool = False
    private_fields: tuple[str, ...] = ()  # lower-cased; empty when unqualified
    public: bool = False
    must_revalidate: bool = False
    proxy_revalidate: bool = False
    immutable: bool = False
    stale_while_revalidate: int | None = None  # RFC 5861 §3
    stale_if_error: int | None = None  # RFC 5861 §4
    must_understand: bool = False
    no_transform: bool = False
    # request-only directives (RFC 9111 §5.2.1)
    max_stale: float | None = None  # math.inf when given without an argument
    min_fresh: int | None = None
    only_if_cached: bool = False


EMPTY = Directives()

_FLAGS = {
    "no-store": "no_store",
    "public": "public",
    "must-revalidate": "must_revalidate",
    "proxy-revalidate": "proxy_revalidate",
    "immutable": "immutable",
    "must-understand": "must_understand",
    "no-transform": "no_transform",
    "only-if-cached": "only_if_cached",
}
# RFC 9111 §4.2.1: an invalid max-age / s-maxage makes the response stale.
_STALE_IF_INVALID = {"max-age": "max_age", "s-maxage": "s_maxage"}
_DROP_IF_INVALID = {
    "stale-while-revalidate": "stale_while_revalidate",
    "stale-if-error": "stale_if_error",
    "min-fresh": "min_fresh",
}
# RFC 9213 §2.1 / RFC 8941 §3.2: a targeted field is a Structured Fields Dictionary.
_KEY = r"[a-z*][a-z0-9_\-.*]*"
_ITEM = (
    r'-?\d{1,15}(?:\.\d{1,3})?|"(?:[^"\\]|\\.)*"|[A-Za-z*][!#$%&\'*+\-.^_`|~0-9A-Za-z:/]*'
    r"|\?[01]|:[A-Za-z0-9+/=]*:"
)
_SF_KEY = re.compile(_KEY)
_SF_NON_NEGATIVE_INTEGER = re.compile(r"\d{1,15}")
# RFC 9213 §2.1: these take an Integer; another type makes the field invalid.
_INTEGER_DIRECTIVES = frozenset(
    {"max-age", "s-maxage", "stale-while-revalidate", "stale-if-error", "min-fresh", "max-stale"}
)
# Surrogate-Control directives this cache honours (the rest, e.g. content="ESI/1.0", are skipped).
_SURROGATE_NO_STORE = frozenset({"no-store", "no-store-remote"})

# Response fields addressed to the CDN alone, never forwarded to clients.
CDN_ONLY_FIELDS = frozenset({"surrogate-control"})

_CC, _CDN, _SURROGATE = "cc", "cdn", "surrogate"  # how _parse reads a field
_SF_VALUE = re.compile(rf"({_ITEM})(?:[ \t]*;[ \t]*{_KEY}(?:=(?:{_ITEM}))?)*")


def parse_cache_control(values: Iterable[str]) -> Directives:
    """Parses Cache-Control field lines (merged in order) into Directives."""
    parsed = _parse(tuple(values), _CC)
    return parsed[0] if parsed is not None else EMPTY


def request_directives(headers: Mapping[str, str]) -> Directives:
    """The request's Cache-Control directives (case-insensitive mapping expected)."""
    value = headers.get("Cache-Control")
    return EMPTY if value is None else parse_cache_control((value,))


def response_directives(headers: Iterable[tuple[str, str]]) -> tuple[Directives, bool]:
    """The directives a CDN obeys, and whether they came from CDN-Cache-Control (RFC 9213)."""
    cc: list[str] = []
    cdn: list[str] = []
    surrogate: list[str] = []
    for name, value in headers:
        lname = name.lower()
        if lname == "cache-control":
            cc.append(value)
        elif lname == "cdn-cache-control":
            cdn.append(value)
        elif lname == "surrogate-control":
            surrogate.append(value)
    # RFC 9213 §2.2: a valid, non-empty targeted field wins; otherwise it is ignored.
    if cdn:
        targeted = _parse(tuple(cdn), _CDN)
        if targeted is not None and targeted[1] > 0:
            return targeted[0], True
    directives = parse_cache_control(cc)
    if surrogate:
        parsed = _parse(tuple(surrogate), _SURROGATE)
        if parsed is not None:
            directives = _with_surrogate(directives, parsed[0])
    return directives, False


def for_clients(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The response fields without those addressed to the CDN alone (Surrogate-Control)."""
    return [(n, v) for n, v in headers if n.lower() not in CDN_ONLY_FIELDS]


def _with_surrogate(cc: Directives, surrogate: Directives) -> Directives:
    """Cache-Control's directives with Surrogate-Control's lifetime and no-store laid over."""
    if surrogate.max_age is not None:
        cc = replace(cc, max_age=surrogate.max_age, s_maxage=None)
    if surrogate.no_store:
        cc = replace(cc, no_store=True)
    return cc


@lru_cache(maxsize=2048)
def _parse(values: tuple[str, ...], mode: str) -> tuple[Directives, int] | None:
    """Directives plus the count of members seen; None when a CDN field is not a valid SF dict."""
    strict = mode == _CDN
    surrogate = mode == _SURROGATE
    fields: dict[str, object] = {}
    no_cache_fields: list[str] = []
    private_fields: list[str] = []
    count = 0
    for value in values:
        for name, arg in _members(value, raw=strict or surrogate):
            if surrogate:
                ours = _surrogate_member(name, arg)
                if ours is None:
                    continue
                name, arg = ours
            if strict:
                member = _strict_member(name, arg)
                if member is False:
                    return None
                count += 1
                if member is True:
                    continue  # `directive=?0`: a valid member that switches itself off
                name, arg = member
            else:
                count += 1
            name = name.lower()
            if arg is not None:
                arg = _unquote(arg)
            attr = _FLAGS.get(name)
            if surrogate:
                if name in _SURROGATE_NO_STORE:
                    fields["no_store"] = True
                elif name == "max-age" and arg is not None:
                    seconds = parse_delta_seconds(arg)
                    if seconds is not None:
                        fields.setdefault("max_age", seconds)
                continue
            if attr is not None:
                fields[attr] = True
            elif name in _STALE_IF_INVALID:
                seconds = None if arg is None else parse_delta_seconds(arg)
                fields.setdefault(_STALE_IF_INVALID[name], 0 if seconds is None else seconds)
            elif name in _DROP_IF_INVALID:
                seconds = None if arg is None else parse_delta_seconds(arg)
                if seconds is not None:
                    fields.setdefault(_DROP_IF_INVALID[name], seconds)
            elif name == "max-stale":
                stale = math.inf if arg is None else parse_delta_seconds(arg)
                if stale is not None:
                    fields.setdefault("max_stale", float(stale))
            elif name == "no-cache":
                fields["no_cache"] = True
                _add_field_names(no_cache_fields, arg)
            elif name == "private":
                fields["private"] = True
                _add_field_names(private_fields, arg)
    directives = Directives(
        no_cache_fields=tuple(no_cache_fields),
        private_fields=tuple(private_fields),
        **fields,  # type: ignore[arg-type]
    )
    return directives, count


def _members(value: str, *, raw: bool) -> Iterator[tuple[str, str | None]]:
    """Splits one field line into (name, argument or None), skipping empty members.

    `raw` keeps whitespace next to "=" (it makes a CDN or Surrogate-Control member invalid);
    otherwise it is forgiven, as Cache-Control always has been here.
    """
    parts = value.split(",") if '"' not in value else _split_quoted(value)
    for part in parts:
        name, sep, arg = part.strip(" \t").partition("=")
        if not raw:
            name, arg = name.strip(), arg.strip()
        if name.strip():
            yield name, arg if sep else None


def _unquote(arg: str) -> str:
    """Removes the quotes and backslash escapes of a quoted-string argument."""
    if len(arg) >= 2 and arg[0] == '"' and arg[-1] == '"':
        return re.sub(r"\\(.)", r"\1", arg[1:-1])
    return arg


def _split_quoted(value: str) -> list[str]:
    """Splits on commas outside quoted-strings (RFC 9110 §5.6.4), honouring backslash escapes."""
    parts: list[str] = []
    start = 0
    quoted = escaped = False
    for i, ch in enumerate(value):
        if escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            parts.append(value[start:i])
            start = i + 1
    parts.append(value[start:])
    return parts


def _strict_member(name: str, arg: str | None) -> tuple[str, str | None] | bool:
    """Validates one SF Dictionary member: False = invalid, True = an explicit `?0` (off)."""
    if ";" in name:
        name, arg = name.split(";", 1)[0].rstrip(), None  # `key;param=1`: true, with parameters
    if not _SF_KEY.fullmatch(name):
        return False
    if arg is None:
        return name, None
    match = _SF_VALUE.fullmatch(arg)
    if match is None:
        return False
    item = match.group(1)
    if item == "?0":
        return True
    if name in _INTEGER_DIRECTIVES and not _SF_NON_NEGATIVE_INTEGER.fullmatch(item):
        return False  # RFC 9213 §2.1: wrong type (String, Token, Decimal...) or negative
    return name, None if item == "?1" else item


def _surrogate_member(name: str, arg: str | None) -> tuple[str, str | None] | None:
    """A Surrogate-Control member for every surrogate, or None (targeted elsewhere, or spaced)."""
    if ";" in name or (arg is not None and ";" in arg):
        return None  # `directive;device`: aimed at a named surrogate, not at us
    if name != name.strip() or (arg is not None and arg != arg.strip()):
        return None  # `max-age =60` / `max-age= 60`: not the directive syntax
    if arg is not None and name.lower() == "max-age":
        arg = arg.partition("+")[0]  # `max-age=N+M`: N is the lifetime
    return name, arg


def _add_field_names(into: list[str], arg: str | None) -> None:
    """Appends the lower-cased field names of a qualified no-cache / private argument."""
    if arg:
        for field in arg.split(","):
            field = field.strip().lower()
            if field and field not in into:
                into.append(field)
