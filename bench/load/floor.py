"""The Python floor for bench/load/hits.py: a bare uvloop asyncio.Protocol answering prebuilt bytes.

One process, llhttp (httptools) parsing, and for each request one dict lookup of the target and
one transport.write of a response built the first time that target was asked for: no cache
rules, no Age, no logging, no timers. It is what any Python hit path pays at least, measured in
the same run as the edge and nginx. A target with `size=N` in its query gets N bytes of body;
anything else 404. Loopback only; stops on SIGTERM/SIGINT.

    .venv/bin/python bench/load/floor.py --listen 127.0.0.1:PORT
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
from typing import ClassVar
from urllib.parse import urlsplit

import httptools
import uvloop

_SIZE = re.compile(rb"(?:^|&)size=(\d{1,9})(?:&|$)")
_MAX_TARGETS = 1024  # prebuilt responses kept; the table starts over beyond it
_MAX_BODY = 64 << 20
_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"


def build(target: bytes) -> bytes:
    """The whole response for a target: `size` bytes of body, or an empty 404."""
    found = _SIZE.search(urlsplit(target).query)
    size = int(found.group(1)) if found else -1
    if not 0 <= size <= _MAX_BODY:
        return _NOT_FOUND
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
        b"Cache-Control: max-age=3600\r\nCache-Status: floor; hit\r\nContent-Length: %d\r\n\r\n" % size
    )
    return head + b"x" * size


class Floor(asyncio.Protocol):
    """One connection: parse, look the target up, write the prebuilt bytes."""

    prebuilt: ClassVar[dict[bytes, bytes]] = {}  # target → whole response, shared by connections

    def __init__(self) -> None:
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            if self._transport is not None:
                self._transport.close()

    def on_url(self, url: bytes) -> None:
        self._url = self._url + url if self._url else url

    def on_message_complete(self) -> None:
        url, self._url = self._url, b""
        response = self.prebuilt.get(url)
        if response is None:
            if len(self.prebuilt) >= _MAX_TARGETS:
                self.prebuilt.clear()
            response = self.prebuilt[url] = build(url)
        if self._transport is not None:
            self._transport.write(response)
            if not self._parser.should_keep_alive():
                self._transport.close()


async def serve(host: str, port: int) -> None:
    """Serves until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = await loop.create_server(Floor, host, port, reuse_address=True, backlog=1024)
    try:
        await stop.wait()
    finally:
        server.close()


def main() -> None:
    """Parses --listen and serves."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--listen", default="127.0.0.1:8099", help="HOST:PORT (loopback)")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    uvloop.run(serve(host, int(port)))


if __name__ == "__main__":
    main()
