"""Secrets read from files and the environment never show: not in a node's output, not in
GET /status, not in check-config's output, not in refusals (issue 17).

Two real node processes in one region with peer and admin listeners; the cluster secret comes
from a file, the purge token from an environment variable. The test drives every path that
touches a secret (peer probes and fetches, purges and their propagation, refusals of wrong
secrets and tokens, status), then greps everything the nodes printed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import next_loopback
from tests.integration.harness import ROOT, Proc, free_port, start_edge

pytestmark = pytest.mark.timeout(120)

CLUSTER_SECRET = "cluster-Zq8-secret-from-a-file-5cd1"
ADMIN_TOKEN = "admin-Wp3-token-from-the-env-77ab"
TARGET = "/obj/s0?size=1000&cc=max-age%3D300"
PURGE = json.dumps({"url": f"http://demo.test{TARGET}"}).encode()
NEAR_MISSES = (CLUSTER_SECRET[:-1] + "X", ADMIN_TOKEN[:-1] + "X")  # presented by the test, wrongly


def _write_config(tmp_path: Path, origin_url: str) -> tuple[Path, dict[str, dict[str, str]]]:
    secret_file = tmp_path / "secrets" / "cluster-secret"
    secret_file.parent.mkdir()
    secret_file.write_text(CLUSTER_SECRET + "\n")  # as `kubectl create secret --from-file` may leave it
    nodes = {}
    for name in ("a", "b"):
        host = next_loopback()
        nodes[name] = {
            "listen": f"{host}:{free_port(host)}",
            "internal": f"{host}:{free_port(host)}",
            "admin": f"{host}:{free_port(host)}",
        }
    lines = [
        "access_log = true",
        "[cluster]",
        f'secret_file = "{secret_file}"',
        "probe_interval_s = 0.2",
        "probe_timeout_s = 0.2",
        "[[admin.tokens]]",
        'name = "ops"',
        'token_env = "EDGE_TEST_ADMIN_TOKEN"',
        'hosts = ["*"]',
        "[origins.demo]",
        f'servers = ["{origin_url}"]',
        "[[routes]]",
        'origin = "demo"',
    ]
    for name, addrs in nodes.items():
        lines.append(f"[nodes.{name}]")
        lines += [f'{key} = "{value}"' for key, value in addrs.items()]
        lines.append('region = "r1"')
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path, nodes


def _request(
    url: str, *, method: str = "GET", headers: dict[str, str] | None = None, body: bytes | None = None
) -> tuple[int, bytes]:
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=body)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _status(admin: str, token: str = ADMIN_TOKEN) -> tuple[int, bytes]:
    return _request(f"http://{admin}/status", headers={"Authorization": f"Bearer {token}"})


def _wait_peers_healthy(admin: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        code, body = _status(admin)
        status = json.loads(body) if code == 200 else {}
        peers = status.get("peers", [])
        if peers and all(p["healthy"] for p in peers):
            return dict(status)
        assert time.monotonic() < deadline, f"peers never became healthy: {body!r}"
        time.sleep(0.05)  # polling a condition under a deadline, not ordering steps


def _assert_no_secret(where: str, text: str) -> None:
    for secret in (CLUSTER_SECRET, ADMIN_TOKEN, *NEAR_MISSES):
        assert secret not in text, f"{where} shows a secret"


def test_check_config_warns_about_nothing_and_shows_no_secret(
    tmp_path: Path, origin: Proc, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, _ = _write_config(tmp_path, origin.url)
    monkeypatch.setenv("EDGE_TEST_ADMIN_TOKEN", ADMIN_TOKEN)
    result = subprocess.run(
        [sys.executable, "-m", "edge", "check-config", "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr
    _assert_no_secret("check-config", result.stdout + result.stderr)


def test_check_config_warns_about_an_inline_secret_without_showing_it(tmp_path: Path, origin: Proc) -> None:
    config, _ = _write_config(tmp_path, origin.url)
    text = config.read_text().replace('token_env = "EDGE_TEST_ADMIN_TOKEN"', f'token = "{ADMIN_TOKEN}"')
    config.write_text(text)
    result = subprocess.run(
        [sys.executable, "-m", "edge", "check-config", "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "warning: admin.tokens[0].token is written inline" in result.stderr
    assert "cluster.secret" not in result.stderr  # that one comes from a file
    _assert_no_secret("check-config", result.stdout + result.stderr)


def test_check_config_names_the_unset_variable(
    tmp_path: Path, origin: Proc, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, _ = _write_config(tmp_path, origin.url)
    monkeypatch.delenv("EDGE_TEST_ADMIN_TOKEN", raising=False)
    result = subprocess.run(
        [sys.executable, "-m", "edge", "check-config", "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "admin.tokens[0].token_env: environment variable EDGE_TEST_ADMIN_TOKEN is not set" in result.stderr


def test_secrets_never_appear_in_output_status_or_refusals(
    tmp_path: Path, origin: Proc, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, nodes = _write_config(tmp_path, origin.url)
    monkeypatch.setenv("EDGE_TEST_ADMIN_TOKEN", ADMIN_TOKEN)
    procs: list[Proc] = []
    try:
        for name in nodes:
            procs.append(start_edge(config, name, tmp_path / "logs", ("--log-level", "DEBUG")))
        admin_a, admin_b, internal_b = nodes["a"]["admin"], nodes["b"]["admin"], nodes["b"]["internal"]
        _wait_peers_healthy(admin_a)
        _wait_peers_healthy(admin_b)
        replies = []
        # both nodes serve a few URLs; each owns some, so peer fetches carry the secret
        for i in range(8):
            for proc in procs:
                code, _ = _request(
                    f"{proc.url}/obj/s{i}?size=1000&cc=max-age%3D300", headers={"Host": "demo.test"}
                )
                replies.append(code)
        assert replies == [200] * 16
        refusals = [
            # a peer request with a wrong secret, and an internal endpoint with none
            _request(
                f"http://{internal_b}/obj/s1?size=1000",
                headers={"Host": "demo.test", "X-Edge-Secret": NEAR_MISSES[0]},
            )[0],
            _request(f"http://{nodes['b']['internal']}/_edge/health")[0],
            # purges with a near-miss token, and with the cluster secret mistaken for a token
            _request(
                f"http://{admin_a}/purge",
                method="POST",
                body=PURGE,
                headers={"Authorization": f"Bearer {NEAR_MISSES[1]}"},
            )[0],
            _request(
                f"http://{admin_a}/purge",
                method="POST",
                body=PURGE,
                headers={"Authorization": f"Bearer {CLUSTER_SECRET}"},
            )[0],
            _status(admin_b, NEAR_MISSES[1])[0],
        ]
        assert refusals == [403, 403, 401, 401, 401]
        deadline = time.monotonic() + 30
        while True:  # 503 until the node's first purge sync with its peer
            code, body = _request(
                f"http://{admin_a}/purge",
                method="POST",
                body=PURGE,
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            )
            if code != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert code == 200 and sorted(json.loads(body)["acked"]) == ["a", "b"], body
        status_texts = [_status(admin)[1].decode() for admin in (admin_a, admin_b)]
        assert all('"generation": 1' in text for text in status_texts), status_texts
    finally:
        for proc in procs:
            proc.stop()
    for text in status_texts:
        _assert_no_secret("GET /status", text)
    for proc in procs:
        output = proc.log_path.read_text(errors="replace")
        # the output is the real thing: access log lines, peer traffic at DEBUG, the purge by name
        assert '"status":200' in output.replace(" ", ""), output[-2000:]
        assert proc.name != "edge-a" or "by ops" in output, output[-2000:]
        _assert_no_secret(f"node {proc.name}'s output", output)
