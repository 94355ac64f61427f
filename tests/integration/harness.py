"""Real processes on loopback: the demo origin and edge nodes, started from a generated TOML.

Every address is in 127.0.0.0/8; each edge node gets its own 127.0.0.x. Processes are
killed in `stop()` (called from fixtures' finally), so a failing test never leaks one.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Proc", "free_port", "start_origin", "start_edge", "write_config", "origin_stats", "reset_origin"]

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 30.0


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free on `host` a moment ago."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    """A started process and where it listens."""

    name: str
    popen: subprocess.Popen[bytes]
    host: str
    port: int
    log_path: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stops the process (SIGTERM, then SIGKILL after 10 s)."""
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)

    def kill9(self) -> None:
        """kill -9: no cleanup at all."""
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=10)

    def log(self) -> str:
        """What the process printed so far (for assertion messages)."""
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


def _ready(proc: Proc, path: str | None) -> bool:
    """Whether the process accepts connections (and, with `path`, answers it 200)."""
    try:
        with socket.create_connection((proc.host, proc.port), timeout=0.5) as sock:
            if path is None:
                return True
            sock.settimeout(5)
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {proc.host}\r\nConnection: close\r\n\r\n".encode())
            return sock.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def _wait_ready(proc: Proc, path: str | None = None) -> None:
    """Waits until the process listens; an edge node (path="/_edge/ready") until it is ready."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log()}")
        if _ready(proc, path):
            return
        time.sleep(0.05)
    proc.kill9()
    raise RuntimeError(f"{proc.name} did not listen on {proc.host}:{proc.port} in {READY_TIMEOUT_S}s:\n{proc.log()}")


def _spawn(name: str, args: list[str], host: str, port: int, log_dir: Path, ready_path: str | None = None) -> Proc:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    out = open(log_path, "ab")
    # one process per node unless a test asks for workers (benches import this harness too)
    env = dict(os.environ, PYTHONUNBUFFERED="1", EDGECACHE_WORKERS=os.environ.get("EDGECACHE_WORKERS", "1"))
    popen = subprocess.Popen([sys.executable, *args], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    out.close()
    proc = Proc(name, popen, host, port, log_path)
    _wait_ready(proc, ready_path)
    return proc


def start_origin(log_dir: Path, *, host: str = "127.0.0.1", root: Path | None = None) -> Proc:
    """Starts the demo origin (`python -m origin.demo`)."""
    port = free_port(host)
    args = ["-m", "origin.demo", "--listen", f"{host}:{port}"]
    if root is not None:
        args += ["--root", str(root)]
    return _spawn(f"origin-{port}", args, host, port, log_dir)


def write_config(path: Path, *, origin_url: str, nodes: dict[str, str], cache: dict[str, Any] | None = None,
                 coalesce: dict[str, Any] | None = None, origin: dict[str, Any] | None = None,
                 extra: str = "", server: dict[str, Any] | None = None) -> Path:
    """Writes a config.toml for the given nodes (name → "host:port").

    `server` defaults to `drain_announce_s = 0`: a stopping node does not wait for its peers
    to take it out of their rings (tests that check the drain pass their own table).
    """
    if server is None:
        server = {"drain_announce_s": 0}
    lines = ["access_log = true", ""]
    for name, listen in nodes.items():
        lines += [f"[nodes.{name}]", f'listen = "{listen}"', ""]
    lines.append("[cache]")
    for k, v in (cache or {}).items():
        lines.append(f"{k} = {json.dumps(v)}")
    lines += ["", "[coalesce]"]
    for k, v in (coalesce or {}).items():
        lines.append(f"{k} = {json.dumps(v)}")
    if server:
        lines += ["", "[server]"] + [f"{k} = {json.dumps(v)}" for k, v in server.items()]
    lines += ["", "[origins.demo]", f'servers = ["{origin_url}"]']
    for k, v in (origin or {}).items():
        lines.append(f"{k} = {json.dumps(v)}")
    lines += ["", "[[routes]]", 'host = "*"', 'path_prefix = "/"', 'origin = "demo"', "", extra]
    path.write_text("\n".join(lines))
    return path


def start_edge(config: Path, node: str, log_dir: Path, extra_args: tuple[str, ...] = ()) -> Proc:
    """Starts one edge node of `config` as its own process (`extra_args`: more command-line flags)."""
    import tomllib

    data = tomllib.loads(config.read_text())
    host, _, port = data["nodes"][node]["listen"].rpartition(":")
    args = ["-m", "edge", "--config", str(config), "--node", node, *extra_args]
    return _spawn(f"edge-{node}", args, host, int(port), log_dir,
                  ready_path=data.get("server", {}).get("ready_path", "/_edge/ready"))


def origin_stats(origin: Proc) -> dict[str, Any]:
    """The demo origin's request counters (GET /__stats)."""
    with urllib.request.urlopen(origin.url + "/__stats", timeout=10) as r:
        return dict(json.load(r))


def reset_origin(origin: Proc) -> None:
    """Zeroes the demo origin's counters."""
    req = urllib.request.Request(origin.url + "/__reset", method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        r.read()


# -- raw HTTP on loopback: exact bytes on the wire ---------------------------------------------
# (appended for test_http_caching / test_ranges / test_forwarding)

import asyncio
from email.utils import formatdate


def http_date(ts: float) -> str:
    """An IMF-fixdate for `ts` (e.g. for Last-Modified / Expires in scripted responses)."""
    return formatdate(ts, usegmt=True)


@dataclass(frozen=True, slots=True)
class RawResponse:
    """One response as read off the wire by `parse_responses`."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of a field, case-insensitively, or None."""
        lname = name.lower()
        for n, v in self.headers:
            if n.lower() == lname:
                return v
        return None


async def raw_exchange(host: str, port: int, data: bytes, *, timeout_s: float = 10.0) -> bytes:
    """Sends `data` on a fresh connection and returns every byte until the server closes it."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(data)
        await writer.drain()
        out = bytearray()
        async with asyncio.timeout(timeout_s):
            while chunk := await reader.read(65536):
                out += chunk
        return bytes(out)
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass  # the peer reset the connection after answering: nothing left to read


def parse_responses(data: bytes, *, head_only: tuple[bool, ...] = ()) -> list[RawResponse]:
    """Splits a stream of HTTP/1.1 responses; `head_only[i]` marks the i-th as a HEAD reply.

    Bodies are delimited by Content-Length or chunked coding; a response with neither runs
    to the end of the data. Raises ValueError when the bytes are not well-formed responses.
    """
    responses: list[RawResponse] = []
    pos = 0
    while pos < len(data):
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            raise ValueError(f"incomplete response head at byte {pos}: {data[pos:pos + 80]!r}")
        lines = data[pos:end].decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        if not version.startswith("HTTP/1."):
            raise ValueError(f"not a status line at byte {pos}: {lines[0]!r}")
        status = int(rest.split(" ", 1)[0])
        headers = tuple((n.strip(), v.strip()) for n, _, v in (line.partition(":") for line in lines[1:]))
        pos = end + 4
        response = RawResponse(status, headers, b"")
        is_head = len(responses) < len(head_only) and head_only[len(responses)]
        length = response.header("content-length")
        if is_head or status in (204, 304) or 100 <= status < 200:
            body = b""
        elif length is not None:
            body = data[pos:pos + int(length)]
            if len(body) != int(length):
                raise ValueError(f"body shorter than Content-Length {length}: {len(body)}")
            pos += int(length)
        elif (response.header("transfer-encoding") or "").lower() == "chunked":
            chunks = bytearray()
            while True:
                line_end = data.index(b"\r\n", pos)
                size = int(data[pos:line_end].split(b";")[0], 16)
                pos = line_end + 2
                if size == 0:
                    pos = data.index(b"\r\n", pos) + 2  # no trailers expected
                    break
                chunks += data[pos:pos + size]
                pos += size + 2
            body = bytes(chunks)
        else:
            body, pos = data[pos:], len(data)
        responses.append(RawResponse(status, headers, body))
    return responses


class ScriptedOrigin:
    """A raw HTTP/1.1 origin inside the test process: each target answers exactly as scripted.

    For responses the demo origin cannot produce (no Date header, CDN-Cache-Control). It
    listens on 127.0.0.1 only, counts requests per raw target, and answers unscripted targets
    with 404. Start with `await ScriptedOrigin().start()`, stop with `await close()` in finally.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self._scripts: dict[str, bytes] = {}
        self.counts: dict[str, int] = {}
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()  # open connections, closed by close()
        self._tasks: set[asyncio.Task[Any]] = set()  # their handlers, awaited by close()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def script(self, target: str, headers: list[tuple[str, str]], body: bytes, status: int = 200) -> None:
        """Answers `target` with exactly these fields (Content-Length is added) and body."""
        lines = [f"HTTP/1.1 {status} Scripted"] + [f"{n}: {v}" for n, v in headers]
        lines.append(f"Content-Length: {len(body)}")
        self._scripts[target] = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    async def start(self) -> ScriptedOrigin:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._clients):
                writer.close()
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=10)
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                target = head.split(b"\r\n", 1)[0].split(b" ")[1].decode("latin-1")
                self.counts[target] = self.counts.get(target, 0) + 1
                writer.write(self._scripts.get(target, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the edge closed its keep-alive connection
        finally:
            self._clients.discard(writer)
            if task is not None:
                self._tasks.discard(task)
            writer.close()


# -- aiohttp client side and origin counters ----------------------------------------------------

import aiohttp
import yarl
from multidict import CIMultiDictProxy


@dataclass(frozen=True, slots=True)
class Reply:
    """One response as an aiohttp client (auto_decompress=False) received it, body read."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    @property
    def cache_status(self) -> dict[str, str]:
        """The edge's Cache-Status member as {param: value}; bare tokens map to "" ("hit")."""
        return parse_cache_status(self.headers.get("Cache-Status", ""))


def parse_cache_status(value: str) -> dict[str, str]:
    """"edgecache; hit; ttl=5" -> {"edgecache": "", "hit": "", "ttl": "5"} (quotes dropped).

    Only the last member counts: the node the client talked to (RFC 9211 lists the caches
    nearer the origin first, e.g. a peer's "edgecache-b; hit, edgecache-a; fwd=miss").
    """
    params: dict[str, str] = {}
    for part in value.rpartition(",")[2].split(";"):
        name, _, val = part.strip().partition("=")
        if name:
            params[name] = val.strip('"')
    return params


async def fetch(session: aiohttp.ClientSession, url: str, *, method: str = "GET",
                headers: dict[str, str] | None = None) -> Reply:
    """Sends one request and reads the whole body; `url` goes out exactly as written (no re-quoting)."""
    async with session.request(method, yarl.URL(url, encoded=True), headers=headers, allow_redirects=False) as r:
        return Reply(r.status, r.headers, await r.read())


def origin_count(origin: Proc, raw_path: str) -> int:
    """How many requests (any method) the demo origin received for exactly `raw_path`."""
    return int(origin_stats(origin)["paths"].get(raw_path, 0))


def origin_requests(origin: Proc, raw_path: str) -> list[dict[str, Any]]:
    """The demo origin's last request records for `raw_path`: {"method", "headers": [[n, v]]}."""
    return list(origin_stats(origin)["requests"].get(raw_path, []))
