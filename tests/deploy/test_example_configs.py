"""Every config file under deploy/ that a node reads as it is passes the node's config loader, for
every node it lists, with its secret files laid out in a temporary directory instead of
/etc/edgecache/secrets (deploy/k8s/base/config.toml: test_k8s.py), and writes no secret inline."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from edge.config.deployment import load
from edge.config.secrets import inline_secrets
from tests.deploy.secret_files import with_secret_files

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = [*sorted((ROOT / "deploy" / "examples").glob("*.toml")), ROOT / "deploy" / "docker" / "config.toml"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_loads_for_every_node(path: Path, tmp_path: Path) -> None:
    text = path.read_text()
    assert inline_secrets(tomllib.loads(text)) == ()
    copy = with_secret_files(path, tmp_path)
    nodes = tomllib.loads(text)["nodes"]
    assert nodes
    for name in nodes:
        cfg = load(copy, name)
        assert cfg.node.name == name


def test_three_regions_fill_from_one_shield(tmp_path: Path) -> None:
    cfg = load(with_secret_files(ROOT / "deploy" / "examples" / "three-regions.toml", tmp_path), "eu1")
    assert {r.name: r.parent for r in cfg.regions.values()} == {
        "eu": "shield",
        "us": "shield",
        "ap": "shield",
        "shield": None,
    }
    assert [p.name for p in cfg.parent_peers] == ["shield1", "shield2", "shield3"]
    assert [p.name for p in cfg.region_peers] == ["eu1", "eu2", "eu3"]
