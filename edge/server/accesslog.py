"""AccessLog: one line per request (JSON or the combined format), written off the event loop.

Every line carries the request's real duration (from the parsed head to the answer's end,
microsecond resolution; fast-path hits included), the outcome as Cache-Status tells it
(`peer-hit` on the node that served a client through the key's owner), the upstream the
body came from (an origin server's URL, `peer:<name>`, or empty for a stored answer), the
body bytes sent and the status. `[server] access_log_format` picks `json` (the default) or
`combined` (Apache/nginx combined plus `cache=`, `upstream=` and `us=` fields).


The loop only formats a line and appends it to a bounded deque; one writer thread takes
whatever has accumulated and writes it to the stream's descriptor in one os.write. When
whatever reads the stream stalls (a full pipe, a paused terminal), the thread blocks, the
deque fills, and further lines are dropped and counted: requests never wait for the log.
Once the writer gets through again it writes one `{"event": "access_log_dropped", ...}`
line with the count. A closed or missing stream (stdout closed at start, EPIPE, EBADF)
only counts errors and drops: it never fails a request.

With a `path` the lines go to that file (opened for appending) instead. `reopen()` (SIGUSR1,
after logrotate moved the file) asks the writer thread to open the path again, so the loop
never waits on the filesystem; a reopen that fails keeps writing to the old descriptor.
"""

from __future__ import annotations

import collections
import errno
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Literal, Protocol, TextIO

from edge.server.request import Request

__all__ = ["AccessLog", "LogFormat", "LoggedOutcome"]

LogFormat = Literal["json", "combined"]


class LoggedOutcome(Protocol):
    """How a request ended, as the log names it (edge.rules.outcome.CacheOutcome)."""

    @property
    def log_name(self) -> str: ...


log = logging.getLogger("edge.server")

BATCH_BYTES = 256 * 1024  # the most one write hands the descriptor
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _field(raw_headers: list[tuple[bytes, bytes]] | None, name: bytes) -> str:
    """The first value of a raw header field, for the combined format; "-" when absent."""
    for field, value in raw_headers or ():
        if len(field) == len(name) and field.lower() == name:
            return value.decode("latin-1")
    return "-"


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


class AccessLog:
    """Writes `{"t", "node", "peer", "method", "host", "target", "status", "cache", "upstream",
    "bytes", "us", "ms"}` lines, or combined-format lines."""

    def __init__(
        self,
        stream: TextIO | None = None,
        node: str = "",
        max_lines: int = 10_000,
        path: Path | None = None,
        *,
        fmt: LogFormat = "json",
    ) -> None:
        """Raises OSError when `path` cannot be opened for appending."""
        self._node = node
        self._max_lines = max_lines
        self._combined = fmt == "combined"
        self._stamp = (-1, "")  # (second, its combined-format timestamp): formatted once a second
        self._lines: collections.deque[str] = collections.deque()
        self._wake = threading.Event()
        self._stop = False
        # each counter has one writer: the loop (full) or the thread (written, lost, errors)
        self.written = 0  # lines the writer got out
        self._full = 0  # lines dropped by the loop: the buffer was full
        self._lost = 0  # lines in writes that failed (closed stream)
        self.errors = 0  # failed writes
        self._reported = 0  # drops already reported in the log itself
        self._fd = -1
        self._stream: TextIO | None = None
        self._path = path
        self._owned = False  # whether _fd is ours to close (a file we opened, not stdout)
        self._reopen = False  # set by reopen(): the writer thread opens the path again
        self.reopened = 0
        stream = stream if stream is not None else sys.stdout
        if path is not None:
            self._fd, self._owned = _open_append(path), True
        elif stream is not None:
            try:
                self._fd = stream.fileno()
            except (OSError, ValueError, AttributeError):
                self._stream = stream  # no descriptor (a StringIO, a closed stream): write through it
        self._thread = threading.Thread(target=self._run, name="access-log", daemon=True)
        self._thread.start()

    # -- the loop's side ------------------------------------------------------------------------
    def _put(self, line: str) -> None:
        lines = self._lines
        if len(lines) >= self._max_lines:
            self._full += 1
            return
        lines.append(line)
        if not self._wake.is_set():
            self._wake.set()

    def write(
        self,
        request: Request,
        status: int,
        cache: LoggedOutcome,
        size: int,
        seconds: float,
        upstream: str = "",
    ) -> None:
        """Logs one finished request."""
        if self._combined:
            headers = request.headers
            self._put_combined(
                request.peer,
                request.method,
                request.target,
                request.version,
                status,
                size,
                headers.get("referer", "-"),
                headers.get("user-agent", "-"),
                cache,
                upstream,
                seconds,
            )
            return
        self._put(
            self._json(
                request.peer,
                request.method,
                request.host,
                request.target,
                status,
                cache,
                upstream,
                size,
                seconds,
            )
        )

    def write_fast(
        self,
        peer: str,
        method: str,
        host: bytes,
        target: bytes,
        status: int,
        size: int,
        cache: LoggedOutcome,
        seconds: float = 0.0,
        raw_headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        """Logs a hit answered on the fast path (no Request object exists for it)."""
        if self._combined:
            self._put_combined(
                peer,
                method,
                target.decode("latin-1"),
                "1.1",
                status,
                size,
                _field(raw_headers, b"referer"),
                _field(raw_headers, b"user-agent"),
                cache,
                "",
                seconds,
            )
            return
        self._put(
            self._json(
                peer,
                method,
                host.decode("latin-1").lower(),
                target.decode("latin-1"),
                status,
                cache,
                "",
                size,
                seconds,
            )
        )

    def _json(
        self,
        peer: str,
        method: str,
        host: str | None,
        target: str,
        status: int,
        cache: LoggedOutcome,
        upstream: str,
        size: int,
        seconds: float,
    ) -> str:
        micros = max(1, round(seconds * 1_000_000))  # a request never takes no time at all
        return json.dumps(
            {
                "t": round(time.time(), 3),
                "node": self._node,
                "peer": peer,
                "method": method,
                "host": host,
                "target": target,
                "status": status,
                "cache": cache.log_name,
                "upstream": upstream,
                "bytes": size,
                "us": micros,
                "ms": micros / 1000,
            },
            separators=(",", ":"),
        )

    def _put_combined(
        self,
        peer: str,
        method: str,
        target: str,
        version: str,
        status: int,
        size: int,
        referer: str,
        agent: str,
        cache: LoggedOutcome,
        upstream: str,
        seconds: float,
    ) -> None:
        micros = max(1, round(seconds * 1_000_000))
        self._put(
            f'{peer} - - [{self._now()}] "{method} {_quoted(target)} HTTP/{version}" {status} {size} '
            f'"{_quoted(referer)}" "{_quoted(agent)}" cache={cache.log_name} '
            f"upstream={upstream or '-'} us={micros} node={self._node}"
        )

    def _now(self) -> str:
        """The combined format's `10/Oct/2000:13:55:36 +0000` (UTC), formatted once a second."""
        now = time.time()
        second = int(now)
        if self._stamp[0] != second:
            t = time.gmtime(second)
            text = (
                f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:"
                f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
            )
            self._stamp = (second, text)
        return self._stamp[1]

    @property
    def dropped(self) -> int:
        """Lines that never reached the stream (buffer full, or the stream unusable)."""
        return self._full + self._lost

    def stats(self) -> dict[str, int]:
        """Counters for /status."""
        return {
            "written": self.written,
            "dropped": self.dropped,
            "errors": self.errors,
            "queued": len(self._lines),
            "reopened": self.reopened,
        }

    def reopen(self) -> None:
        """Opens the log file again (logrotate); does nothing when logging to stdout."""
        if self._path is not None:
            self._reopen = True
            self._wake.set()

    def close(self, timeout_s: float = 2.0) -> None:
        """Lets the writer flush what is queued (at most `timeout_s`) and stop."""
        self._stop = True
        self._wake.set()
        self._thread.join(timeout_s)
        if self._owned and not self._thread.is_alive():
            fd, self._fd = self._fd, -1
            os.close(fd)

    # -- the writer thread ------------------------------------------------------------------------
    def _run(self) -> None:
        lines = self._lines
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._reopen:
                self._reopen = False
                self._open_again()
            while lines:
                batch: list[str] = []
                size = 0
                while lines and size < BATCH_BYTES:
                    line = lines.popleft()
                    batch.append(line)
                    size += len(line) + 1
                if self._emit(batch):
                    self._report_drops()
            if self._stop:
                return

    def _open_again(self) -> None:
        """The writer thread's side of reopen(): swap descriptors only once the new one is open."""
        assert self._path is not None
        try:
            fd = _open_append(self._path)
        except OSError as exc:
            log.error("access log: cannot reopen %s (%s); still writing to the old file", self._path, exc)
            return
        old, self._fd = self._fd, fd
        if old >= 0:
            os.close(old)
        self.reopened += 1
        log.info("access log reopened: %s", self._path)

    def _report_drops(self) -> None:
        dropped = self._full  # lines lost in failed writes cannot be reported on that stream
        if dropped > self._reported:
            count, self._reported = dropped - self._reported, dropped
            note = {
                "t": round(time.time(), 3),
                "node": self._node,
                "event": "access_log_dropped",
                "lines": count,
            }
            self._emit([json.dumps(note, separators=(",", ":"))], count_lines=False)

    def _emit(self, batch: list[str], count_lines: bool = True) -> bool:
        """Writes lines (blocking this thread only); False when the stream is unusable."""
        text = "\n".join(batch) + "\n"
        try:
            if self._fd >= 0:
                data = memoryview(text.encode("utf-8", "replace"))
                while data:
                    data = data[os.write(self._fd, data) :]
            elif self._stream is not None:
                self._stream.write(text)
                self._stream.flush()
            else:
                raise OSError(errno.EBADF, "no stream")
        except (OSError, ValueError):
            self.errors += 1
            if count_lines:
                self._lost += len(batch)
            return False
        if count_lines:
            self.written += len(batch)
        return True


def _open_append(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
