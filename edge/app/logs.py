"""The access log: opened at start, swapped when a reload turns it on or moves it."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from edge.app.startup import StartupError
from edge.config.deployment import EdgeConfig
from edge.server.accesslog import AccessLog

__all__ = ["open_access_log", "swap_access_log"]

log = logging.getLogger("edge.app")


async def open_access_log(cfg: EdgeConfig) -> AccessLog:
    """The access log on stdout, or appending to access_log_file (a StartupError if it cannot)."""
    lines, path = cfg.server.access_log_buffer_lines, cfg.access_log_file
    try:
        return await asyncio.to_thread(
            AccessLog,
            sys.stdout,
            cfg.node.name,
            lines,
            Path(path) if path else None,
            fmt=cfg.server.access_log_format,
        )
    except OSError as exc:
        raise StartupError(
            f"access_log_file {path}: cannot open it for appending ({exc.strerror}); make its "
            "directory writable by this user or pick another path"
        ) from exc


async def swap_access_log(old: AccessLog | None, old_cfg: EdgeConfig, new: EdgeConfig) -> AccessLog | None:
    """A reload turned the access log on or moved it to another file: the log to use from now.

    The old one is closed once replaced; when the new file cannot be opened, the old one stays.
    """
    if old is not None and new.access_log_file == old_cfg.access_log_file:
        return old
    try:
        opened = await open_access_log(new)
    except StartupError as exc:
        log.error("SIGHUP: keeping the access log as it was: %s", exc)
        return old
    if old is not None:  # requests in flight may still write to it: their lines are lost
        await asyncio.to_thread(old.close)
    return opened
