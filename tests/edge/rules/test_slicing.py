"""Slice arithmetic and the check of an origin's answer to a slice request (pure)."""

from __future__ import annotations

import itertools

import pytest

from edge.rules.slicing import (
    SliceCheck,
    SliceExpect,
    SliceSpan,
    accepts_ranges,
    check_slice,
    cold_slice_index,
    parse_content_range,
    slice_count,
    slice_span,
    slices_for,
    worth_slicing,
)

MiB = 1 << 20
TOTAL = 5 * MiB + 10


class TestArithmetic:
    def test_spans_tile_the_object_and_the_last_is_short(self) -> None:
        spans = [slice_span(k, TOTAL, MiB) for k in range(slice_count(TOTAL, MiB))]
        assert len(spans) == 6
        assert spans[0] == SliceSpan(0, 0, MiB) and spans[-1] == SliceSpan(5, 5 * MiB, TOTAL)
        assert all(a.end == b.start for a, b in itertools.pairwise(spans))
        assert spans[-1].range_header == f"bytes={5 * MiB}-{TOTAL - 1}"

    def test_slices_for_a_range(self) -> None:
        assert list(slices_for(0, 1, MiB)) == [0]
        assert list(slices_for(MiB - 1, MiB + 1, MiB)) == [0, 1]
        assert list(slices_for(2 * MiB, 3 * MiB, MiB)) == [2]
        assert list(slices_for(5, 5, MiB)) == []

    @pytest.mark.parametrize(
        ("value", "index"),
        [
            ("bytes=3145728-", 3),
            ("bytes=3145729-3145800", 3),
            ("bytes=0-100", None),  # the first slice: the whole fill serves it as fast
            ("bytes=-500", None),  # suffix: depends on the unknown length
            ("bytes=2097152-10,3000000-3000001", None),
            ("items=2097152-", None),
            ("bytes=3000000-2000000", None),
            (None, None),
        ],
    )
    def test_cold_slice_index(self, value: str | None, index: int | None) -> None:
        assert cold_slice_index(value, MiB) == index

    def test_worth_slicing_needs_size_status_and_a_validator(self) -> None:
        kw = {"size": MiB, "etag": '"x"', "last_modified": None}
        assert worth_slicing(status=200, length=2 * MiB, **kw)  # type: ignore[arg-type]
        assert not worth_slicing(status=200, length=MiB, **kw)  # type: ignore[arg-type]
        assert not worth_slicing(status=404, length=2 * MiB, **kw)  # type: ignore[arg-type]
        assert not worth_slicing(status=200, length=None, **kw)  # type: ignore[arg-type]
        assert not worth_slicing(status=200, length=2 * MiB, size=0, etag='"x"', last_modified=None)
        assert not worth_slicing(status=200, length=2 * MiB, size=MiB, etag='W/"x"', last_modified=None)
        assert worth_slicing(status=200, length=2 * MiB, size=MiB, etag=None, last_modified="Tue, 1 Jan 2030")

    def test_accepts_ranges(self) -> None:
        assert accepts_ranges([("Accept-Ranges", "bytes")])
        assert accepts_ranges([("accept-ranges", "none, Bytes")])
        assert not accepts_ranges([("Accept-Ranges", "none")])
        assert not accepts_ranges([])


class TestContentRange:
    @pytest.mark.parametrize(
        ("value", "parsed"),
        [
            ("bytes 0-9/100", (0, 10, 100)),
            ("bytes 90-99/100", (90, 100, 100)),
            ("bytes 90-100/100", None),
            ("bytes 9-0/100", None),
            ("bytes */100", None),
            ("bytes 0-9/*", None),
            ("items 0-9/100", None),
            (None, None),
        ],
    )
    def test_parse(self, value: str | None, parsed: tuple[int, int, int] | None) -> None:
        assert parse_content_range(value) == parsed


class TestCheck:
    span = slice_span(2, TOTAL, MiB)
    expect = SliceExpect(span, TOTAL, '"v1"', "Tue, 01 Jan 2030 00:00:00 GMT")

    def headers(self, first: int, last: int, total: int = TOTAL, etag: str = '"v1"') -> list[tuple[str, str]]:
        return [
            ("Content-Range", f"bytes {first}-{last}/{total}"),
            ("ETag", etag),
            ("Last-Modified", "Tue, 01 Jan 2030 00:00:00 GMT"),
        ]

    def test_the_asked_range_of_the_same_object_is_ok(self) -> None:
        assert check_slice(206, self.headers(2 * MiB, 3 * MiB - 1), self.expect) == (SliceCheck.OK, TOTAL)

    def test_another_version_is_changed(self) -> None:
        assert (
            check_slice(206, self.headers(2 * MiB, 3 * MiB - 1, etag='"v2"'), self.expect)[0]
            is SliceCheck.CHANGED
        )
        grown = self.headers(2 * MiB, 3 * MiB - 1, total=TOTAL + 1)
        assert check_slice(206, grown, self.expect)[0] is SliceCheck.CHANGED

    def test_another_range_is_wrong(self) -> None:
        assert check_slice(206, self.headers(0, MiB - 1), self.expect)[0] is SliceCheck.WRONG_RANGE
        assert check_slice(206, [("ETag", '"v1"')], self.expect)[0] is SliceCheck.WRONG_RANGE

    def test_a_200_is_the_whole_object_and_checked_too(self) -> None:
        whole = [
            ("Content-Length", str(TOTAL)),
            ("ETag", '"v1"'),
            ("Last-Modified", "Tue, 01 Jan 2030 00:00:00 GMT"),
        ]
        assert check_slice(200, whole, self.expect) == (SliceCheck.WHOLE, TOTAL)
        assert check_slice(200, [("Content-Length", "5"), *whole[1:]], self.expect)[0] is SliceCheck.CHANGED

    def test_other_statuses_are_bad(self) -> None:
        assert check_slice(416, [], self.expect)[0] is SliceCheck.BAD_STATUS
        assert check_slice(503, [], self.expect)[0] is SliceCheck.BAD_STATUS

    def test_a_cold_seek_accepts_a_short_last_slice_and_learns_the_total(self) -> None:
        cold = SliceExpect(SliceSpan(5, 5 * MiB, 6 * MiB), None, None, None)
        got = check_slice(206, [("Content-Range", f"bytes {5 * MiB}-{TOTAL - 1}/{TOTAL}")], cold)
        assert got == (SliceCheck.OK, TOTAL)
