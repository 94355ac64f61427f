"""Accept-Encoding normalised to br, gzip or identity (issue 12)."""

from __future__ import annotations

import pytest

from edge.rules.accept_encoding import normalise_accept_encoding, normalise_raw_accept_encoding


class TestNormaliseAcceptEncoding:
    @pytest.mark.parametrize(
        ("value", "coding"),
        [
            (None, "identity"), ("", "identity"), ("gzip, deflate, br", "br"), ("gzip, deflate", "gzip"),
            ("GZIP", "gzip"), ("x-gzip", "gzip"), ("br;q=1.0, gzip;q=0.8", "br"), ("br;q=0.5, gzip;q=0.8", "gzip"),
            ("gzip;q=0.5, identity", "identity"), ("deflate, zstd", "identity"), ("*", "br"), ("*;q=0", "identity"),
            ("*;q=0.3, gzip;q=0.5", "gzip"), ("br;q=0, gzip;q=0", "identity"), ("br;q=abc, gzip", "gzip"),
            ("br;q=2, gzip", "gzip"), ("identity;q=0, gzip;q=0.1", "gzip"), (" br ,gzip ", "br"),
            ("gzip;q=1, br;q=1", "br"), (",,,", "identity"),
        ],
    )
    def test_normalise_picks_clients_best_coding_when_value_given(self, value: str | None, coding: str) -> None:
        assert normalise_accept_encoding(value) == coding

    def test_normalise_has_three_outcomes_when_clients_spell_it_many_ways(self) -> None:
        spellings = {f"gzip;q=0.{i % 10}, deflate, x-{i}" for i in range(300)} | {f"br, {i}" for i in range(300)}
        assert {normalise_accept_encoding(s) for s in spellings} <= {"br", "gzip", "identity"}

    def test_raw_fields_are_joined_when_sent_on_several_lines(self) -> None:
        assert normalise_raw_accept_encoding([(b"Accept-Encoding", b"gzip;q=0.5"), (b"accept-encoding", b"br")]) == "br"
        assert normalise_raw_accept_encoding([(b"Host", b"h")]) == "identity"
