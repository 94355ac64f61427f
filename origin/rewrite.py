"""Applies a pool's OriginRewrite to a request on its way out and to a response head coming back — pure.

    target     strip_path_prefix when the path starts with it at a segment boundary ("/static"
               strips "/static/a" and "/static?x", never "/staticfiles"), then add_path_prefix
    Host       OriginRewrite.host, else the client's
    request    the configured request_headers replace any the client sent under those names
    response   remove_response_headers dropped, then response_headers set (replacing the origin's)

Names are compared folded (origin.fieldnames: case and `_`/`-` alike), so a client cannot
slip its own value of a configured header past the rewrite under another spelling.
"""

from __future__ import annotations

from origin.config import OriginRewrite
from origin.fieldnames import fold_name
from origin.upstream import Headers

__all__ = ["rewrite_host", "rewrite_request_headers", "rewrite_response_headers", "rewrite_target"]


def rewrite_target(rewrite: OriginRewrite, target: str) -> str:
    """The request target sent to the origin for the client's `target`."""
    strip = rewrite.strip_path_prefix
    if (
        strip is not None
        and target.startswith(strip)
        and target[len(strip) : len(strip) + 1] in ("", "/", "?")
    ):
        target = target[len(strip) :]
        if not target.startswith("/"):
            target = "/" + target  # "/static" -> "/", "/static?x" -> "/?x"
    if rewrite.add_path_prefix is not None:
        target = rewrite.add_path_prefix + target
    return target


def rewrite_host(rewrite: OriginRewrite, host: str) -> str:
    """The Host sent to the origin for the client's `host`."""
    return rewrite.host if rewrite.host is not None else host


def rewrite_request_headers(rewrite: OriginRewrite, headers: Headers) -> Headers:
    """The client's forwarded headers with the configured ones set in their place."""
    if not rewrite.request_headers:
        return headers
    replaced = {fold_name(name) for name, _ in rewrite.request_headers}
    kept = tuple((name, value) for name, value in headers if fold_name(name) not in replaced)
    return kept + rewrite.request_headers


def rewrite_response_headers(rewrite: OriginRewrite, headers: Headers) -> Headers:
    """The origin's response headers as the edge stores and serves them."""
    drop = rewrite.remove_response_headers | {fold_name(name) for name, _ in rewrite.response_headers}
    if not drop:
        return headers
    kept = tuple((name, value) for name, value in headers if fold_name(name) not in drop)
    return kept + rewrite.response_headers
