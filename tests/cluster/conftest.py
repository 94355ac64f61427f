"""Fixtures for the cluster tests: the aiohttp `session` the origin tests use as well."""

from __future__ import annotations

from tests.origin.servers import session

__all__ = ["session"]
