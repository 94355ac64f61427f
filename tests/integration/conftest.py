"""Fixtures for integration tests: a demo origin process and edge node processes on loopback."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Proc, free_port, start_edge, start_origin, write_config

_node_addr = itertools.count(2)


def next_loopback() -> str:
    """A distinct 127.0.0.x per edge node (127.0.0.2 … 127.0.0.250, then wraps)."""
    return f"127.0.0.{2 + (next(_node_addr) - 2) % 249}"


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    """One demo origin process per test module."""
    logs = tmp_path_factory.mktemp("origin-logs")
    proc = start_origin(logs)
    try:
        yield proc
    finally:
        proc.stop()


EdgeFactory = Callable[..., Proc]


@pytest.fixture
def edge_factory(tmp_path: Path, origin: Proc) -> Iterator[EdgeFactory]:
    """Starts edge nodes in front of `origin`; all are stopped after the test."""
    started: list[Proc] = []

    def start(*, cache: dict[str, Any] | None = None, coalesce: dict[str, Any] | None = None,
              origin_opts: dict[str, Any] | None = None, disk: bool = False, name: str = "edge1",
              config: Path | None = None, origin_url: str | None = None) -> Proc:
        if config is None:
            host = next_loopback()
            cache = dict(cache or {})
            if disk:
                cache.setdefault("disk_dir", str(tmp_path / "cache-{node}"))
            config = write_config(tmp_path / f"{name}.toml", origin_url=origin_url or origin.url,
                                  nodes={name: f"{host}:{free_port(host)}"}, cache=cache, coalesce=coalesce,
                                  origin=origin_opts)
        proc = start_edge(config, name, tmp_path / "logs")
        proc.extra["config"] = config
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in started:
            proc.stop()


@pytest.fixture
def edge(edge_factory: EdgeFactory) -> Proc:
    """One edge node (memory tier only) in front of the module's origin."""
    return edge_factory()


# -- appended for test_http_caching / test_ranges / test_forwarding ---------------------------
import re
from collections.abc import AsyncIterator

import aiohttp

from tests.integration.purge_harness import VersionedOrigin


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A name made from the test's own name: object paths that no other test of the module uses."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name).strip("-")


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    """An aiohttp session that keeps bodies as sent (no decompression) and stores no cookies."""
    jar = aiohttp.DummyCookieJar()
    async with aiohttp.ClientSession(auto_decompress=False, cookie_jar=jar) as session:
        yield session


@pytest.fixture
def session(client: aiohttp.ClientSession) -> aiohttp.ClientSession:
    """The same client, under the name the purge tests use."""
    return client


@pytest.fixture
async def vorigin() -> AsyncIterator[VersionedOrigin]:
    """An in-process origin whose objects change version on demand (purge tests)."""
    origin = await VersionedOrigin().start()
    try:
        yield origin
    finally:
        await origin.close()
