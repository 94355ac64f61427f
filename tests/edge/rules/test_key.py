"""Key ids are hashed in one place: the slow path's CacheKey and the fast path agree (edge/rules/key.py)."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from edge.rules.key import make_key, url_id, variant_id

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize(
    ("host", "target"), [("Example.TEST:8080", "/a?b=c"), ("h", "/%2e%2e/x"), ("h\xe9", "/\xff")]
)
def test_make_key_id_equals_url_id_of_request_bytes_when_fast_path_hashes(host: str, target: str) -> None:
    raw = b"http://" + host.encode("latin-1").lower() + target.encode("latin-1")
    assert make_key("http", host, target).id == url_id(raw)


def test_variant_id_equals_cache_key_variant_when_same_fields() -> None:
    key = make_key("http", "h", "/v")
    headers = CIMultiDict({"Accept-Encoding": "gzip, br"})
    assert key.variant(("accept-encoding",), headers).id == variant_id(key.id, ("accept-encoding",), headers)


def test_variant_id_differs_from_primary_id_when_field_absent() -> None:
    key = make_key("http", "h", "/v")
    assert variant_id(key.id, ("accept-encoding",), CIMultiDict()) != key.id
