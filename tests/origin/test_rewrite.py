"""origin.rewrite: a pool's overrides of the target, Host and headers — pure."""

from __future__ import annotations

import pytest

from origin.config import OriginRewrite
from origin.rewrite import rewrite_host, rewrite_request_headers, rewrite_response_headers, rewrite_target


class TestTarget:
    @pytest.mark.parametrize(
        ("target", "sent"),
        [
            ("/static/a.png", "/site-v2/a.png"),
            ("/static/a.png?v=1", "/site-v2/a.png?v=1"),
            ("/static", "/site-v2/"),
            ("/static?x=1", "/site-v2/?x=1"),
            ("/staticfiles/a", "/site-v2/staticfiles/a"),  # not at a segment boundary: kept
            ("/other/a", "/site-v2/other/a"),
        ],
    )
    def test_strip_then_add(self, target: str, sent: str) -> None:
        rewrite = OriginRewrite(strip_path_prefix="/static", add_path_prefix="/site-v2")
        assert rewrite_target(rewrite, target) == sent

    def test_no_prefixes_leave_the_target_byte_for_byte(self) -> None:
        assert rewrite_target(OriginRewrite(), "/a/%2e%2e/b?q=%20") == "/a/%2e%2e/b?q=%20"

    def test_prefixes_must_look_like_paths(self) -> None:
        with pytest.raises(ValueError, match="add_path_prefix"):
            OriginRewrite(add_path_prefix="/bucket/")


class TestHeaders:
    def test_host_is_replaced_only_when_configured(self) -> None:
        assert rewrite_host(OriginRewrite(), "www.example.com") == "www.example.com"
        assert rewrite_host(OriginRewrite(host="bucket.store.test"), "www.example.com") == "bucket.store.test"

    def test_configured_request_headers_replace_the_clients_under_any_spelling(self) -> None:
        rewrite = OriginRewrite(request_headers=(("X-Api-Key", "real"),))
        sent = rewrite_request_headers(
            rewrite, (("x_api_key", "forged"), ("X-API-KEY", "forged"), ("A", "1"))
        )
        assert sent == (("A", "1"), ("X-Api-Key", "real"))

    def test_response_headers_are_removed_then_set(self) -> None:
        rewrite = OriginRewrite(
            remove_response_headers=frozenset({"x-amz-request-id", "set-cookie"}),
            response_headers=(("Cache-Control", "max-age=300"),),
        )
        got = rewrite_response_headers(
            rewrite,
            (
                ("X-Amz-Request-Id", "1"),
                ("Set-Cookie", "a=b"),
                ("Cache-Control", "no-cache"),
                ("ETag", '"e"'),
            ),
        )
        assert got == (("ETag", '"e"'), ("Cache-Control", "max-age=300"))

    @pytest.mark.parametrize(
        ("rewrite", "name"),
        [
            (OriginRewrite(), None),
            (OriginRewrite(host="bucket.store.test:8443"), "bucket.store.test"),
            (OriginRewrite(host="a.test", tls_server_name="b.test"), "b.test"),
        ],
    )
    def test_tls_server_name_follows_the_host_unless_given(
        self, rewrite: OriginRewrite, name: str | None
    ) -> None:
        assert rewrite.server_name == name

    def test_repr_hides_request_header_values(self) -> None:
        assert "hunter2" not in repr(OriginRewrite(request_headers=(("Authorization", "hunter2"),)))
