"""The wheel and the metadata: built for real from a copy of the checkout, offline.

The wheel carries the node (edge, cluster, origin with their py.typed), the console script,
the licence and the metadata; never the demo origin, the tests or the benchmarks. Installed
on its own, its `edgecache` script runs and the demo origin is absent, while the checkout
still runs `python -m origin.demo`. The supported Python range agrees everywhere it is
written, and CI runs the lowest version of it.
"""

from __future__ import annotations

import email
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
_NOT_SOURCES = (".git", ".venv", ".cache-demo", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache")


def _offline_env() -> dict[str, str]:
    # no index, no build isolation: nothing leaves the machine
    return {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # a copy, so the build never writes build/ or *.egg-info into the checkout
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*_NOT_SOURCES))
    out = tmp / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(src),
        ],
        check=True,
        env=_offline_env(),
        timeout=240,
        capture_output=True,
    )
    (built,) = out.glob("edgecache-*.whl")
    return built


def _names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        return zf.namelist()


def _dist_info(wheel: Path, name: str) -> str:
    with zipfile.ZipFile(wheel) as zf:
        (path,) = [n for n in zf.namelist() if re.fullmatch(rf"edgecache-[^/]+\.dist-info/{name}", n)]
        return zf.read(path).decode()


def test_wheel_holds_the_node_and_nothing_else(wheel: Path) -> None:
    names = _names(wheel)
    tops = {n.split("/")[0] for n in names}
    assert {"edge", "cluster", "origin"} <= tops
    assert tops - {"edge", "cluster", "origin"} == {next(t for t in tops if t.endswith(".dist-info"))}
    for package in ("edge", "cluster", "origin"):
        assert f"{package}/py.typed" in names
    for module in ("edge/app/__init__.py", "edge/app/node.py", "edge/cli/main.py", "cluster/ring.py", "origin/pool.py"):
        assert module in names
    assert "edge/metrics/status_page.html" in names  # the admin listener's status page (issue 16)
    assert not [n for n in names if n.startswith("origin/demo/")], "the demo origin stays out of the wheel"
    assert not [n for n in names if n.startswith(("tests/", "bench/", "deploy/"))]
    assert not [n for n in names if n.endswith((".pyc", ".toml", ".mp4", ".ts", ".m3u8"))]
    # every module of the node is in it
    shipped = {n for n in names if n.endswith(".py")}
    for package in ("edge", "cluster", "origin"):
        for path in (ROOT / package).rglob("*.py"):
            rel = path.relative_to(ROOT).as_posix()
            assert rel in shipped or rel.startswith("origin/demo/"), f"{rel} is missing from the wheel"


def test_wheel_metadata(wheel: Path) -> None:
    meta = email.message_from_string(_dist_info(wheel, "METADATA"))
    assert meta["Name"] == "edgecache"
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta["Requires-Python"] == PYPROJECT["project"]["requires-python"]
    assert meta["Description-Content-Type"] == "text/markdown"
    assert "Topic :: Internet :: Proxy Servers" in meta.get_all("Classifier")
    assert _dist_info(wheel, "licenses/LICENSE") == (ROOT / "LICENSE").read_text()
    assert "Apache License" in _dist_info(wheel, "licenses/LICENSE")
    entry_points = _dist_info(wheel, "entry_points.txt")
    assert re.search(r"^\[console_scripts\]\nedgecache = edge\.cli\.main:main$", entry_points, re.M)


def test_installed_wheel_runs_its_console_script_without_the_demo(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        env=_offline_env(),
        timeout=120,
        capture_output=True,
    )
    # The node's code comes from the installed wheel only, its dependencies from this environment:
    # -S skips site.py and so the .pth of the checkout's editable install, and cwd is not the
    # checkout, so nothing of it is importable by accident.
    paths = dict.fromkeys([str(target), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    where = subprocess.run(
        [sys.executable, "-S", "-c", "import edge, origin; print(edge.__file__); import origin.demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert where.stdout.startswith(str(target)), where.stdout + where.stderr
    assert "No module named 'origin.demo'" in where.stderr
    script = target / "bin" / "edgecache"
    done = subprocess.run(
        [sys.executable, "-S", str(script), "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "--config" in done.stdout and "--node" in done.stdout


def test_the_checkout_still_runs_the_demo_origin() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "origin.demo", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "--listen" in done.stdout


def test_supported_python_range_agrees_everywhere() -> None:
    m = re.fullmatch(r">=3\.(\d+)", PYPROJECT["project"]["requires-python"])
    assert m
    lowest = int(m.group(1))
    versions = sorted(
        int(c.rsplit(".", 1)[1])
        for c in PYPROJECT["project"]["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    )
    assert versions[0] == lowest and versions == list(range(lowest, versions[-1] + 1))
    assert PYPROJECT["tool"]["mypy"]["python_version"] == f"3.{lowest}"
    assert PYPROJECT["tool"]["ruff"]["target-version"] == f"py3{lowest}"
    if os.environ.get("CI"):
        assert sys.version_info[:2] == (3, lowest), "CI must run the lowest supported Python"
