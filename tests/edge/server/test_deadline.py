"""edge.server.deadline: which timeout a connection's phase runs out of, and when (pure)."""

from __future__ import annotations

import pytest

from edge.config.server import ServerConfig
from edge.server.deadline import Phase, TimeoutReason, Times, Verdict, verdict

pytestmark = pytest.mark.timeout(10)

CFG = ServerConfig(
    head_timeout_s=10.0,
    idle_timeout_s=30.0,
    body_timeout_s=5.0,
    body_min_rate=100.0,
    send_timeout_s=60.0,
    request_timeout_s=300.0,
)


class TestIdleAndHead:
    def test_idle_connection_expires_at_idle_timeout(self) -> None:
        assert verdict(CFG, Phase.IDLE, 100.0, Times(), 129.9) == Verdict(None, 130.0)
        assert verdict(CFG, Phase.IDLE, 100.0, Times(), 130.0) == Verdict(TimeoutReason.IDLE, 130.0)

    def test_head_counts_from_its_first_byte_whatever_arrives_since(self) -> None:
        assert verdict(CFG, Phase.HEAD, 100.0, Times(), 109.0).expired is None
        assert verdict(CFG, Phase.HEAD, 100.0, Times(), 110.5).expired is TimeoutReason.HEAD


class TestBody:
    def test_gap_between_body_pieces_expires_at_body_timeout(self) -> None:
        t = Times(body_start=100.0, body_last=103.0, body_bytes=10_000)
        assert verdict(CFG, Phase.BODY, 99.0, t, 107.9).expired is None
        assert verdict(CFG, Phase.BODY, 99.0, t, 108.1).expired is TimeoutReason.BODY_IDLE

    def test_body_below_min_rate_expires_even_without_gaps(self) -> None:
        # 1 byte a second, arriving steadily: each byte buys 1/100 s, the grace is 5 s
        t = Times(body_start=100.0, body_last=120.0, body_bytes=20)
        assert verdict(CFG, Phase.BODY, 99.0, t, 120.0) == Verdict(TimeoutReason.BODY_RATE, 105.2)

    def test_body_at_min_rate_keeps_going(self) -> None:
        t = Times(body_start=100.0, body_last=119.9, body_bytes=2_000)  # 100 B/s for 20 s
        found = verdict(CFG, Phase.BODY, 99.0, t, 120.0)
        assert found.expired is None
        assert found.at == pytest.approx(124.9)  # the next gap deadline comes first

    def test_zero_min_rate_turns_the_rate_check_off(self) -> None:
        cfg = ServerConfig(body_timeout_s=5.0, body_min_rate=0.0)
        t = Times(body_start=0.0, body_last=999.0, body_bytes=1)
        assert verdict(cfg, Phase.BODY, 0.0, t, 1000.0) == Verdict(None, 1004.0)


class TestBusyAndSend:
    def test_unstreamed_answer_is_bounded_by_request_timeout(self) -> None:
        assert verdict(CFG, Phase.BUSY, 100.0, Times(), 399.0) == Verdict(None, 400.0)
        assert verdict(CFG, Phase.BUSY, 100.0, Times(), 400.0).expired is TimeoutReason.REQUEST

    def test_streamed_answer_has_no_phase_deadline(self) -> None:
        assert verdict(CFG, Phase.BUSY, 100.0, Times(bounded=False), 10_000.0) == Verdict(None, None)

    def test_write_stall_expires_in_any_phase(self) -> None:
        for phase in Phase:
            t = Times(stall_since=0.0, body_start=100.0, body_last=100.0, body_bytes=10**9)
            assert verdict(CFG, phase, 100.0, t, 59.0) == Verdict(None, 60.0), phase
            assert verdict(CFG, phase, 100.0, t, 60.0).expired is TimeoutReason.SEND, phase

    def test_earliest_deadline_wins(self) -> None:
        t = Times(stall_since=100.0)  # send at 160, request at 400
        assert verdict(CFG, Phase.BUSY, 100.0, t, 101.0) == Verdict(None, 160.0)
