"""edge.config.origin_rewrite: a pool's Host, SNI, path and header overrides from config.toml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge.config.deployment import ConfigError, parse

SECRET = "origin-token-never-in-an-error"


def _pool(**keys: Any) -> dict[str, Any]:
    return {
        "nodes": {"a": {"listen": "127.0.0.2:8080"}},
        "origins": {"bucket": {"servers": ["https://127.0.0.1:8443"], **keys}},
        "routes": [{"origin": "bucket"}],
    }


def test_every_override_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "verify").write_text(SECRET + "\n")
    monkeypatch.setenv("EDGE_TEST_ORIGIN_KEY", "key-from-env")
    cfg = parse(
        _pool(
            origin_host="Bucket.Store.test",
            tls_server_name="sni.store.test",
            strip_path_prefix="/static",
            add_path_prefix="/site",
            request_headers={
                "X-Origin-Verify": {"value_file": str(tmp_path / "verify")},
                "X-Api-Key": {"value_env": "EDGE_TEST_ORIGIN_KEY"},
                "X-Env": "prod",
            },
            remove_response_headers=["X-Amz-Request-Id"],
            response_headers={"Cache-Control": "max-age=300"},
        ),
        "a",
    )
    rewrite = cfg.pools["bucket"].rewrite
    assert (rewrite.host, rewrite.server_name) == ("bucket.store.test", "sni.store.test")
    assert (rewrite.strip_path_prefix, rewrite.add_path_prefix) == ("/static", "/site")
    assert rewrite.request_headers == (
        ("X-Origin-Verify", SECRET),
        ("X-Api-Key", "key-from-env"),
        ("X-Env", "prod"),
    )
    assert rewrite.remove_response_headers == {"x-amz-request-id"}
    assert rewrite.response_headers == (("Cache-Control", "max-age=300"),)
    assert SECRET not in repr(cfg)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"origin_host": "bad host"}, r"^origins\.bucket\.origin_host: expected a host name"),
        ({"add_path_prefix": "site"}, r"^origins\.bucket\.add_path_prefix: expected a path"),
        ({"strip_path_prefix": "/"}, r"^origins\.bucket\.strip_path_prefix: expected a path"),
        ({"request_headers": {"Host": "x"}}, r"^origins\.bucket\.request_headers\.Host: Host cannot be set"),
        (
            {"request_headers": {"X-A": "a\r\nb"}},
            r"^origins\.bucket\.request_headers\.X-A: expected a header value",
        ),
        (
            {"request_headers": {"X-A": {"secret": "x"}}},
            r"^origins\.bucket\.request_headers\.X-A\.secret: unknown",
        ),
        (
            {"remove_response_headers": ["Transfer-Encoding"]},
            r"remove_response_headers\[0\]: Transfer-Encoding",
        ),
        (
            {"response_headers": {"bad name": "x"}},
            r"response_headers\.bad name: 'bad name' is not a header name",
        ),
        (
            {"origin_host": "a.test", "health_host": "b.test"},
            r"^origins\.bucket\.health_host: origin_host is",
        ),
    ],
)
def test_bad_overrides_name_their_key(keys: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(_pool(**keys), "a")


def test_a_missing_secret_file_names_the_key_not_a_value(tmp_path: Path) -> None:
    keys = {"request_headers": {"Authorization": {"value_file": str(tmp_path / "none")}}}
    with pytest.raises(ConfigError, match=r"^origins\.bucket\.request_headers\.Authorization\.value_file: "):
        parse(_pool(**keys), "a")
