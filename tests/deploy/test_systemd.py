"""deploy/systemd/edgecache@.service: sandboxed, drains on stop, reloads on SIGHUP, many descriptors.

The unit is parsed and held to those promises; where systemd-analyze is installed, `verify`
must accept it without a single warning (it reports misspelled directives only as warnings).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge.config.deployment import load
from tests.deploy.secret_files import with_secret_files

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "edgecache@.service"
DRAIN_TIMEOUT_S = 30  # the node's SIGTERM drain deadline the unit assumes (operations issue 16)


def _unit() -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None, f"directive outside a section: {line}"
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


def _service(key: str) -> str:
    values = _unit()["Service"].get(key)
    assert values, f"[Service] has no {key}="
    return values[-1]


def test_sandboxing() -> None:
    assert _service("ProtectSystem") == "strict"
    assert _service("NoNewPrivileges") == "yes"
    assert _service("ProtectHome") == "yes"
    assert _service("PrivateTmp") == "yes"
    assert _service("CapabilityBoundingSet") == ""
    assert _service("User") not in ("root", "0")
    assert _service("StateDirectory") == "edgecache"


def test_start_reload_stop() -> None:
    argv = _service("ExecStart").split()
    assert Path(argv[0]).name == "edgecache"  # the console script of pyproject.toml
    assert argv[argv.index("--node") + 1] == "%i", "the instance name is the node name"
    assert _service("ExecReload") == "/bin/kill -HUP $MAINPID"
    assert _service("KillSignal") == "SIGTERM"
    assert int(_service("TimeoutStopSec")) > DRAIN_TIMEOUT_S
    assert int(_service("LimitNOFILE")) >= 65536
    # a config error exits 2 (edge/cli/main.py): restarting in a loop would not fix it
    assert _service("RestartPreventExitStatus") == "2"
    assert _unit()["Install"]["WantedBy"] == ["multi-user.target"]


def test_example_config_keeps_the_cache_in_the_state_directory(tmp_path: Path) -> None:
    config = with_secret_files(ROOT / "deploy" / "examples" / "one-region.toml", tmp_path)
    state = Path("/var/lib") / _service("StateDirectory")
    for node in ("edge1", "edge2", "edge3"):
        cfg = load(config, node)
        assert cfg.disk_dir == state / node


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_accepts_the_unit_without_warnings(tmp_path: Path) -> None:
    # verify checks that ExecStart exists: point it at this checkout's console script, which is
    # what /opt/edgecache/bin/edgecache is on a real machine
    script = Path(sys.executable).parent / "edgecache"
    assert script.exists(), "the console script is installed by `make setup`"
    text = UNIT.read_text().replace("/opt/edgecache/bin/edgecache", str(script))
    instance = tmp_path / "edgecache@edge1.service"
    instance.write_text(text)
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(instance)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), done.stdout + done.stderr
