"""The sample site generator and the deterministic synthetic bodies behind it."""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import pytest

from origin.demo import sample, synthetic


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sample")
    sample.generate(root, log=lambda _: None)
    return root


class TestSyntheticBody:
    def test_body_is_identical_when_generated_twice(self) -> None:
        assert synthetic.body("a", 200_000, "1") == synthetic.body("a", 200_000, "1")

    def test_body_differs_when_name_or_version_differs(self) -> None:
        base = synthetic.body("a", 4096, "1")
        assert base != synthetic.body("b", 4096, "1")
        assert base != synthetic.body("a", 4096, "2")

    def test_body_is_prefix_when_shorter(self) -> None:
        assert synthetic.body("a", 70_000) == synthetic.body("a", 140_000)[:70_000]

    def test_body_blocks_differ_when_offset_by_whole_blocks(self) -> None:
        data = synthetic.body("a", 3 * synthetic.BLOCK_BYTES)
        size = synthetic.BLOCK_BYTES
        blocks = {data[i : i + size] for i in range(0, len(data), size)}
        assert len(blocks) == 3

    @pytest.mark.parametrize(
        ("chunk", "start", "end"), [(1000, 0, None), (7, 65530, 65600), (65536, 1, 200_000)]
    )
    def test_iter_body_yields_same_bytes_when_chunked(
        self, chunk: int, start: int, end: int | None
    ) -> None:
        whole = synthetic.body("c", 200_000, "v")
        pieces = list(synthetic.iter_body("c", 200_000, "v", chunk, start=start, end=end))
        assert b"".join(pieces) == whole[start:end]
        assert all(len(p) == chunk for p in pieces[:-1])


class TestSampleSite:
    def test_generate_writes_every_linked_file_when_run(self, site: Path) -> None:
        html = (site / "index.html").read_text()
        for link in re.findall(r'(?:href|src)="/([^"?]+)"', html):
            if not link.startswith(("obj/", "echo/")):
                assert (site / link).is_file(), link

    def test_generate_writes_valid_png_when_run(self, site: Path) -> None:
        data = (site / "logo.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        length, kind = struct.unpack(">I4s", data[8:16])
        assert kind == b"IHDR"
        (crc,) = struct.unpack(">I", data[16 + length : 20 + length])
        assert crc == zlib.crc32(data[12 : 16 + length])

    def test_generate_writes_hls_ladder_when_run(self, site: Path) -> None:
        assert "720p/index.m3u8" in (site / "video/hls/master.m3u8").read_text()
        playlist = (site / "video/hls/720p/index.m3u8").read_text()
        segments = re.findall(r"^seg\d{5}\.ts$", playlist, re.MULTILINE)
        assert len(segments) == sample.HLS_SEGMENTS
        for name in segments:
            data = (site / "video/hls/720p" / name).read_bytes()
            assert len(data) >= 100 * 1024
            assert data[::188] == b"\x47" * (len(data) // 188)

    def test_generate_writes_dash_segments_when_run(self, site: Path) -> None:
        mpd = (site / "video/dash/manifest.mpd").read_text()
        assert 'media="seg$Number%05d$.m4s"' in mpd
        for n in range(1, sample.DASH_SEGMENTS + 1):
            assert (site / f"video/dash/seg{n:05d}.m4s").read_bytes()[4:8] == b"styp"

    def test_generate_writes_big_mp4_with_ftyp_when_run(self, site: Path) -> None:
        path = site / "video/big.mp4"
        assert path.stat().st_size == sample.BIG_MP4_BYTES
        with open(path, "rb") as f:
            head = f.read(48)
        (ftyp_size,) = struct.unpack(">I", head[:4])
        assert head[4:8] == b"ftyp"
        assert head[ftyp_size + 4 : ftyp_size + 8] == b"mdat"
        (largesize,) = struct.unpack(">Q", head[ftyp_size + 8 : ftyp_size + 16])
        assert ftyp_size + largesize == sample.BIG_MP4_BYTES

    def test_generate_keeps_files_when_run_again(self, tmp_path: Path) -> None:
        lines: list[str] = []
        sample.generate(tmp_path, log=lines.append)
        assert any("big.mp4" in line for line in lines)
        before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
        lines.clear()
        sample.generate(tmp_path, log=lines.append)
        after = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
        assert before == after
        assert lines == [f"sample site in {tmp_path}: 0 file(s) written"]

    def test_generate_rewrites_file_when_truncated(self, tmp_path: Path) -> None:
        sample.generate(tmp_path, log=lambda _: None)
        seg = tmp_path / "video/hls/720p/seg00002.ts"
        good = seg.read_bytes()
        seg.write_bytes(good[:1000])
        sample.generate(tmp_path, log=lambda _: None)
        assert seg.read_bytes() == good
