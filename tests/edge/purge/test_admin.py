"""Unit tests for edge.purge.admin: bearer tokens, host permissions, rate limits, validation (issue 5)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from cluster.propagate import PurgeResult
from cluster.purge import JournalError, Purge, PurgeKind
from edge.purge.admin import Admin, BadPurge, TokenBucket, parse_purge
from edge.config.purge import AdminConfig, AdminToken
from tests.fakes import FakeClock

OPS = "ops-token-0123456789abcdef"
DEMO = "demo-token-0123456789abcd"


class FakeHub:
    """Records submitted purges; answers with `pending` nodes when told to."""

    def __init__(self) -> None:
        self.submitted: list[tuple[PurgeKind, str, str, bool]] = []
        self.pending: tuple[str, ...] = ()
        self.accepting = True
        self.fail = False

    async def submit(self, kind: PurgeKind, value: str, host: str, soft: bool, *, timeout_s: float) -> PurgeResult:
        if self.fail:
            raise JournalError("disk full")
        self.submitted.append((kind, value, host, soft))
        purge = Purge("n1", len(self.submitted), kind, value, host, soft, 0.0)
        return PurgeResult(purge, ("n1", "n2"), self.pending)


@pytest.fixture
def hub() -> FakeHub:
    return FakeHub()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(0.0)


@pytest.fixture
async def client(hub: FakeHub, clock: FakeClock) -> AsyncIterator[TestClient[Any, Any]]:
    config = AdminConfig(rate_per_s=1.0, burst=2, tokens=(
        AdminToken(name="ops", token=OPS, hosts=("*",)),
        AdminToken(name="demo", token=DEMO, hosts=("demo.local",))))
    admin = Admin(config, hub, lambda: {"node": "n1"}, clock=clock)
    async with TestClient(TestServer(admin.app(), host="127.0.0.1")) as c:
        yield c


async def _post(client: TestClient[Any, Any], body: object, token: str | None = OPS) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with client.post("/purge", data=data, headers=headers) as r:
        return r.status, json.loads(await r.text())


class TestAuth:
    async def test_purge_is_401_and_nothing_purged_when_token_missing_or_wrong(
        self, client: TestClient[Any, Any], hub: FakeHub
    ) -> None:
        assert (await _post(client, {"url": "http://demo.local/a"}, token=None))[0] == 401
        assert (await _post(client, {"url": "http://demo.local/a"}, token="x" * 25))[0] == 401
        assert hub.submitted == []

    async def test_purge_is_403_when_token_is_for_another_host(self, client: TestClient[Any, Any],
                                                               hub: FakeHub) -> None:
        status, body = await _post(client, {"url": "http://other.test/a"}, token=DEMO)
        assert status == 403 and "other.test" in body["error"] and hub.submitted == []

    async def test_purge_is_allowed_when_token_names_the_host_with_a_port(self, client: TestClient[Any, Any],
                                                                          hub: FakeHub) -> None:
        status, _ = await _post(client, {"url": "http://demo.local:8080/a"}, token=DEMO)
        assert status == 200 and hub.submitted[0][2] == "demo.local:8080"

    async def test_status_is_401_without_token_and_200_with_one(self, client: TestClient[Any, Any]) -> None:
        async with client.get("/status") as r:
            assert r.status == 401
        async with client.get("/status", headers={"Authorization": f"Bearer {DEMO}"}) as r:
            assert r.status == 200 and (await r.json())["node"] == "n1"


class TestRateLimit:
    async def test_purge_is_429_with_retry_after_when_burst_is_spent(
        self, client: TestClient[Any, Any], hub: FakeHub, clock: FakeClock
    ) -> None:
        for _ in range(2):
            assert (await _post(client, {"all": "demo.local"}))[0] == 200
        async with client.post("/purge", data=b'{"all": "demo.local"}',
                               headers={"Authorization": f"Bearer {OPS}"}) as r:
            assert r.status == 429 and r.headers["Retry-After"] == "1"
        assert len(hub.submitted) == 2
        assert (await _post(client, {"all": "demo.local"}, token=DEMO))[0] == 200  # buckets are per token
        clock.advance(1.0)
        assert (await _post(client, {"all": "demo.local"}))[0] == 200


class TestValidation:
    @pytest.mark.parametrize("body", [b"{not json", b"[1]", {"url": "http://a/b", "tag": "t"}, {"flush": "x"},
                                      {"url": "ftp://a/b"}, {"url": "/relative"}, {"tag": "t"},
                                      {"tag": "a b", "host": "a"}, {"url": "http://a/b", "soft": "yes"},
                                      {"url": "http://a/b", "host": "a"}, {"all": "*"}])
    async def test_purge_is_400_with_reason_when_body_is_malformed(
        self, client: TestClient[Any, Any], hub: FakeHub, body: object
    ) -> None:
        status, answer = await _post(client, body)
        assert status == 400 and answer["error"] and "\n" not in answer["error"]
        assert hub.submitted == []

    def test_parse_purge_normalises_url_when_host_has_capitals(self) -> None:
        wanted = parse_purge(b'{"url": "https://Demo.Local/a?b=1", "soft": true}')
        assert (wanted.kind, wanted.value, wanted.host, wanted.soft) == (
            PurgeKind.URL, "http://demo.local/a?b=1", "demo.local", True)

    def test_parse_purge_raises_when_fragment_given(self) -> None:
        with pytest.raises(BadPurge):
            parse_purge(b'{"url": "http://a/b#x"}')


class TestAnswers:
    async def test_purge_is_202_with_pending_nodes_when_some_did_not_ack(
        self, client: TestClient[Any, Any], hub: FakeHub
    ) -> None:
        hub.pending = ("n3",)
        status, body = await _post(client, {"prefix": "http://demo.local/img/"})
        assert status == 202 and body == {"id": "n1:1", "acked": ["n1", "n2"], "pending": ["n3"]}
        assert hub.submitted == [(PurgeKind.PREFIX, "http://demo.local/img/", "demo.local", False)]

    async def test_purge_is_503_when_journal_fails_or_node_is_catching_up(
        self, client: TestClient[Any, Any], hub: FakeHub
    ) -> None:
        hub.accepting = False
        assert (await _post(client, {"all": "demo.local"}))[0] == 503
        hub.accepting, hub.fail = True, True
        assert (await _post(client, {"all": "demo.local"}))[0] == 503


class TestTokenBucket:
    def test_take_refills_at_rate_when_time_passes(self) -> None:
        bucket = TokenBucket(2.0, 3, now=0.0)
        assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
        assert bucket.take(0.0) == pytest.approx(0.5)
        assert bucket.take(0.5) == 0.0
        assert bucket.take(100.0) == 0.0  # capped at burst
        assert [bucket.take(100.0) for _ in range(3)][-1] > 0
