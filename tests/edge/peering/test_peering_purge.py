"""edge.peering.routing.PeerGate's purge endpoints: secret first, journal+apply before the 200, catch-up pages (issue 5)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from multidict import CIMultiDict

from cluster.peer import SECRET_HEADER
from cluster.purge import Purge, PurgeKind
from cluster.purge_wire import PURGE_PATH, PURGES_PATH, cursor_query, decode_page, encode_purge
from edge.peering.routing import PeerGate
from edge.server.request import Request
from edge.server.writer import Writer

SECRET = "s3cret"
PURGE = Purge("n2", 1, PurgeKind.URL, "http://a.test/x", "a.test", False, 5.0)


class FakeHub:
    self_name = "n1"

    def __init__(self) -> None:
        self.received: list[Purge] = []
        self.cursors: list[Mapping[str, int]] = []

    async def receive(self, purge: Purge) -> int | None:
        self.received.append(purge)
        return len(self.received)

    def missing(self, cursor: Mapping[str, int], limit: int = 1000, *,
                asker: str | None = None) -> tuple[Sequence[Purge], bool]:
        self.cursors.append(cursor)
        return [PURGE], False


class FakeHandler:
    def __init__(self) -> None:
        self.calls = 0

    async def handle(self, request: Request, writer: Writer, *, from_peer: bool = False) -> None:
        self.calls += 1


class FakeWriter:
    """Records simple answers and streamed bodies."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, str]] = []
        self.status = 0
        self.body = b""

    async def send_simple(self, status: int, reason: str, **_: Any) -> None:
        self.sent.append((status, reason))

    def start(self, status: int, headers: list[tuple[str, str]], length: int | None) -> None:
        self.status = status

    async def write(self, chunk: bytes) -> None:
        self.body += chunk

    def finish(self) -> None:
        pass


def _request(method: str, target: str, body: bytes | None, secret: str | None = SECRET) -> Request:
    headers = CIMultiDict([("Host", "n1")] + ([(SECRET_HEADER, secret)] if secret else []))
    return Request(method=method, target=target, version="1.1", headers=headers, body=body, keep_alive=True,
                   peer="127.0.0.3")


class TestPurgeEndpoints:
    async def test_post_purge_is_403_and_not_received_when_secret_is_missing(self) -> None:
        hub, writer = FakeHub(), FakeWriter()
        await PeerGate(FakeHandler(), SECRET, purges=hub).handle(
            _request("POST", PURGE_PATH, encode_purge(PURGE), secret=None), writer)  # type: ignore[arg-type]
        assert writer.sent[0][0] == 403 and hub.received == []

    async def test_post_purge_answers_200_after_receive_when_body_is_valid(self) -> None:
        hub, writer, handler = FakeHub(), FakeWriter(), FakeHandler()
        await PeerGate(handler, SECRET, purges=hub).handle(
            _request("POST", PURGE_PATH, encode_purge(PURGE)), writer)  # type: ignore[arg-type]
        assert writer.sent == [(200, "ok")] and hub.received == [PURGE] and handler.calls == 0

    async def test_post_purge_is_400_when_body_is_not_a_purge(self) -> None:
        hub, writer = FakeHub(), FakeWriter()
        await PeerGate(FakeHandler(), SECRET, purges=hub).handle(
            _request("POST", PURGE_PATH, b"\x93\x01\x02\x03"), writer)  # type: ignore[arg-type]
        assert writer.sent[0][0] == 400 and hub.received == []

    async def test_get_purges_returns_page_for_the_cursor_sent(self) -> None:
        hub, writer = FakeHub(), FakeWriter()
        target = f"{PURGES_PATH}?{cursor_query({'n2': 0, 'n1': 4})}"
        await PeerGate(FakeHandler(), SECRET, purges=hub).handle(
            _request("GET", target, None), writer)  # type: ignore[arg-type]
        page = decode_page(writer.body)
        assert writer.status == 200 and page.purges == [PURGE] and not page.more and page.node == "n1"
        assert hub.cursors == [{"n2": 0, "n1": 4}]

    async def test_get_purges_is_400_when_cursor_is_malformed(self) -> None:
        hub, writer = FakeHub(), FakeWriter()
        await PeerGate(FakeHandler(), SECRET, purges=hub).handle(
            _request("GET", f"{PURGES_PATH}?cursor=%5B1%5D", None), writer)  # type: ignore[arg-type]
        assert writer.sent[0][0] == 400
