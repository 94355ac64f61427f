"""What stops a node before it serves: StartupError, and the HTTP parser check."""

from __future__ import annotations

__all__ = ["StartupError", "check_parsers"]


class StartupError(RuntimeError):
    """The node cannot start; the message says what to do."""


def check_parsers() -> None:
    """Refuses to run on aiohttp's pure-Python HTTP parser (lenient: a smuggling risk)."""
    from aiohttp import http_parser

    c_parser = getattr(http_parser, "HttpResponseParserC", None)
    if c_parser is None or http_parser.HttpResponseParser is not c_parser:
        raise StartupError(
            "aiohttp is running its pure-Python HTTP parser (AIOHTTP_NO_EXTENSIONS set, or the C "
            "extension failed to build); unset AIOHTTP_NO_EXTENSIONS or reinstall aiohttp from a wheel"
        )
