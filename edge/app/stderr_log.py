"""The node's own log (Python logging) on stderr, written by a thread so it never blocks the loop.

`start_stderr_log(level)` puts one bounded QueueHandler on the root logger and a
QueueListener thread behind it that writes each line to file descriptor 2. A log call on the
event loop formats its line and queues it without waiting; when whatever reads stderr
stalls (a full pipe, a paused terminal) the thread blocks in write() and the queue fills,
and then lines are dropped and counted instead of stopping the loop. Once the thread has
caught up (the queue is empty again) it writes one line saying how many were lost.

The thread writes with os.write on the descriptor, never through sys.stderr, and holds no
lock while it writes: a write stuck on a stalled reader at exit can then delay neither
logging's shutdown flush nor the interpreter's flush of sys.stderr (a daemon thread holding
sys.stderr's buffer lock there is a fatal error). `stop()` gives the queued lines a bounded
time to go out.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from logging.handlers import QueueHandler, QueueListener

__all__ = ["MAX_QUEUED_LINES", "StderrLog", "start_stderr_log"]

MAX_QUEUED_LINES = 4096  # lines waiting for the writer thread; beyond this they are dropped
STOP_WAIT_S = 2.0  # at exit, queued lines get this long to be written
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _Drops:
    """Lines dropped since the last report; the loop thread adds, the writer thread takes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards `pending` between the two threads
        self.pending = 0
        self.total = 0

    def add(self) -> None:
        with self._lock:
            self.pending += 1
            self.total += 1

    def take(self) -> int:
        with self._lock:
            n, self.pending = self.pending, 0
            return n


class _Enqueue(QueueHandler):
    """Formats on the caller's thread and queues without waiting; a full queue drops the line."""

    def __init__(self, lines: queue.Queue[logging.LogRecord | None], drops: _Drops) -> None:
        super().__init__(lines)
        self._drops = drops

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self._drops.add()


class _WriteFd(logging.Handler):
    """The writer thread's handler: one os.write per line to `fd`, and the drop report."""

    flushOnClose = False  # logging.shutdown() at exit: nothing is buffered here, never flush

    def __init__(self, fd: int, lines: queue.Queue[logging.LogRecord | None], drops: _Drops) -> None:
        super().__init__()
        self._fd = fd
        self._lines = lines
        self._drops = drops

    def handle(self, record: logging.LogRecord) -> bool:
        # only the listener thread calls this; without Handler's lock, logging.shutdown() at exit
        # never waits on a write stuck behind a stalled reader
        if record.levelno >= self.level:
            self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        self._write(record.getMessage())  # QueueHandler.prepare already made it the full line
        if self._lines.empty():
            lost = self._drops.take()
            if lost:
                self._write(
                    f"{logging.Formatter().formatTime(record)} WARNING edge.app.stderr_log: {lost} log "
                    f"lines were dropped while stderr was not being read (at most {MAX_QUEUED_LINES} wait)"
                )

    def _write(self, line: str) -> None:
        data = (line + "\n").encode("utf-8", "replace")
        try:
            while data:
                data = data[os.write(self._fd, data) :]
        except OSError:  # stderr closed or gone: the line is lost, the node goes on
            self._drops.add()


class StderrLog:
    """The running stderr log: its queue, the writer thread and the drop count."""

    def __init__(self, level: int | str, fd: int = 2, max_lines: int = MAX_QUEUED_LINES) -> None:
        self._lines: queue.Queue[logging.LogRecord | None] = queue.Queue(maxsize=max_lines)
        self._drops = _Drops()
        self.handler = _Enqueue(self._lines, self._drops)
        self.handler.setFormatter(logging.Formatter(FORMAT))
        self._listener = QueueListener(self._lines, _WriteFd(fd, self._lines, self._drops))
        self._level: int | str = level

    @property
    def dropped(self) -> int:
        """Lines lost so far (queue full, or stderr unusable)."""
        return self._drops.total

    def start(self) -> None:
        """Routes the root logger through the queue and starts the writer thread."""
        root = logging.getLogger()
        level, self._level = self._level, root.level  # stop() puts the old level back
        root.setLevel(level)
        root.addHandler(self.handler)
        self._listener.start()

    def stop(self, timeout_s: float = STOP_WAIT_S) -> None:
        """Detaches from the root logger; queued lines get `timeout_s` to be written."""
        root = logging.getLogger()
        root.removeHandler(self.handler)
        root.setLevel(self._level)
        thread = self._listener._thread  # QueueListener.stop() would join without a bound
        try:
            self._lines.put(None, timeout=timeout_s)  # QueueListener's sentinel
        except queue.Full:
            return  # the writer is stuck on a stalled reader: its daemon thread ends with the process
        if thread is not None:
            thread.join(timeout_s)


def start_stderr_log(level: int | str) -> StderrLog:
    """Starts the node's stderr log at `level` (a logging level or its name)."""
    log = StderrLog(level)
    log.start()
    return log
