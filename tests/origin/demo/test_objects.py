"""The demo origin's synthetic objects: /obj/<name> shaped by its query."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from origin.demo import synthetic
from origin.demo.server import DemoOrigin
from tests.origin.servers import header_of, pending_get, status_of


class TestObjBody:
    async def test_obj_serves_1024_synthetic_bytes_when_no_size(
        self, http: aiohttp.ClientSession
    ) -> None:
        async with http.get("/obj/plain") as resp:
            assert resp.status == 200
            assert await resp.read() == synthetic.body("plain", 1024)
            assert resp.headers["Content-Length"] == "1024"
            assert "Cache-Control" not in resp.headers
            assert "ETag" not in resp.headers

    @pytest.mark.parametrize("size", [0, 1, 65536, 65537, 3 * 1024 * 1024 + 5])
    async def test_obj_serves_exact_bytes_when_size_given(
        self, http: aiohttp.ClientSession, size: int
    ) -> None:
        async with http.get(f"/obj/sized?size={size}") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Length"] == str(size)
            assert await resp.read() == synthetic.body("sized", size)

    async def test_obj_changes_body_and_etag_when_version_changes(
        self, http: aiohttp.ClientSession
    ) -> None:
        async with http.get("/obj/v?size=4096&etag=auto&version=1") as one:
            body1, etag1 = await one.read(), one.headers["ETag"]
        async with http.get("/obj/v?size=4096&etag=auto&version=2") as two:
            body2, etag2 = await two.read(), two.headers["ETag"]
        assert body1 == synthetic.body("v", 4096, "1")
        assert body2 == synthetic.body("v", 4096, "2")
        assert body1 != body2 and etag1 != etag2

    async def test_obj_omits_content_length_when_chunked(self, http: aiohttp.ClientSession) -> None:
        async with http.get("/obj/c?size=200000&chunked=1") as resp:
            assert "Content-Length" not in resp.headers
            assert resp.headers["Transfer-Encoding"] == "chunked"
            assert await resp.read() == synthetic.body("c", 200000)

    async def test_obj_answers_400_when_query_invalid(self, http: aiohttp.ClientSession) -> None:
        assert await status_of(http, "/obj/bad?size=lots") == 400


class TestObjHeaders:
    async def test_obj_sends_requested_cache_headers_when_asked(
        self, http: aiohttp.ClientSession
    ) -> None:
        query = "cc=public,%20max-age%3D30&vary=Accept-Encoding&age=7&expires=60&tags=a,b"
        async with http.get(f"/obj/h?{query}") as resp:
            assert resp.headers["Cache-Control"] == "public, max-age=30"
            assert resp.headers["Vary"] == "Accept-Encoding"
            assert resp.headers["Age"] == "7"
            assert resp.headers["Surrogate-Key"] == "a b"
            assert resp.headers["Expires"].endswith("GMT")
            assert "Set-Cookie" not in resp.headers

    async def test_obj_sets_cookie_when_cookie_is_1(self, http: aiohttp.ClientSession) -> None:
        async with http.get("/obj/k?cookie=1") as resp:
            assert resp.headers["Set-Cookie"].startswith("obj=k")

    async def test_obj_quotes_etag_when_given_bare(self, http: aiohttp.ClientSession) -> None:
        async with http.get("/obj/e?etag=abc") as resp:
            assert resp.headers["ETag"] == '"abc"'
        async with http.get("/obj/e?etag=auto&size=10") as resp:
            assert resp.headers["ETag"] == synthetic.auto_etag("e", 10)

    async def test_obj_sends_status_with_body_when_status_given(
        self, http: aiohttp.ClientSession
    ) -> None:
        async with http.get("/obj/s?status=404&size=20&cc=max-age%3D5") as resp:
            assert resp.status == 404
            assert resp.headers["Cache-Control"] == "max-age=5"
            assert await resp.read() == synthetic.body("s", 20)
        async with http.get("/obj/s?status=204") as resp:
            assert resp.status == 204
            assert await resp.read() == b""

    async def test_obj_echoes_json_when_method_is_post(
        self, origin: DemoOrigin, http: aiohttp.ClientSession
    ) -> None:
        async with http.post("/obj/p?size=10", data=b"12345") as resp:
            payload = await resp.json()
        assert payload["method"] == "POST"
        assert payload["path"] == "/obj/p?size=10"
        assert payload["body_length"] == 5
        assert origin.stats.methods["POST"] == 1


class TestObjConditionalAndRange:
    async def test_obj_answers_304_when_if_none_match_matches(
        self, http: aiohttp.ClientSession
    ) -> None:
        etag = synthetic.auto_etag("c", 1024)
        headers = {"If-None-Match": etag}
        async with http.get("/obj/c?etag=auto&cc=max-age%3D9", headers=headers) as resp:
            assert resp.status == 304
            assert resp.headers["ETag"] == etag
            assert resp.headers["Cache-Control"] == "max-age=9"

    async def test_obj_answers_200_when_version_changed_since_etag(
        self, http: aiohttp.ClientSession
    ) -> None:
        headers = {"If-None-Match": synthetic.auto_etag("c", 1024, "1")}
        assert await status_of(http, "/obj/c?etag=auto&version=2", headers=headers) == 200

    async def test_obj_answers_304_when_if_modified_since_not_older(
        self, http: aiohttp.ClientSession
    ) -> None:
        last_modified = await header_of(http, "/obj/m?lm=auto&version=3", "Last-Modified")
        headers = {"If-Modified-Since": last_modified}
        assert await status_of(http, "/obj/m?lm=auto&version=3", headers=headers) == 304
        async with http.get("/obj/m?lm=auto&version=4", headers=headers) as resp:
            assert resp.status == 200  # a newer version is newer than the cached date

    async def test_obj_answers_206_slice_when_range_given(
        self, http: aiohttp.ClientSession
    ) -> None:
        size = 300_000
        headers = {"Range": "bytes=70000-200000"}
        async with http.get(f"/obj/r?size={size}&etag=auto", headers=headers) as resp:
            assert resp.status == 206
            assert resp.headers["Content-Range"] == f"bytes 70000-200000/{size}"
            assert await resp.read() == synthetic.body("r", size)[70000:200001]

    async def test_obj_answers_416_when_range_unsatisfiable(
        self, http: aiohttp.ClientSession
    ) -> None:
        async with http.get("/obj/r?size=10", headers={"Range": "bytes=10-"}) as resp:
            assert resp.status == 416
            assert resp.headers["Content-Range"] == "bytes */10"


class TestObjFailures:
    @pytest.mark.parametrize("chunked", ["0", "1"])
    async def test_obj_cuts_connection_when_fail_at_reached(
        self, http: aiohttp.ClientSession, chunked: str
    ) -> None:
        received = bytearray()
        async with http.get(f"/obj/f?size=500000&fail_at=150001&chunked={chunked}") as resp:
            assert resp.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                async for piece in resp.content.iter_any():
                    received += piece
        assert bytes(received) == synthetic.body("f", 500000)[:150001]

    async def test_obj_streams_first_chunk_before_body_when_rate_limited(
        self, http: aiohttp.ClientSession
    ) -> None:
        # 1 MB at 1 kB/s would take ~17 minutes; the first chunk still arrives at once.
        async with http.get("/obj/slow?size=1000000&rate=1000") as resp:
            assert resp.headers["Content-Length"] == "1000000"
            first = await resp.content.readany()
            assert 0 < len(first) < 1_000_000
            assert first == synthetic.body("slow", len(first))

    async def test_obj_close_cuts_delay_short_when_request_waiting(self) -> None:
        async with pending_get("/obj/d?delay=600") as (server, stats, waiting):
            assert stats.count("/obj/d?delay=600") == 1
            assert not waiting.done()
            async with asyncio.timeout(10):
                await server.close()
            with pytest.raises(aiohttp.ClientError):
                resp = await waiting
                await resp.read()
