"""Unit tests for cluster.purge: the fsync'd journal, reopening, torn tails, cursors and dedupe (issue 5)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cluster.purge import JournalError, Purge, PurgeKind, PurgeLog, pack_purge, unpack_purge


def _theirs(node: str, seq: int, value: str = "http://a.test/x") -> Purge:
    return Purge(node, seq, PurgeKind.URL, value, "a.test", False, 1000.0 + seq)


class TestAppend:
    async def test_append_assigns_contiguous_seq_and_gen_when_called_in_turn(
        self, tmp_path: Path
    ) -> None:
        log = await PurgeLog.open(tmp_path / "j", "n1")
        first, gen1 = await log.append(PurgeKind.TAG, "t", "a.test", False, now=1.0)
        second, gen2 = await log.append(PurgeKind.ALL, "a.test", "a.test", True, now=2.0)
        assert (first.id, second.id) == ("n1:1", "n1:2")
        assert (gen1, gen2) == (1, 2)
        assert log.generation == 2 and log.cursor() == {"n1": 2}

    async def test_append_fsyncs_before_returning_when_journal_is_on_disk(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        synced: list[int] = []
        real = os.fsync

        def counting(fd: int) -> None:
            synced.append(os.fstat(fd).st_size)
            real(fd)

        monkeypatch.setattr(os, "fsync", counting)
        log = await PurgeLog.open(tmp_path / "j", "n1")
        await log.append(PurgeKind.URL, "http://a.test/x", "a.test", False, now=1.0)
        assert len(synced) == 1 and synced[0] == (tmp_path / "j").stat().st_size > 0

    async def test_append_raises_journal_error_when_file_cannot_be_written(
        self, tmp_path: Path
    ) -> None:
        log = await PurgeLog.open(tmp_path / "j", "n1")
        (tmp_path / "j").mkdir()  # a directory where the file should be
        with pytest.raises(JournalError):
            await log.append(PurgeKind.URL, "http://a.test/x", "a.test", False, now=1.0)
        assert log.generation == 0


class TestReopen:
    async def test_reopen_restores_purges_gens_and_own_seq_when_file_is_intact(
        self, tmp_path: Path
    ) -> None:
        log = await PurgeLog.open(tmp_path / "j", "n1")
        await log.append(PurgeKind.URL, "http://a.test/x", "a.test", False, now=1.0)
        await log.record(_theirs("n2", 1))
        again = await PurgeLog.open(tmp_path / "j", "n1")
        assert again.generation == 2
        assert [(g, p.id) for g, p in again.after(0)] == [(1, "n1:1"), (2, "n2:1")]
        purge, gen = await again.append(PurgeKind.TAG, "t", "a.test", False, now=2.0)
        assert (purge.id, gen) == ("n1:2", 3)

    async def test_reopen_cuts_torn_tail_when_last_record_was_half_written(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "j"
        log = await PurgeLog.open(path, "n1")
        await log.append(PurgeKind.URL, "http://a.test/x", "a.test", False, now=1.0)
        whole = path.stat().st_size
        await log.append(PurgeKind.URL, "http://a.test/y", "a.test", False, now=2.0)
        data = path.read_bytes()
        path.write_bytes(data[: whole + (len(data) - whole) // 2])  # crash mid-append
        again = await PurgeLog.open(path, "n1")
        assert again.generation == 1 and path.stat().st_size == whole
        purge, gen = await again.append(PurgeKind.URL, "http://a.test/z", "a.test", False, now=3.0)
        assert (purge.id, gen) == ("n1:2", 2)
        assert (await PurgeLog.open(path, "n1")).generation == 2

    async def test_reopen_cuts_zeroed_tail_when_blocks_were_allocated_but_not_written(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "j"
        log = await PurgeLog.open(path, "n1")
        await log.append(PurgeKind.URL, "http://a.test/x", "a.test", False, now=1.0)
        path.write_bytes(path.read_bytes() + b"\x00" * 64)
        again = await PurgeLog.open(path, "n1")
        assert again.generation == 1

    async def test_reopen_stops_at_corrupt_record_when_a_byte_flipped(self, tmp_path: Path) -> None:
        path = tmp_path / "j"
        log = await PurgeLog.open(path, "n1")
        await log.append(PurgeKind.URL, "http://a.test/x", "a.test", False, now=1.0)
        whole = path.stat().st_size
        await log.append(PurgeKind.URL, "http://a.test/yyyy", "a.test", False, now=2.0)
        data = bytearray(path.read_bytes())
        data[whole + 10] ^= 0x01
        path.write_bytes(bytes(data))
        assert (await PurgeLog.open(path, "n1")).generation == 1


class TestRecordAndCursor:
    async def test_record_returns_none_when_purge_was_seen(self, tmp_path: Path) -> None:
        log = await PurgeLog.open(tmp_path / "j", "n1")
        assert await log.record(_theirs("n2", 1)) == 1
        assert await log.record(_theirs("n2", 1)) is None
        assert log.generation == 1

    async def test_cursor_is_watermark_when_a_seq_is_missing(self, tmp_path: Path) -> None:
        log = await PurgeLog.open(None, "n1")
        await log.record(_theirs("n2", 1))
        await log.record(_theirs("n2", 3))
        assert log.cursor() == {"n2": 1}
        await log.record(_theirs("n2", 2))
        assert log.cursor() == {"n2": 3}

    async def test_since_returns_what_peer_misses_when_given_its_cursor(self) -> None:
        log = await PurgeLog.open(None, "n1")
        for seq in (1, 2, 3):
            await log.record(_theirs("n2", seq))
        await log.append(PurgeKind.TAG, "t", "a.test", False, now=1.0)
        missing = log.since({"n2": 1})
        assert [p.id for p in missing] == ["n1:1", "n2:2", "n2:3"]
        assert [p.id for p in log.since({"n2": 3, "n1": 1})] == []
        assert len(log.since({}, limit=2)) == 2

    async def test_own_seq_continues_after_peers_when_memory_journal_restarts(self) -> None:
        log = await PurgeLog.open(None, "n1")
        await log.record(_theirs("n1", 1))
        await log.record(_theirs("n1", 2))  # our own purges, learnt back from a peer
        purge, _ = await log.append(PurgeKind.URL, "http://a.test/q", "a.test", False, now=1.0)
        assert purge.id == "n1:3"


class TestWire:
    def test_unpack_purge_round_trips_when_given_pack_purge_output(self) -> None:
        p = Purge("n1", 7, PurgeKind.PREFIX, "http://a.test/p", "a.test", True, 12.5)
        assert unpack_purge(pack_purge(p)) == p

    @pytest.mark.parametrize(
        "bad",
        [
            None,
            [],
            ["n", 0, "url", "v", "h", False, 1.0],
            ["n", 1, "nope", "v", "h", False, 1.0],
            ["n", 1, "url", "v", "h", 1, 1.0],
        ],
    )
    def test_unpack_purge_raises_value_error_when_fields_are_wrong(self, bad: object) -> None:
        with pytest.raises(ValueError):
            unpack_purge(bad)
