"""May a shared cache store this response? (RFC 9111 §3, §3.5)."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from multidict import CIMultiDict

from edge.rules.outcome import NoStoreReason
from edge.rules.cache_control import response_directives
from edge.rules.storable import no_store_reason

ETAG = ("ETag", '"v1"')
LAST_MODIFIED = ("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT")
EXPIRES = ("Expires", "Sun, 06 Nov 1994 09:49:37 GMT")


def reason(
    headers: Iterable[tuple[str, str]] = (("Cache-Control", "max-age=60"),),
    *,
    method: str = "GET",
    status: int = 200,
    request: Iterable[tuple[str, str]] = (),
    authorization: bool = False,
    allow_set_cookie: bool = False,
) -> NoStoreReason | None:
    response_headers = tuple(headers)
    directives, used_cdn = response_directives(response_headers)
    return no_store_reason(
        method=method,
        status=status,
        request_headers=CIMultiDict(request),
        response_headers=response_headers,
        directives=directives,
        authorization=authorization,
        allow_set_cookie=allow_set_cookie,
        used_cdn_cc=used_cdn,
    )


class TestMethodAndStatus:
    def test_no_store_reason_is_none_when_get_200_with_max_age(self) -> None:
        assert reason() is None

    @pytest.mark.parametrize("method", ["HEAD", "POST", "PUT", "DELETE", "get"])
    def test_no_store_reason_is_method_when_not_get(self, method: str) -> None:
        assert reason(method=method) is NoStoreReason.METHOD

    def test_no_store_reason_is_partial_when_upstream_sent_206(self) -> None:
        assert reason(status=206) is NoStoreReason.PARTIAL

    @pytest.mark.parametrize("status", [100, 103, 304, 299, 418, 599, 999])
    def test_no_store_reason_is_status_when_not_final_or_not_understood(self, status: int) -> None:
        assert reason(status=status) is NoStoreReason.STATUS

    @pytest.mark.parametrize("status", [302, 307, 500, 503])
    def test_no_store_reason_is_none_when_understood_status_has_explicit_freshness(
        self, status: int
    ) -> None:
        assert reason(status=status) is None


class TestDirectives:
    def test_no_store_reason_is_no_store_when_response_no_store(self) -> None:
        assert reason([("Cache-Control", "no-store, max-age=60")]) is NoStoreReason.NO_STORE

    def test_no_store_reason_ignores_no_store_when_must_understand_and_status_known(self) -> None:
        assert reason([("Cache-Control", "must-understand, no-store, max-age=60")]) is None

    def test_no_store_reason_is_request_no_store_when_request_says_so(self) -> None:
        result = reason(request=[("cache-control", "no-store")])
        assert result is NoStoreReason.REQUEST_NO_STORE

    def test_no_store_reason_is_private_when_unqualified_private(self) -> None:
        assert reason([("Cache-Control", "private, max-age=60")]) is NoStoreReason.PRIVATE

    def test_no_store_reason_is_private_when_qualified_private(self) -> None:
        headers = [("Cache-Control", 'private="Set-Cookie", max-age=60')]
        assert reason(headers) is NoStoreReason.PRIVATE

    def test_no_store_reason_is_none_when_no_cache_with_validator(self) -> None:
        assert reason([("Cache-Control", "no-cache"), ETAG]) is None

    def test_no_store_reason_uses_cdn_field_when_it_overrides_no_store(self) -> None:
        headers = [("Cache-Control", "no-store"), ("CDN-Cache-Control", "max-age=60")]
        assert reason(headers) is None

    def test_no_store_reason_is_no_store_when_cdn_field_says_so(self) -> None:
        headers = [("Cache-Control", "max-age=60"), ("CDN-Cache-Control", "no-store")]
        assert reason(headers) is NoStoreReason.NO_STORE


class TestAuthorization:
    def test_no_store_reason_is_authorization_when_credentials_and_max_age_only(self) -> None:
        assert reason(authorization=True) is NoStoreReason.AUTHORIZATION

    @pytest.mark.parametrize("cc", ["public", "s-maxage=60", "must-revalidate, max-age=60"])
    def test_no_store_reason_is_none_when_credentials_and_response_allows(self, cc: str) -> None:
        assert reason([("Cache-Control", cc), ETAG], authorization=True) is None


class TestResponseFields:
    def test_no_store_reason_is_vary_star_when_vary_lists_star(self) -> None:
        headers = [("Cache-Control", "max-age=60"), ("Vary", "Accept-Encoding, *")]
        assert reason(headers) is NoStoreReason.VARY_STAR

    def test_no_store_reason_is_none_when_vary_names_fields(self) -> None:
        assert reason([("Cache-Control", "max-age=60"), ("vary", "Accept-Encoding")]) is None

    def test_no_store_reason_is_set_cookie_when_cookie_and_not_allowed(self) -> None:
        headers = [("Cache-Control", "max-age=60"), ("Set-Cookie", "a=1")]
        assert reason(headers) is NoStoreReason.SET_COOKIE

    def test_no_store_reason_is_none_when_cookie_allowed_by_route(self) -> None:
        headers = [("Cache-Control", "max-age=60"), ("set-cookie", "a=1")]
        assert reason(headers, allow_set_cookie=True) is None


class TestFreshnessRequirement:
    def test_no_store_reason_is_no_freshness_when_nothing_at_all(self) -> None:
        assert reason([("Content-Type", "text/plain")]) is NoStoreReason.NO_FRESHNESS

    @pytest.mark.parametrize("validator", [ETAG, LAST_MODIFIED])
    def test_no_store_reason_is_none_when_heuristic_status_has_validator(
        self, validator: tuple[str, str]
    ) -> None:
        assert reason([validator]) is None

    @pytest.mark.parametrize("status", [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501])
    def test_no_store_reason_is_none_when_each_heuristic_status_has_validator(
        self, status: int
    ) -> None:
        assert reason([LAST_MODIFIED], status=status) is None

    @pytest.mark.parametrize("status", [302, 307, 403, 500, 503])
    def test_no_store_reason_is_no_freshness_when_status_not_heuristic_and_no_explicit(
        self, status: int
    ) -> None:
        assert reason([ETAG, LAST_MODIFIED], status=status) is NoStoreReason.NO_FRESHNESS

    def test_no_store_reason_is_none_when_expires_only(self) -> None:
        assert reason([EXPIRES], status=302) is None

    def test_no_store_reason_is_none_when_invalid_expires_present(self) -> None:
        assert reason([("Expires", "0")]) is None

    def test_no_store_reason_ignores_expires_when_cdn_field_used(self) -> None:
        headers = [EXPIRES, ("CDN-Cache-Control", "must-revalidate")]
        assert reason(headers, status=302) is NoStoreReason.NO_FRESHNESS

    def test_no_store_reason_is_none_when_public_only(self) -> None:
        assert reason([("Cache-Control", "public")], status=302) is None

    @pytest.mark.parametrize("cc", ["max-age=0", "s-maxage=10"])
    def test_no_store_reason_is_none_when_explicit_lifetime_without_validator(
        self, cc: str
    ) -> None:
        assert reason([("Cache-Control", cc)]) is None
