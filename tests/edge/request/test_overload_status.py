"""The edge's one mapping of upstream errors: a saturated origin pool is 503 with Retry-After,
whether it reached the request directly or through the fill it joined."""

from __future__ import annotations

import pytest

from edge.fill.inflight import FillFailed, FillOutcome
from edge.request.handler import error_status, retry_after
from origin.errors import ConnectError, PoolSaturated, UpstreamTimeout

pytestmark = pytest.mark.timeout(10)


def test_error_status_answers_503_when_pool_is_saturated() -> None:
    exc = PoolSaturated("pool 'web' is saturated", retry_after_s=3)
    status, reason = error_status(exc)
    assert status == 503 and "retry after 3s" in reason
    assert error_status(FillFailed(FillOutcome.UPSTREAM_ERROR, exc))[0] == 503


def test_retry_after_names_the_wait_when_saturation_is_the_cause() -> None:
    exc = PoolSaturated("pool 'web' is saturated", retry_after_s=3)
    assert retry_after(exc) == [("Retry-After", "3")]
    assert retry_after(FillFailed(FillOutcome.UPSTREAM_ERROR, exc)) == [("Retry-After", "3")]


def test_retry_after_is_absent_when_upstream_failed_otherwise() -> None:
    assert retry_after(ConnectError("refused")) == []
    assert retry_after(FillFailed(FillOutcome.UPSTREAM_ERROR, UpstreamTimeout("slow"))) == []
    assert error_status(ConnectError("refused"))[0] == 502
