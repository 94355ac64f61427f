"""edge.app.stderr_log: log calls never wait for stderr's reader; lost lines are counted and reported.

A real pipe stands in for stderr (the writer thread gets its write end); nobody reads it
until the test says so.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator

import pytest

from edge.app.stderr_log import StderrLog

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    try:
        yield r, w
    finally:
        for fd in (r, w):
            try:
                os.close(fd)
            except OSError:
                pass


def read_until(fd: int, text: bytes, timeout_s: float = 10) -> bytes:
    """Reads the pipe until `text` arrived (in a thread, so a missing line fails by the deadline)."""
    got = bytearray()
    done = threading.Event()

    def reader() -> None:
        while text not in got:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            got.extend(chunk)
        done.set()

    threading.Thread(target=reader, daemon=True).start()
    assert done.wait(timeout_s), f"{text!r} not written within {timeout_s}s: {bytes(got[-500:])!r}"
    return bytes(got)


class TestStalledReader:
    def test_log_calls_return_at_once_and_drop_lines_when_nobody_reads(self, pipe: tuple[int, int]) -> None:
        r, w = pipe
        stderr = StderrLog(logging.INFO, fd=w, max_lines=50)
        stderr.start()
        log = logging.getLogger("tests.stderr")
        try:
            line = "x" * 1000
            started = time.monotonic()
            for i in range(2000):  # 2 MB: far beyond the pipe (64 KiB) and the queue
                log.warning("line %d %s", i, line)
            assert time.monotonic() - started < 5  # a blocking write would stop at the full pipe
            assert stderr.dropped > 1000
            # the reader comes back: the queued lines go out, then one line saying how many were lost
            out = read_until(r, b"lines were dropped while stderr was not being read")
            report = [x for x in out.decode().splitlines() if "dropped" in x]
            assert len(report) == 1 and f"{stderr.dropped} log lines" in report[0], report
            assert b"line 0 " in out and b"WARNING tests.stderr: line" in out
        finally:
            stderr.stop(timeout_s=5)

    def test_a_closed_stderr_loses_lines_without_an_error(self, pipe: tuple[int, int]) -> None:
        r, w = pipe
        os.close(r)  # nobody will ever read: writes fail with EPIPE (SIGPIPE is ignored by Python)
        stderr = StderrLog(logging.INFO, fd=w)
        stderr.start()
        try:
            logging.getLogger("tests.stderr").error("into the void")
            deadline = time.monotonic() + 10
            while stderr.dropped == 0:
                assert time.monotonic() < deadline
                time.sleep(0.01)
        finally:
            stderr.stop(timeout_s=5)
