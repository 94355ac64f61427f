"""Cache-Control and CDN-Cache-Control parsing into a frozen Directives value.

`parse_cache_control` reads the RFC 9111 §5.2 directive list (request and response side,
RFC 5861 stale-* extensions included); `response_directives` picks the field a CDN obeys
(RFC 9213): a valid, non-empty CDN-Cache-Control replaces Cache-Control and Expires.

Choices, where the RFC leaves room:
- Duplicate value directives: the first occurrence wins (RFC 9111 §4.2.1 "first
  occurrence"); flag directives count if present anywhere; field lists are merged.
- Invalid max-age / s-maxage arguments mean "already stale" (0); an invalid argument to
  stale-while-revalidate, stale-if-error, min-fresh or max-stale drops the directive.
- Unknown directives are ignored (they still make a CDN-Cache-Control field non-empty).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache

from edge.rules.httpdate import parse_delta_seconds

__all__ = [
    "EMPTY",
    "Directives",
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
_SF_VALUE = re.compile(rf"({_ITEM})(?:[ \t]*;[ \t]*{_KEY}(?:=(?:{_ITEM}))?)*")


def parse_cache_control(values: Iterable[str]) -> Directives:
    """Parses Cache-Control field lines (merged in order) into Directives."""
    parsed = _parse(tuple(values), strict=False)
    return parsed[0] if parsed is not None else EMPTY


def request_directives(headers: Mapping[str, str]) -> Directives:
    """The request's Cache-Control directives (case-insensitive mapping expected)."""
    value = headers.get("Cache-Control")
    return EMPTY if value is None else parse_cache_control((value,))


def response_directives(headers: Iterable[tuple[str, str]]) -> tuple[Directives, bool]:
    """The directives a CDN obeys, and whether they came from CDN-Cache-Control (RFC 9213)."""
    cc: list[str] = []
    cdn: list[str] = []
    for name, value in headers:
        lname = name.lower()
        if lname == "cache-control":
            cc.append(value)
        elif lname == "cdn-cache-control":
            cdn.append(value)
    # RFC 9213 §2.2: a valid, non-empty targeted field wins; otherwise it is ignored.
    if cdn:
        targeted = _parse(tuple(cdn), strict=True)
        if targeted is not None and targeted[1] > 0:
            return targeted[0], True
    return parse_cache_control(cc), False


@lru_cache(maxsize=2048)
def _parse(values: tuple[str, ...], strict: bool) -> tuple[Directives, int] | None:
    """Directives plus the count of members seen; None when `strict` and not a valid SF dict."""
    fields: dict[str, object] = {}
    no_cache_fields: list[str] = []
    private_fields: list[str] = []
    count = 0
    for value in values:
        for name, arg in _members(value):
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


def _members(value: str) -> Iterator[tuple[str, str | None]]:
    """Splits one field line into (name, raw argument or None), skipping empty members."""
    parts = value.split(",") if '"' not in value else _split_quoted(value)
    for part in parts:
        name, sep, arg = part.partition("=")
        name = name.strip()
        if name:
            yield name, arg.strip() if sep else None


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
    return name, None if item == "?1" else item


def _add_field_names(into: list[str], arg: str | None) -> None:
    """Appends the lower-cased field names of a qualified no-cache / private argument."""
    if arg:
        for field in arg.split(","):
            field = field.strip().lower()
            if field and field not in into:
                into.append(field)
