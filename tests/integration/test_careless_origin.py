"""The careless origin is as careless as the security tests need (checked without an edge)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.integration.careless_origin import CarelessOrigin, app_path
from tests.integration.harness import fetch, parse_responses, raw_exchange

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def careless() -> AsyncIterator[CarelessOrigin]:
    origin = await CarelessOrigin().start()
    try:
        yield origin
    finally:
        await origin.close()


class TestCarelessOrigin:
    def test_app_path_reads_account_when_path_hides_it(self) -> None:
        for raw in ("/account;x.css", "/account%2Fx.css", "/account/..%2Faccount", "/account%23x.css"):
            assert app_path(raw).startswith("/account"), raw
        assert app_path("/account/..%2Fstatic/x.css") == "/static/x.css"

    async def test_origin_acts_on_underscore_header_when_sent(
        self, careless: CarelessOrigin, client: aiohttp.ClientSession
    ) -> None:
        reply = await fetch(client, careless.url + "/page", headers={"X_Forwarded_Host": "evil.example"})
        assert b'"link": "http://evil.example/page"' in reply.body
        assert "Cache-Control" not in reply.headers

    async def test_origin_answers_cacheable_400_when_header_line_is_long(self, careless: CarelessOrigin) -> None:
        wire = await raw_exchange("127.0.0.1", careless.port, (
            f"GET /page HTTP/1.1\r\nHost: a\r\nX-Big: {'a' * 5000}\r\nConnection: close\r\n\r\n"
        ).encode())
        [response] = parse_responses(wire)
        assert response.status == 400 and response.header("cache-control") == "max-age=600"

    async def test_origin_serves_private_page_per_cookie_when_path_is_under_account(
        self, careless: CarelessOrigin, client: aiohttp.ClientSession
    ) -> None:
        reply = await fetch(client, careless.url + "/account;x.css", headers={"Cookie": "id=victim"})
        assert reply.body == b"<html>account page of id=victim</html>\n"
        assert reply.headers["Content-Type"].startswith("text/html")
