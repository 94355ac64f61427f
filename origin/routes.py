"""Router: which origin pool serves a request, from its Host and raw target — pure.

Rules are tried in config order and the first match wins, so put specific rules before a
catch-all. Matching:

- host: compared case-insensitively, with the request's port and a trailing dot removed.
  "*" matches any host (an absent Host too); "*.example.com" matches any name ending in
  ".example.com" at any depth ("a.example.com", "a.b.example.com") but not "example.com"
  itself; anything else must be equal.
- path: `path_prefix` is a plain string prefix of the raw path (the target up to its first
  "?"), compared byte-for-byte without decoding. It does not respect segment boundaries:
  "/api" also matches "/apix" — write "/api/" to mean the folder. "/" matches every target,
  including "*" and absolute-form targets, so a catch-all rule always catches.
"""

from __future__ import annotations

from collections.abc import Iterable

from origin.config import RouteRule

__all__ = ["Router", "request_hostname"]


def request_hostname(host: str) -> str:
    """Lower-cases a Host header value and removes its port and trailing dot."""
    host = host.strip().lower()
    if host.startswith("["):
        # IPv6 literal: "[::1]:8080" -> "[::1]"
        end = host.find("]")
        return host[: end + 1] if end != -1 else host
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit():
        host = name
    return host.rstrip(".")


class Router:
    """Maps (host, target) to the first matching RouteRule, in config order."""

    __slots__ = ("_rules",)

    def __init__(self, rules: Iterable[RouteRule]) -> None:
        # (exact host or None, wildcard suffix or None, path prefix, rule); host "*" has both None
        compiled: list[tuple[str | None, str | None, str, RouteRule]] = []
        for rule in rules:
            pattern = rule.host.lower()
            if pattern == "*":
                compiled.append((None, None, rule.path_prefix, rule))
            elif pattern.startswith("*."):
                compiled.append((None, pattern[1:], rule.path_prefix, rule))
            else:
                compiled.append((pattern.rstrip("."), None, rule.path_prefix, rule))
        self._rules = tuple(compiled)

    def host_route(self, host: str) -> RouteRule | None:
        """The rule every path of `host` gets, or None when the path decides (or nothing matches)."""
        name = request_hostname(host)
        for exact, suffix, prefix, rule in self._rules:
            if exact is not None and name != exact:
                continue
            if suffix is not None and not (name.endswith(suffix) and len(name) > len(suffix)):
                continue
            return rule if prefix == "/" else None
        return None

    def match(self, host: str, target: str) -> RouteRule | None:
        """Returns the first rule matching the request, or None when no rule does."""
        name = request_hostname(host)
        path = target.partition("?")[0]
        for exact, suffix, prefix, rule in self._rules:
            if exact is not None and name != exact:
                continue
            if suffix is not None and not (name.endswith(suffix) and len(name) > len(suffix)):
                continue
            if prefix == "/" or path.startswith(prefix):
                return rule
        return None
