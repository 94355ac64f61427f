"""The demo origin's static files: validators, conditionals, ranges, cache rules, traversal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yarl

from origin.demo import sample
from origin.demo.server import DemoOrigin, start_demo_origin
from tests.origin.servers import header_of, status_of


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site")
    sample.generate(root, log=lambda _: None)
    return root


@pytest.fixture
async def origin(site: Path) -> AsyncIterator[DemoOrigin]:
    server = await start_demo_origin(root=site)
    try:
        yield server
    finally:
        await server.close()


def raw(origin: DemoOrigin, target: str) -> yarl.URL:
    """A URL whose target is sent byte-for-byte (no dot-segment removal, no re-encoding)."""
    return yarl.URL(origin.url + target, encoded=True)


class TestStaticFullResponse:
    async def test_static_serves_file_with_validators_when_requested(
        self, http: aiohttp.ClientSession, site: Path
    ) -> None:
        async with http.get("/video/hls/720p/seg00003.ts") as resp:
            body = await resp.read()
            assert resp.status == 200
            assert body == (site / "video/hls/720p/seg00003.ts").read_bytes()
            assert resp.headers["Content-Length"] == str(len(body))
            assert resp.headers["Content-Type"] == "video/mp2t"
            assert resp.headers["Accept-Ranges"] == "bytes"
            st = (site / "video/hls/720p/seg00003.ts").stat()
            assert resp.headers["ETag"] == f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
            assert "GMT" in resp.headers["Last-Modified"]

    async def test_static_serves_index_when_root_requested(
        self, http: aiohttp.ClientSession
    ) -> None:
        async with http.get("/") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/html")
            assert "video/hls/master.m3u8" in await resp.text()

    async def test_static_head_sends_length_without_body_when_head(
        self, http: aiohttp.ClientSession, site: Path
    ) -> None:
        async with http.head("/video/big.mp4") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Length"] == str(sample.BIG_MP4_BYTES)
            assert await resp.read() == b""

    async def test_static_answers_404_when_file_missing(self, http: aiohttp.ClientSession) -> None:
        assert await status_of(http, "/nope.html") == 404

    @pytest.mark.parametrize(
        ("path", "cache_control"),
        [
            ("/video/hls/master.m3u8", "max-age=2"),
            ("/video/dash/manifest.mpd", "max-age=2"),
            ("/video/hls/720p/seg00000.ts", "max-age=86400"),
            ("/video/dash/seg00001.m4s", "max-age=86400"),
            ("/video/big.mp4", "max-age=86400"),
            ("/style.css", "max-age=3600"),
            ("/app.js", "max-age=3600"),
            ("/logo.png", "max-age=3600"),
            ("/index.html", "max-age=60"),
        ],
    )
    async def test_static_sets_cache_control_by_extension_when_served(
        self, http: aiohttp.ClientSession, path: str, cache_control: str
    ) -> None:
        async with http.head(path) as resp:
            assert resp.status == 200
            assert resp.headers["Cache-Control"] == cache_control


class TestStaticConditional:
    async def test_static_answers_304_when_if_none_match_matches(
        self, http: aiohttp.ClientSession
    ) -> None:
        etag = await header_of(http, "/style.css", "ETag")
        async with http.get("/style.css", headers={"If-None-Match": f'"other", W/{etag}'}) as resp:
            assert resp.status == 304
            assert resp.headers["ETag"] == etag
            assert resp.headers["Cache-Control"] == "max-age=3600"
            assert await resp.read() == b""

    async def test_static_answers_304_when_if_modified_since_echoes_last_modified(
        self, http: aiohttp.ClientSession
    ) -> None:
        last_modified = await header_of(http, "/app.js", "Last-Modified")
        assert await status_of(http, "/app.js", headers={"If-Modified-Since": last_modified}) == 304

    async def test_static_answers_200_when_if_modified_since_is_older(
        self, http: aiohttp.ClientSession
    ) -> None:
        headers = {"If-Modified-Since": "Sun, 06 Nov 1994 08:49:37 GMT"}
        assert await status_of(http, "/app.js", headers=headers) == 200

    async def test_static_ignores_if_modified_since_when_if_none_match_differs(
        self, http: aiohttp.ClientSession
    ) -> None:
        last_modified = await header_of(http, "/app.js", "Last-Modified")
        headers = {"If-None-Match": '"stale"', "If-Modified-Since": last_modified}
        assert await status_of(http, "/app.js", headers=headers) == 200

    async def test_static_answers_412_when_if_match_differs(
        self, http: aiohttp.ClientSession
    ) -> None:
        assert await status_of(http, "/app.js", headers={"If-Match": '"stale"'}) == 412


class TestStaticRange:
    async def test_static_answers_206_when_single_range(
        self, http: aiohttp.ClientSession, site: Path
    ) -> None:
        data = (site / "video/big.mp4").read_bytes()
        async with http.get("/video/big.mp4", headers={"Range": "bytes=1000-70999"}) as resp:
            assert resp.status == 206
            assert resp.headers["Content-Range"] == f"bytes 1000-70999/{len(data)}"
            assert await resp.read() == data[1000:71000]

    async def test_static_answers_suffix_when_range_is_suffix(
        self, http: aiohttp.ClientSession, site: Path
    ) -> None:
        data = (site / "video/big.mp4").read_bytes()
        async with http.get("/video/big.mp4", headers={"Range": "bytes=-500"}) as resp:
            assert resp.status == 206
            assert await resp.read() == data[-500:]

    async def test_static_answers_416_when_range_starts_past_end(
        self, http: aiohttp.ClientSession
    ) -> None:
        async with http.get("/style.css", headers={"Range": "bytes=99999-"}) as resp:
            assert resp.status == 416
            assert resp.headers["Content-Range"].startswith("bytes */")

    async def test_static_answers_206_when_if_range_etag_matches(
        self, http: aiohttp.ClientSession
    ) -> None:
        etag = await header_of(http, "/video/big.mp4", "ETag", method="HEAD")
        headers = {"Range": "bytes=0-9", "If-Range": etag}
        async with http.get("/video/big.mp4", headers=headers) as resp:
            assert resp.status == 206
            assert await resp.read() == b"\x00\x00\x00\x20ftypis"

    async def test_static_answers_200_when_if_range_etag_differs(
        self, http: aiohttp.ClientSession
    ) -> None:
        headers = {"Range": "bytes=0-9", "If-Range": '"something-else"'}
        async with http.get("/style.css", headers=headers) as resp:
            assert resp.status == 200
            assert "Content-Range" not in resp.headers

    async def test_static_answers_200_when_if_range_etag_is_weak(
        self, http: aiohttp.ClientSession
    ) -> None:
        etag = await header_of(http, "/style.css", "ETag", method="HEAD")
        headers = {"Range": "bytes=0-9", "If-Range": f"W/{etag}"}
        assert await status_of(http, "/style.css", headers=headers) == 200

    async def test_static_honours_if_range_date_when_equal_to_last_modified(
        self, http: aiohttp.ClientSession
    ) -> None:
        last_modified = await header_of(http, "/style.css", "Last-Modified", method="HEAD")
        async with http.get(
            "/style.css", headers={"Range": "bytes=0-3", "If-Range": last_modified}
        ) as resp:
            assert resp.status == 206
        old = "Sun, 06 Nov 1994 08:49:37 GMT"
        assert (
            await status_of(http, "/style.css", headers={"Range": "bytes=0-3", "If-Range": old})
            == 200
        )


class TestStaticTraversal:
    @pytest.mark.parametrize(
        "target",
        [
            "/../etc/passwd",
            "/%2e%2e/%2e%2e/etc/passwd",
            "/video/%2E%2E/%2e%2e/etc/passwd",
            "/video/..%2f..%2fetc/passwd",
            "/video/%2e%2e/index.html",
            "/video/hls/../../index.html",
        ],
    )
    async def test_static_answers_404_when_target_has_dot_dot(
        self, origin: DemoOrigin, http: aiohttp.ClientSession, target: str
    ) -> None:
        assert await status_of(http, raw(origin, target)) == 404
        assert origin.stats.count(target) == 1  # it arrived unnormalised

    async def test_static_answers_404_when_symlink_leaves_root(self, tmp_path: Path) -> None:
        root, outside = tmp_path / "root", tmp_path / "outside"
        root.mkdir()
        outside.mkdir()
        (outside / "secret.txt").write_text("secret")
        (root / "link").symlink_to(outside, target_is_directory=True)
        server = await start_demo_origin(root=root)
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(server.url + "/link/secret.txt") as resp:
                    assert resp.status == 404
                    assert "secret" not in await resp.text()
        finally:
            await server.close()
