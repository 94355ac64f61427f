"""`edgecache purge` and `edgecache status` against a live 2-region cluster of processes (issue 16).

n1 and n2 form region r1, n3 region r2; n3's peer links run through fault proxies so a test
can cut it off and heal it while `purge --wait` is waiting. The token always travels in the
environment or a file, never on the command line.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.integration.harness import ROOT, free_port
from tests.integration.purge_harness import HOST, TOKEN, NodeSpec, PurgeCluster, VersionedOrigin
from tests.integration.test_purge_cluster import owned_by

pytestmark = pytest.mark.timeout(90)

EDGECACHE = Path(sys.executable).parent / "edgecache"  # the console script pyproject.toml installs


def env(token: str | None = TOKEN) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("EDGECACHE_", "EDGE_ADMIN"))}
    if token is not None:
        e["EDGECACHE_TOKEN"] = token
    return e


async def run(args: list[str], environ: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(subprocess.run, [str(EDGECACHE), *args], cwd=ROOT, capture_output=True,
                                   text=True, timeout=60, env=environ if environ is not None else env())


@pytest.fixture
async def cluster(tmp_path: Path, vorigin: VersionedOrigin) -> PurgeCluster:
    specs = [NodeSpec("n1", "r1"), NodeSpec("n2", "r1"), NodeSpec("n3", "r2")]
    c = await PurgeCluster(tmp_path, vorigin, specs, faulty=["n3"]).start()
    try:
        yield c  # type: ignore[misc]
    finally:
        await c.close()


class TestPurge:
    async def test_purge_url_is_acked_by_every_region_and_applied_when_all_nodes_are_up(
        self, cluster: PurgeCluster, vorigin: VersionedOrigin, session: aiohttp.ClientSession
    ) -> None:
        for node in ("n1", "n2", "n3"):
            await cluster.get(session, node, "/v/a")
        vorigin.versions["a"] = 2
        result = await run(["purge", "url", f"http://{HOST}/v/a", "--wait", "--admin", cluster.specs["n2"].admin_url])
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("purge n2:1: acknowledged by n2, ") and "n1" in result.stdout
        assert "n3" in result.stdout and result.stderr == ""
        for node in ("n1", "n2", "n3"):
            assert (await cluster.get(session, node, "/v/a")).body == vorigin.body("a", 2), node

    async def test_wait_prints_progress_until_a_cut_off_region_acks_when_it_is_healed(
        self, cluster: PurgeCluster, vorigin: VersionedOrigin, session: aiohttp.ClientSession
    ) -> None:
        await cluster.get(session, "n3", "/v/b")
        cluster.cut("n3")
        proc = await asyncio.create_subprocess_exec(
            str(EDGECACHE), "purge", "prefix", f"http://{HOST}/v/", "--soft", "--wait", "--wait-timeout", "30",
            "--admin", cluster.specs["n1"].admin_url, cwd=ROOT, env=env(),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            assert proc.stdout is not None
            lines = []
            while not lines or not lines[-1].startswith("waiting for"):
                line = await asyncio.wait_for(proc.stdout.readline(), 30)
                assert line, (lines, await proc.stderr.read() if proc.stderr else b"")
                lines.append(line.decode().strip())
            assert lines == ["purge n1:1: acknowledged by n1, n2", "waiting for n3 ..."]
            cluster.cut("n3", heal=True)  # n3 catches up from its peers and says so when it asks again
            out, err = await asyncio.wait_for(proc.communicate(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode == 0, err
        assert out.decode().splitlines() == ["  n3 acknowledged (3 of 3)", "purge n1:1: every node holds it"]

    async def test_purge_exits_3_naming_pending_nodes_when_a_region_stays_cut_off(
        self, cluster: PurgeCluster
    ) -> None:
        cluster.cut("n3")
        result = await run(["purge", "host", HOST, "--admin", cluster.specs["n1"].admin_url])
        assert result.returncode == 3, result.stderr
        assert result.stdout.splitlines() == ["purge n1:1: acknowledged by n1, n2", "pending (they catch up later): n3"]

    async def test_token_file_is_read_and_token_flag_warns_when_used(self, cluster: PurgeCluster, tmp_path: Path) -> None:
        token_file = tmp_path / "token"
        token_file.write_text(TOKEN + "\n")
        admin = cluster.specs["n1"].admin_url
        from_file = await run(["purge", "url", f"http://{HOST}/v/c", "--token-file", str(token_file),
                               "--admin", admin], env(None))
        assert from_file.returncode == 0 and from_file.stderr == "", from_file.stderr
        old = await run(["purge", "--url", f"http://{HOST}/v/c", "--token", TOKEN, "--admin", admin], env(None))
        assert old.returncode == 0 and "warning: --token shows the secret" in old.stderr


class TestStatus:
    async def test_status_shows_hit_ratio_ring_and_purge_lag_on_one_screen(
        self, cluster: PurgeCluster, session: aiohttp.ClientSession
    ) -> None:
        path = f"/v/{owned_by('n1', ('n1', 'n2'), 'status')}"  # n1 owns it: its own miss and hits
        for _ in range(3):
            await cluster.get(session, "n1", path)  # a miss then two hits: 66.7 %
        result = await run(["status", "--admin", cluster.specs["n1"].admin_url])
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0] == "node      n1 (region r1)"
        assert lines[1] == "requests  3; hit ratio 66.7% (hit 2, miss 1)"
        ring = next(line for line in lines if line.startswith("ring "))
        assert "n1 " in ring and "n2 " in ring and "n3" not in ring  # n3 is another region's
        assert any(line.startswith("peers ") and "n2 (r1) up" in line and "n3 (r2) up" in line for line in lines)
        assert any(line.startswith("purges    generation 0; lag ") for line in lines)
        assert any(line.strip().startswith("n3 (r2): synced ") for line in lines)
        assert len(lines) < 25  # one screen


class TestErrors:
    async def test_wrong_secret_gives_one_line_and_exit_2(self, cluster: PurgeCluster) -> None:
        for command in (["status"], ["purge", "url", f"http://{HOST}/v/x"]):
            result = await run([*command, "--admin", cluster.specs["n1"].admin_url], env("wrong-token-0123456789"))
            assert result.returncode == 2 and result.stdout == "", command
            assert result.stderr.count("\n") == 1 and "refused (401)" in result.stderr, result.stderr

    @pytest.mark.parametrize("command", [["status"], ["purge", "url", f"http://{HOST}/v/x"]])
    async def test_unreachable_node_gives_one_line_and_exit_1(self, command: list[str]) -> None:
        port = free_port("127.0.0.1")  # nothing listens there
        result = await run([*command, "--admin", f"http://127.0.0.1:{port}"])
        assert result.returncode == 1 and result.stdout == ""
        assert result.stderr.count("\n") == 1 and "cannot reach http://127.0.0.1:" in result.stderr, result.stderr

    async def test_missing_token_gives_one_line_and_exit_2(self) -> None:
        result = await run(["status", "--admin", "http://127.0.0.1:1"], env(None))
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and "EDGECACHE_TOKEN" in result.stderr


async def test_serve_is_the_default_command_named() -> None:
    result = await run(["serve", "--origin", "ftp://nowhere", "--listen", "127.0.0.2:1"])
    assert result.returncode == 2 and "--origin" in result.stderr
    helped = await run(["--help"])
    assert all(word in helped.stdout for word in ("edgecache purge", "edgecache status", "edgecache serve"))
