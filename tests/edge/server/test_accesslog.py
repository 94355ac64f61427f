"""edge.server.accesslog: lines reach a real pipe off the loop; a stalled or closed reader never blocks."""

from __future__ import annotations

import json
import os
import sys
import time

import pytest
from multidict import CIMultiDict

from edge.rules.outcome import CacheOutcome
from edge.server.accesslog import AccessLog
from edge.server.request import Request

pytestmark = pytest.mark.timeout(30)

REQUEST = Request(method="GET", target="/x?" + "p" * 200, version="1.1", headers=CIMultiDict(host="a"),
                  body=None, keep_alive=True, peer="127.0.0.1")


def _read_lines(fd: int, want: int, timeout_s: float = 10.0) -> list[dict[str, object]]:
    """Reads JSON lines from a blocking-free pipe until `want` lines (or an event line) came."""
    os.set_blocking(fd, False)
    data = bytearray()
    deadline = time.monotonic() + timeout_s
    while data.count(b"\n") < want and time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 1 << 20)
        except BlockingIOError:
            time.sleep(0.01)
            continue
        if not chunk:
            break
        data += chunk
    return [json.loads(line) for line in bytes(data).splitlines()]


class TestAccessLog:
    def test_lines_reach_the_descriptor_as_json(self) -> None:
        r, w = os.pipe()
        with os.fdopen(w, "w") as stream:
            log = AccessLog(stream, "edge1")
            try:
                log.write(REQUEST, 200, CacheOutcome.HIT, 5, 0.0012)
                log.write_fast("127.0.0.9", "HEAD", b"A", b"/y", 200, 0, CacheOutcome.HIT)
                lines = _read_lines(r, 2)
            finally:
                log.close()
        os.close(r)
        assert [(x["method"], x["host"], x["status"]) for x in lines] == [
            ("GET", "a", 200),
            ("HEAD", "a", 200),
        ]
        assert lines[0]["node"] == "edge1" and lines[0]["ms"] == 1.2
        assert log.stats()["written"] == 2

    def test_a_pipe_nobody_reads_never_blocks_the_caller_and_drops_are_counted_then_reported(self) -> None:
        r, w = os.pipe()
        stream = os.fdopen(w, "w")
        log = AccessLog(stream, "edge1", max_lines=100)
        try:
            started = time.monotonic()
            for _ in range(5000):  # ~1.3 MB of lines into a 64 KiB pipe
                log.write(REQUEST, 200, CacheOutcome.HIT, 5, 0.001)
            assert time.monotonic() - started < 5  # never waited for the reader
            assert log.dropped > 0
            dropped = log.dropped
            lines = _read_lines(r, 10_000, timeout_s=3)
            notes = [x for x in lines if x.get("event") == "access_log_dropped"]
            assert notes and sum(int(str(n["lines"])) for n in notes) == dropped
            assert log.stats()["written"] + dropped == 5000
        finally:
            log.close(0.5)
            stream.close()
            os.close(r)

    def test_closed_reader_counts_errors_and_never_raises(self) -> None:
        r, w = os.pipe()
        os.close(r)  # EPIPE on every write
        stream = os.fdopen(w, "w")
        log = AccessLog(stream, "edge1")
        try:
            for _ in range(10):
                log.write_fast("127.0.0.9", "GET", b"a", b"/", 200, 1, CacheOutcome.HIT)
            log.close()
            assert log.stats()["written"] == 0
            assert log.errors > 0 and log.dropped == 10
        finally:
            stream.close()

    def test_missing_stdout_counts_errors_and_never_raises(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(sys, "stdout", None)  # what Python sets when fd 1 is closed at start
        log = AccessLog(None, "edge1")
        log.write(REQUEST, 200, CacheOutcome.MISS, 1, 0.0)
        log.close()
        assert log.dropped == 1 and log.errors == 1
