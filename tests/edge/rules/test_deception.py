"""Web cache deception armour (issue 12): the edge keeps nothing on its own word that it should not."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from edge.rules.cache_control import response_directives
from edge.rules.deception import MEDIA_TYPES, PathExtension, edge_lifetime_refusal, path_extension
from edge.rules.outcome import NoStoreReason


def refusal(
    target: str,
    *,
    content_type: str | None = "text/css",
    request: dict[str, str] | None = None,
    extra: tuple[tuple[str, str], ...] = (),
    lifetime_s: float = 60.0,
    status: int = 200,
) -> NoStoreReason | None:
    headers = ((("Content-Type", content_type),) if content_type else ()) + extra
    directives, used_cdn = response_directives(headers)
    return edge_lifetime_refusal(
        target=target,
        status=status,
        request_headers=CIMultiDict(request or {}),
        response_headers=headers,
        directives=directives,
        used_cdn_cc=used_cdn,
        lifetime_s=lifetime_s,
    )


class TestPathExtension:
    @pytest.mark.parametrize(
        "target",
        [
            "/account;x.css", "/account%2Fx.css", "/account%2fx.css", "/account/..%2Fstatic/x.css",
            "/account/../static/x.css", "/account/./x.css", "/account%23x.css", "/account%3Fx.css",
            "/account%3Bx.css", "/account%5Cx.css", "/account\\x.css", "/account/x%2Ecss", "/account%252Fx.css",
            "/account%00.css", "/account/x.css;jsessionid=1", "/a/%2e%2e/x.css",
        ],
    )
    def test_path_extension_is_ambiguous_when_origins_may_read_the_path_differently(self, target: str) -> None:
        assert path_extension(target) == PathExtension(ambiguous=True)

    @pytest.mark.parametrize(
        ("target", "ext"),
        [
            ("/static/app.CSS", "css"), ("/static/app.css?v=1;x", "css"), ("/a/b.min.js", "js"),
            ("/index", ""), ("/", ""), ("/.well-known/x", ""), ("/my%20file.png", "png"), ("/dir.d/x", ""),
        ],
    )
    def test_path_extension_reads_last_segment_when_path_is_plain(self, target: str, ext: str) -> None:
        assert path_extension(target) == PathExtension(ambiguous=False, extension=ext)


class TestEdgeLifetimeRefusal:
    def test_refuses_when_page_type_disagrees_with_extension(self) -> None:
        assert refusal("/account/x.css", content_type="text/html") is NoStoreReason.TYPE_MISMATCH

    def test_refuses_when_content_type_is_missing(self) -> None:
        assert refusal("/static/x.css", content_type=None) is NoStoreReason.TYPE_MISMATCH

    def test_refuses_when_path_is_ambiguous_even_if_type_agrees(self) -> None:
        assert refusal("/account;x.css") is NoStoreReason.AMBIGUOUS_PATH

    def test_refuses_when_extension_is_unknown(self) -> None:
        assert refusal("/account/x.php", content_type="text/html") is NoStoreReason.UNKNOWN_EXTENSION

    @pytest.mark.parametrize("field", ["Cookie", "Authorization", "cookie"])
    def test_refuses_when_request_carried_credentials_and_origin_was_silent(self, field: str) -> None:
        assert refusal("/static/x.css", request={field: "v"}) is NoStoreReason.CREDENTIALS
        # even when the edge adds nothing: a later 304 must not hand one user's body to another
        assert refusal("/static/x.css", request={field: "v"}, lifetime_s=0) is NoStoreReason.CREDENTIALS

    @pytest.mark.parametrize(
        "shareable",
        [("Cache-Control", "public"), ("CDN-Cache-Control", "max-age=60")],
    )
    def test_allows_credentials_when_origin_marked_response_shareable(self, shareable: tuple[str, str]) -> None:
        assert refusal("/static/x.css", request={"Cookie": "v"}, extra=(shareable,)) is None

    @pytest.mark.parametrize(
        "explicit", [("Cache-Control", "max-age=60"), ("Cache-Control", "s-maxage=60"), ("Expires", "0")]
    )
    def test_allows_anything_when_origin_gave_explicit_freshness(self, explicit: tuple[str, str]) -> None:
        assert refusal("/account;x.css", content_type="text/html", request={"Cookie": "v"}, extra=(explicit,)) is None

    @pytest.mark.parametrize(
        ("target", "content_type"),
        [
            ("/static/x.css", "text/css; charset=utf-8"), ("/v/seg.ts", "video/mp2t"), ("/v/seg.m4s", "application/octet-stream"),
            ("/v/live.m3u8", "application/vnd.apple.mpegurl"), ("/news/today", "text/html"), ("/", "text/html"),
        ],
    )
    def test_allows_edge_lifetime_when_type_agrees_or_path_has_no_extension(self, target: str, content_type: str) -> None:
        assert refusal(target, content_type=content_type) is None

    def test_octet_stream_is_accepted_for_binary_types_only(self) -> None:
        assert "application/octet-stream" in MEDIA_TYPES["mp4"]
        assert refusal("/x.css", content_type="application/octet-stream") is NoStoreReason.TYPE_MISMATCH

    def test_allows_negative_answer_when_no_credentials(self) -> None:
        assert refusal("/missing.css", content_type="text/html", status=404) is None
        assert refusal("/missing.css", content_type="text/html", status=404, request={"Cookie": "v"}) is (
            NoStoreReason.CREDENTIALS
        )
