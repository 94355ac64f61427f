"""Every config file under deploy/ that a node reads as it is passes the node's config loader, for
every node it lists (deploy/k8s/base/config.toml needs its secrets filled in first: test_k8s.py)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from edge.config.deployment import load

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = [*sorted((ROOT / "deploy" / "examples").glob("*.toml")), ROOT / "deploy" / "docker" / "config.toml"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_loads_for_every_node(path: Path) -> None:
    nodes = tomllib.loads(path.read_text())["nodes"]
    assert nodes
    for name in nodes:
        cfg = load(path, name)
        assert cfg.node.name == name


def test_three_regions_fill_from_one_shield() -> None:
    cfg = load(ROOT / "deploy" / "examples" / "three-regions.toml", "eu1")
    assert {r.name: r.parent for r in cfg.regions.values()} == {
        "eu": "shield",
        "us": "shield",
        "ap": "shield",
        "shield": None,
    }
    assert [p.name for p in cfg.parent_peers] == ["shield1", "shield2", "shield3"]
    assert [p.name for p in cfg.region_peers] == ["eu1", "eu2", "eu3"]
