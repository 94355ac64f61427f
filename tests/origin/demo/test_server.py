"""The demo origin server: request counting, echo, hang, status, per-user routes, the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest
import yarl

from origin.demo.server import DemoOrigin, main
from origin.demo.stats import RECENT_PER_PATH
from tests.origin.servers import ArrivalStats, pending_get

REPO = Path(__file__).resolve().parents[3]


async def raw_get(port: int, target: str) -> tuple[str, bytes]:
    """Sends one GET with the target byte-for-byte; returns the status line and the body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        request = f"GET {target} HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n"
        writer.write(request.encode("latin-1"))
        data = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n", 1)[0].decode(), body


class TestRequestCounting:
    async def test_stats_counts_each_request_when_it_arrives(
        self, origin: DemoOrigin, http: aiohttp.ClientSession
    ) -> None:
        for _ in range(3):
            async with http.get("/obj/a?size=1") as resp:
                await resp.read()
        async with http.head("/obj/a?size=1"):
            pass
        async with http.get("/__stats") as resp:
            stats = await resp.json()
        assert stats["total"] == 4
        assert stats["paths"] == {"/obj/a?size=1": 4}
        assert stats["methods"] == {"GET": 3, "HEAD": 1}
        assert origin.stats.count("/obj/a?size=1") == 4

    async def test_stats_counts_request_before_answer_when_handler_waits(
        self, origin: DemoOrigin, http: aiohttp.ClientSession
    ) -> None:
        assert isinstance(origin.stats, ArrivalStats)
        waiting = asyncio.ensure_future(http.get("/hang/counted"))
        try:
            await origin.stats.arrived.wait()
            assert origin.stats.count("/hang/counted") == 1
            assert not waiting.done()
        finally:
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting

    async def test_stats_records_forwarded_headers_in_order_when_repeated(
        self, origin: DemoOrigin, http: aiohttp.ClientSession
    ) -> None:
        headers = [("X-B", "2"), ("X-A", "1"), ("X-A", "3")]
        async with http.get("/echo/h", headers=headers) as resp:
            await resp.read()
        async with http.get("/__stats") as resp:
            stats = await resp.json()
        received = stats["requests"]["/echo/h"][0]["headers"]
        sent = [pair for pair in received if pair[0].startswith("X-")]
        assert sent == [["X-B", "2"], ["X-A", "1"], ["X-A", "3"]]
        assert stats["requests"]["/echo/h"][0]["method"] == "GET"
        record = origin.stats.requests("/echo/h")[0]
        assert record.header("x-a") == "1"

    async def test_stats_keeps_last_records_when_many_requests(
        self, origin: DemoOrigin, http: aiohttp.ClientSession
    ) -> None:
        for i in range(RECENT_PER_PATH + 5):
            async with http.get("/echo/many", headers={"X-N": str(i)}) as resp:
                await resp.read()
        records = origin.stats.requests("/echo/many")
        assert len(records) == RECENT_PER_PATH
        assert records[0].header("X-N") == "5"
        assert records[-1].header("X-N") == str(RECENT_PER_PATH + 4)
        assert origin.stats.count("/echo/many") == RECENT_PER_PATH + 5

    async def test_reset_zeroes_stats_when_posted(
        self, origin: DemoOrigin, http: aiohttp.ClientSession
    ) -> None:
        async with http.get("/obj/x") as resp:
            await resp.read()
        async with http.post("/__reset") as resp:
            assert resp.status == 200
        async with http.get("/__stats") as resp:
            stats = await resp.json()
        assert stats == {"total": 0, "paths": {}, "methods": {}, "requests": {}}
        assert origin.stats.total == 0

    async def test_stats_counts_unknown_path_when_no_route(
        self, origin: DemoOrigin, http: aiohttp.ClientSession
    ) -> None:
        async with http.get("/nowhere?q=1") as resp:
            assert resp.status == 404
        assert origin.stats.count("/nowhere?q=1") == 1


class TestEcho:
    @pytest.mark.parametrize("target", ["/echo/a%3Fx", "/echo/%2e%2e/x", "/echo/a//b/./c?q=%20&r"])
    async def test_echo_reports_raw_target_when_not_normalised(
        self, origin: DemoOrigin, target: str
    ) -> None:
        status, body = await raw_get(origin.port, target)
        assert status == "HTTP/1.1 200 OK"
        assert json.loads(body)["path"] == target
        assert origin.stats.count(target) == 1

    async def test_echo_reports_encoded_target_when_sent_by_client(
        self, origin: DemoOrigin, http: aiohttp.ClientSession
    ) -> None:
        async with http.get(yarl.URL(origin.url + "/echo/%2e%2e/x", encoded=True)) as resp:
            assert (await resp.json())["path"] == "/echo/%2e%2e/x"

    async def test_echo_uses_default_cache_control_when_cc_absent(
        self, http: aiohttp.ClientSession
    ) -> None:
        async with http.get("/echo/a") as resp:
            assert resp.headers["Cache-Control"] == "max-age=60"
        async with http.get("/echo/a?cc=no-store") as resp:
            assert resp.headers["Cache-Control"] == "no-store"

    @pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
    async def test_echo_answers_json_when_method_is_unsafe(
        self, origin: DemoOrigin, http: aiohttp.ClientSession, method: str
    ) -> None:
        async with http.request(method, "/echo/w", data=b"abc") as resp:
            payload = await resp.json()
        assert resp.status == 200
        assert payload["method"] == method
        assert payload["body_length"] == 3
        assert origin.stats.methods[method] == 1


class TestHangAndStatus:
    async def test_reset_drops_connection_with_rst_before_any_response(self, origin: DemoOrigin) -> None:
        host, _, port = origin.url.removeprefix("http://").rpartition(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(b"GET /reset/x HTTP/1.1\r\nHost: t\r\n\r\n")
            await writer.drain()
            with pytest.raises(ConnectionResetError):
                async with asyncio.timeout(5):
                    await reader.read(1024)  # a FIN would return b"" and fail the test
        finally:
            writer.close()
        assert origin.stats.count("/reset/x") == 1

    async def test_hang_never_answers_when_requested(self, http: aiohttp.ClientSession) -> None:
        with pytest.raises(asyncio.TimeoutError):
            async with http.get("/hang/x", timeout=aiohttp.ClientTimeout(total=0.3)):
                pass

    async def test_close_completes_when_requests_hang(self) -> None:
        async with pending_get("/hang/y") as (server, _, hung):
            async with asyncio.timeout(10):
                await server.close()
            with pytest.raises(aiohttp.ClientError):
                resp = await hung
                await resp.read()

    async def test_status_answers_code_when_requested(self, http: aiohttp.ClientSession) -> None:
        async with http.get("/status/503?cc=max-age%3D3") as resp:
            assert resp.status == 503
            assert resp.headers["Cache-Control"] == "max-age=3"
            assert "503" in await resp.text()
        async with http.get("/status/204") as resp:
            assert resp.status == 204
            assert "Cache-Control" not in resp.headers


class TestPerUser:
    async def test_private_returns_callers_cookie_when_cookies_differ(
        self, http: aiohttp.ClientSession
    ) -> None:
        bodies = []
        for user in ("alice", "bob"):
            async with http.get("/private/page", headers={"Cookie": f"user={user}"}) as resp:
                assert resp.headers["Cache-Control"] == "private, max-age=60"
                bodies.append(await resp.text())
        assert "user=alice" in bodies[0] and "user=bob" in bodies[1]

    async def test_whoami_sets_cookie_and_echoes_cookie_when_requested(
        self, http: aiohttp.ClientSession
    ) -> None:
        async with http.get("/whoami", headers={"Cookie": "user=carol"}) as resp:
            assert resp.headers["Cache-Control"] == "max-age=60"
            assert resp.headers["Set-Cookie"].startswith("session=")
            assert "user=carol" in await resp.text()


class TestCommandLine:
    def test_help_explains_every_flag_when_asked(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as exit_info:
            main(["--help"])
        assert exit_info.value.code == 0
        out = capsys.readouterr().out
        for flag in ("--listen", "--root", "--generate", "--verbose"):
            assert flag in out

    async def test_cli_serves_and_stops_cleanly_when_sent_sigterm(self) -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "origin.demo", "--listen", "127.0.0.1:0", "--verbose",
            cwd=REPO, stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            banner = (await proc.stdout.readline()).decode()
            url = banner.split(" on ")[1].split()[0]
            assert url.startswith("http://127.0.0.1:")
            async with aiohttp.ClientSession() as session:
                async with session.get(url + "/obj/cli?size=5") as resp:
                    assert resp.status == 200
            assert (await proc.stdout.readline()).decode().startswith("GET /obj/cli?size=5 200")
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(20):
                assert await proc.wait() == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
