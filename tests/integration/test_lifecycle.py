"""Integration: a node's lifecycle under signals, as real processes on loopback (issue 10).

- SIGTERM with requests in flight: every one completes with its full, correct body, the
  readiness endpoint turns 503 before the listener closes, new connections are then refused,
  and the process exits 0;
- in a region, a draining node's peers take it out of their ring while it still serves;
- readiness and liveness answer on their listeners; `/_edge/` stays 404 otherwise.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from pathlib import Path

import aiohttp
import pytest

from origin.demo import synthetic
from tests.integration.cluster_harness import Region, allocate, peer_events, write_cluster_config
from tests.integration.harness import Proc
from tests.integration.test_staying_up import procs, start_node, write_node_config  # noqa: F401 (fixture)

pytestmark = pytest.mark.timeout(120)

SLOW_SIZE = 200_000  # bytes, sent at RATE: about two seconds per response
RATE = 100_000


def slow_target(name: str) -> str:
    return f"/obj/{name}?size={SLOW_SIZE}&rate={RATE}&cc=max-age=3600"


async def ready_status(proc: Proc) -> int | None:
    """GET /_edge/ready on a fresh connection: its status, or None when the connection is refused."""
    try:
        reader, writer = await asyncio.open_connection(proc.host, proc.port)
    except ConnectionRefusedError:
        return None
    try:
        writer.write(f"GET /_edge/ready HTTP/1.1\r\nHost: {proc.host}\r\nConnection: close\r\n\r\n".encode())
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n")
        return int(head.split()[1])
    except (asyncio.IncompleteReadError, ConnectionResetError):
        return None  # accepted by the kernel's backlog as the listener closed
    finally:
        writer.close()


def refuses(proc: Proc) -> bool:
    try:
        with socket.create_connection((proc.host, proc.port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


async def wait_exit(proc: Proc, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while proc.popen.poll() is None:
        assert time.monotonic() < deadline, f"node did not exit within {timeout_s}s:\n{proc.log()}"
        await asyncio.sleep(0.05)
    return proc.popen.returncode


class TestGracefulStop:
    async def test_sigterm_completes_in_flight_requests_and_exits_0_when_requests_are_running(
        self, tmp_path: Path, origin: Proc, procs: list[Proc]
    ) -> None:
        config = write_node_config(tmp_path, origin.url, server={"drain_announce_s": 1.0})
        proc = start_node(config, tmp_path / "logs", stdout=None)
        procs.append(proc)
        assert await ready_status(proc) == 200
        names = [f"drain-{i}" for i in range(8)]
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            responses = [await session.get(proc.url + slow_target(name)) for name in names]
            try:
                # every request has its head: in flight, its body still coming at RATE
                assert [r.status for r in responses] == [200] * len(names)
                proc.popen.send_signal(signal.SIGTERM)
                seen: list[int | None] = []
                deadline = time.monotonic() + 20
                while not seen or seen[-1] is not None:
                    assert time.monotonic() < deadline, seen
                    seen.append(await ready_status(proc))
                # readiness said 503 (draining) before the listener stopped accepting
                flipped = [s for s in seen if s != 200]
                assert flipped[0] == 503 and None in flipped, seen
                assert refuses(proc)
                bodies = [await r.read() for r in responses]
            finally:
                for r in responses:
                    r.release()
        for name, body in zip(names, bodies, strict=True):
            assert body == synthetic.body(name, SLOW_SIZE), name
        assert await wait_exit(proc, 40) == 0
        log = proc.log()
        assert "Traceback" not in log and "draining node edge1" in log, log

    async def test_sigint_drains_like_sigterm_when_nothing_is_running(
        self, tmp_path: Path, origin: Proc, procs: list[Proc]
    ) -> None:
        config = write_node_config(tmp_path, origin.url, server={})
        proc = start_node(config, tmp_path / "logs", stdout=None)
        procs.append(proc)
        proc.popen.send_signal(signal.SIGINT)
        assert await wait_exit(proc, 20) == 0
        assert "draining node edge1" in proc.log()

    async def test_keep_alive_connection_is_closed_after_its_answer_when_draining(
        self, tmp_path: Path, origin: Proc, procs: list[Proc]
    ) -> None:
        config = write_node_config(tmp_path, origin.url, server={"drain_announce_s": 0})
        proc = start_node(config, tmp_path / "logs", stdout=None)
        procs.append(proc)
        reader, writer = await asyncio.open_connection(proc.host, proc.port)
        try:
            request = f"GET {slow_target('drain-ka')} HTTP/1.1\r\nHost: {proc.host}\r\n\r\n".encode()
            writer.write(request)
            async with asyncio.timeout(20):
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200"), head
                proc.popen.send_signal(signal.SIGTERM)
                body = await reader.readexactly(SLOW_SIZE)
                writer.write(request)  # a second request on the kept-alive connection
                try:
                    rest = await reader.read()  # the node closes it: no answer, no hang
                except ConnectionResetError:
                    rest = b""  # closed before our request arrived: the kernel answers RST
        finally:
            writer.close()
        assert body == synthetic.body("drain-ka", SLOW_SIZE)
        assert rest == b""
        assert await wait_exit(proc, 40) == 0


class TestProbes:
    async def test_readiness_is_public_and_liveness_is_on_admin_when_ready(
        self, tmp_path: Path, origin: Proc, procs: list[Proc]
    ) -> None:
        config = write_node_config(tmp_path, origin.url, server={"ready_path": "/_edge/ready"})
        proc = start_node(config, tmp_path / "logs", stdout=None)
        procs.append(proc)
        async with aiohttp.ClientSession() as s:
            async with s.get(proc.url + "/_edge/ready") as r:
                assert (r.status, r.headers["Cache-Control"]) == (200, "no-store")
            async with s.get(proc.url + "/_edge/live") as r:
                assert r.status == 404  # every other /_edge/ path stays closed on the public port
            async with s.get(f"http://{proc.extra['admin']}/_edge/live") as r:
                assert (r.status, await r.text()) == (200, "alive\n")


class TestRegionDrain:
    async def test_peers_take_a_draining_node_out_of_their_ring_while_it_still_serves(
        self, tmp_path: Path, origin: Proc
    ) -> None:
        nodes = allocate(["a", "b"])
        config = write_cluster_config(
            tmp_path / "region.toml",
            origin_url=origin.url,
            nodes=nodes,
            cluster={"secret": "drain-secret", "probe_interval_s": 0.2, "probe_timeout_s": 0.3, "fail_after": 2},
            server={},  # drain_announce_s derived: the peers' leave time (0.7 s)
        )
        region = Region(tmp_path / "logs")
        try:
            region.start(config, nodes)
            a, b = region.procs["a"], region.procs["b"]
            timeout = aiohttp.ClientTimeout(total=60)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                async with session.get(a.url + slow_target("region-drain")) as held:
                    assert held.status == 200
                    a.popen.send_signal(signal.SIGTERM)
                    deadline = time.monotonic() + 20
                    while ("a", "down") not in peer_events(b):
                        assert time.monotonic() < deadline, b.log()
                        await asyncio.sleep(0.05)
                    assert a.popen.poll() is None  # b dropped a while a was still draining
                    body = await held.read()
            assert body == synthetic.body("region-drain", SLOW_SIZE)
            assert await wait_exit(a, 40) == 0
        finally:
            region.stop()


def reload_config(path: Path, *, host: str, port: int, origin_url: str, hosts: list[str],
                  admin: str, listen_port: int | None = None) -> Path:
    """One node, one pool, a route per host in `hosts` (the reload tests change these)."""
    lines = [
        "access_log = true",
        "[nodes.edge1]",
        f'listen = "{host}:{listen_port or port}"',
        f'admin = "{admin}"',
        "[origins.demo]",
        f'servers = ["{origin_url}"]',
    ]
    for name in hosts:
        lines += ["[[routes]]", f'host = "{name}"', 'path_prefix = "/"', 'origin = "demo"']
    path.write_text("\n".join(lines) + "\n")
    return path


async def wait_log(proc: Proc, text: str, count: int = 1, timeout_s: float = 20) -> None:
    """Waits until the node's log holds `text` `count` times (the only sign a signal was handled)."""
    deadline = time.monotonic() + timeout_s
    while proc.log_path.read_text(errors="replace").count(text) < count:
        assert time.monotonic() < deadline, f"{text!r} not logged within {timeout_s}s:\n{proc.log()}"
        await asyncio.sleep(0.05)


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, target: str) -> tuple[int, bytes]:
    """One request on an open keep-alive connection: (status, body)."""
    writer.write(f"GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    async with asyncio.timeout(20):
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        length = next(int(line.split(":")[1]) for line in head.split("\r\n") if line.lower().startswith("content-length:"))
        return int(head.split()[1]), await reader.readexactly(length)


class TestReload:
    async def test_sighup_applies_a_new_route_on_open_connections_and_keeps_the_cache(
        self, tmp_path: Path, origin: Proc, procs: list[Proc]
    ) -> None:
        from tests.integration.conftest import next_loopback
        from tests.integration.harness import free_port

        host = next_loopback()
        port, admin = free_port(host), f"{host}:{free_port(host)}"
        config = reload_config(tmp_path / "edge.toml", host=host, port=port, origin_url=origin.url,
                               hosts=["a.test"], admin=admin)
        proc = start_node(config, tmp_path / "logs", stdout=None)
        procs.append(proc)
        cached = "/obj/reload-kept?size=5000&cc=max-age=3600"
        reader, writer = await asyncio.open_connection(proc.host, proc.port)
        try:
            assert (await exchange(reader, writer, "a.test", cached))[0] == 200
            assert (await exchange(reader, writer, "b.test", cached))[0] == 404  # no route yet
            timeout = aiohttp.ClientTimeout(total=60)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                async with session.get(proc.url + slow_target("reload-flight"), headers={"Host": "a.test"}) as held:
                    assert held.status == 200
                    reload_config(config, host=host, port=port, origin_url=origin.url,
                                  hosts=["a.test", "b.test"], admin=admin)
                    proc.popen.send_signal(signal.SIGHUP)
                    await wait_log(proc, "SIGHUP: config reloaded; applied: routes")
                    body = await held.read()  # the request in flight finishes untouched
            assert body == synthetic.body("reload-flight", SLOW_SIZE)
            # the same connection, after the reload: the new route answers, the cache is kept
            status, got = await exchange(reader, writer, "b.test", cached)
            assert (status, got) == (200, synthetic.body("reload-kept", 5000))
            count = origin_count_for(origin, cached)
            assert (await exchange(reader, writer, "a.test", cached))[0] == 200
            assert origin_count_for(origin, cached) == count  # a hit: the cache was not emptied
        finally:
            writer.close()
        assert proc.popen.poll() is None and "Traceback" not in proc.log()

    async def test_sighup_with_a_broken_file_keeps_the_running_config(
        self, tmp_path: Path, origin: Proc, procs: list[Proc]
    ) -> None:
        from tests.integration.conftest import next_loopback
        from tests.integration.harness import free_port

        host = next_loopback()
        port, admin = free_port(host), f"{host}:{free_port(host)}"
        config = reload_config(tmp_path / "edge.toml", host=host, port=port, origin_url=origin.url,
                               hosts=["a.test"], admin=admin)
        proc = start_node(config, tmp_path / "logs", stdout=None)
        procs.append(proc)
        target = "/obj/reload-broken?size=100&cc=max-age=3600"
        reader, writer = await asyncio.open_connection(proc.host, proc.port)
        try:
            assert (await exchange(reader, writer, "a.test", target))[0] == 200
            config.write_text(config.read_text() + "\n[[routes]]\nhost = 'b.test'\norigin = 'nowhere'\n")
            proc.popen.send_signal(signal.SIGHUP)
            await wait_log(proc, "SIGHUP: config not reloaded, the running config stays: routes[1].origin")
            config.write_text("this is [not toml")
            proc.popen.send_signal(signal.SIGHUP)
            await wait_log(proc, "SIGHUP: config not reloaded", count=2)
            assert (await exchange(reader, writer, "a.test", target))[0] == 200
            assert (await exchange(reader, writer, "b.test", target))[0] == 404
            # a change that needs a restart is reported, and the running address stays
            reload_config(config, host=host, port=port, origin_url=origin.url, hosts=["a.test"],
                          admin=admin, listen_port=free_port(host))
            proc.popen.send_signal(signal.SIGHUP)
            await wait_log(proc, "SIGHUP: nodes.edge1.listen changed but needs a restart")
            assert (await exchange(reader, writer, "a.test", target))[0] == 200
        finally:
            writer.close()
        assert proc.popen.poll() is None and "Traceback" not in proc.log()


def origin_count_for(origin: Proc, target: str) -> int:
    from tests.integration.harness import origin_count

    return origin_count(origin, target)


class TestStartupRefusals:
    async def test_second_node_on_the_same_disk_dir_exits_1_naming_the_holder(
        self, tmp_path: Path, origin: Proc, procs: list[Proc]
    ) -> None:
        from tests.integration.test_cli import _one_line_error, _quick

        config = write_node_config(tmp_path, origin.url, server={}, disk=True)
        first = start_node(config, tmp_path / "logs", stdout=None)
        procs.append(first)
        result = await asyncio.to_thread(_quick, tmp_path / "cache")
        assert result.returncode == 1
        line = _one_line_error(result)
        assert "is in use by another edgecache node" in line and f"pid {first.popen.pid}" in line, line
        assert first.popen.poll() is None  # the first node goes on serving
        first.kill9()  # the kernel drops the lock with the process: no stale lock
        again = start_node(config, tmp_path / "logs", stdout=None)
        procs.append(again)
        assert await ready_status(again) == 200

    def test_port_in_use_exits_1_with_one_line(self) -> None:
        from tests.integration.test_cli import _one_line_error, _run

        with socket.socket() as s:
            s.bind(("127.0.0.2", 0))
            s.listen()
            port = s.getsockname()[1]
            result = _run(["--origin", "http://127.0.0.1:1", "--listen", f"127.0.0.2:{port}"])
        assert result.returncode == 1
        line = _one_line_error(result)
        assert line.startswith("edgecache: cannot start: cannot listen on 127.0.0.2:") and "in use" in line, line


class TestAccessLogFile:
    async def test_sigusr1_reopens_the_access_log_file_after_logrotate_moved_it(
        self, tmp_path: Path, origin: Proc, procs: list[Proc]
    ) -> None:
        from tests.integration.test_staying_up import get_many

        config = write_node_config(tmp_path, origin.url, server={})
        log_file = tmp_path / "access.log"
        config.write_text(f'access_log_file = "{log_file}"\n' + config.read_text())
        stdout = tmp_path / "stdout.txt"
        with open(stdout, "wb") as out:
            proc = start_node(config, tmp_path / "logs", stdout=out.fileno())
        procs.append(proc)
        assert await get_many(proc.url, ["/obj/rotate-before?size=10"]) == [200]
        await wait_file_line(log_file, "rotate-before")
        rotated = tmp_path / "access.log.1"
        log_file.rename(rotated)  # what logrotate does before its postrotate kill -USR1
        proc.popen.send_signal(signal.SIGUSR1)
        await wait_log(proc, "access log reopened")
        assert await get_many(proc.url, ["/obj/rotate-after?size=10"]) == [200]
        await wait_file_line(log_file, "rotate-after")
        assert "rotate-before" not in log_file.read_text()
        assert "rotate-after" not in rotated.read_text() and "rotate-before" in rotated.read_text()
        assert "rotate" not in stdout.read_text()  # the file replaces stdout

    def test_access_log_file_that_cannot_be_opened_exits_1_with_one_line(self, tmp_path: Path) -> None:
        from tests.integration.test_cli import _one_line_error, _run

        config = write_node_config(tmp_path, "http://127.0.0.1:1", server={})
        config.write_text(f'access_log_file = "{tmp_path}/no/such/dir/access.log"\n' + config.read_text())
        result = _run(["--config", str(config), "--node", "edge1"])
        assert result.returncode == 1
        assert "access_log_file" in _one_line_error(result)


async def wait_file_line(path: Path, text: str, timeout_s: float = 20) -> None:
    """Waits until the access-log file holds a line with `text` (its writer thread is asynchronous)."""
    deadline = time.monotonic() + timeout_s
    while not (path.exists() and text in path.read_text(errors="replace")):
        assert time.monotonic() < deadline, f"{text!r} not in {path} within {timeout_s}s"
        await asyncio.sleep(0.05)
