"""Errors a request caused, and 5xx, are not stored by default (issue 12)."""

from __future__ import annotations

import pytest

from edge.config.deployment import ConfigError, parse
from edge.rules.error_storage import error_store_reason
from edge.rules.outcome import NoStoreReason


class TestErrorStoreReason:
    @pytest.mark.parametrize("status", [400, 413, 414, 431])
    def test_request_error_is_not_stored_when_policy_is_default(self, status: int) -> None:
        assert error_store_reason(status) is NoStoreReason.REQUEST_ERROR

    @pytest.mark.parametrize("status", [500, 502, 503, 504, 599])
    def test_server_error_is_not_stored_when_policy_is_default(self, status: int) -> None:
        assert error_store_reason(status) is NoStoreReason.STATUS

    @pytest.mark.parametrize("status", [200, 301, 404, 410, 401, 403, 429])
    def test_other_status_is_left_to_rfc_rules(self, status: int) -> None:
        assert error_store_reason(status) is None

    def test_listed_status_is_stored_when_policy_opts_in(self) -> None:
        assert error_store_reason(503, (503,)) is None and error_store_reason(400, (503,)) is NoStoreReason.REQUEST_ERROR


def _config(policy: str) -> str:
    return f"""
[nodes.a]
listen = "127.0.0.1:8080"
[origins.o]
servers = ["http://127.0.0.1:9"]
[[routes]]
origin = "o"
[[policies]]
{policy}
"""


class TestConfig:
    def test_policy_reads_store_error_statuses_when_listed(self) -> None:
        import tomllib

        config = parse(tomllib.loads(_config("store_error_statuses = [400, 503]")), "a")
        assert config.policies[0].store_error_statuses == (400, 503)

    @pytest.mark.parametrize("value", ["[404]", "[200]", '"400"', "[true]"])
    def test_policy_refuses_store_error_statuses_when_not_an_error_status(self, value: str) -> None:
        import tomllib

        with pytest.raises(ConfigError, match="store_error_statuses"):
            parse(tomllib.loads(_config(f"store_error_statuses = {value}")), "a")

    def test_limits_read_line_limit_and_underscores_when_set(self) -> None:
        import tomllib

        text = _config("") + '[limits]\nmax_header_line_bytes = "4KiB"\nunderscores_in_headers = true\n'
        limits = parse(tomllib.loads(text), "a").limits
        assert (limits.max_header_line_bytes, limits.underscores_in_headers) == (4096, True)
        with pytest.raises(ConfigError, match="limits.underscores_in_headers"):
            parse(tomllib.loads(_config("") + "[limits]\nunderscores_in_headers = 1\n"), "a")
