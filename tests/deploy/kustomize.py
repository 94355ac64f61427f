"""Renders the kustomize subset deploy/k8s uses, so the manifests can be checked without kubectl.

Supported: `resources` (files and directories), `namespace`, `patches` with an inline JSON 6902
patch and a `target` of kind and name, and `configMapGenerator` with `files` and
`disableNameSuffixHash: true`. Any other field raises UnsupportedField, so a kustomization
that grows a feature this renderer ignores fails its test instead of being checked wrongly.
Where kubectl is installed, test_k8s.py compares this rendering with `kubectl kustomize`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

__all__ = ["UnsupportedField", "render"]

Obj = dict[str, Any]

_FIELDS = {"apiVersion", "kind", "resources", "namespace", "patches", "configMapGenerator"}
_CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass"}


class UnsupportedField(ValueError):
    """The kustomization uses a field or option this renderer does not implement."""


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise UnsupportedField(f"JSON pointer {path!r} must start with /")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _apply_op(obj: Obj, op: Obj) -> None:
    kind = op["op"]
    if kind not in ("add", "replace", "remove"):
        raise UnsupportedField(f"patch op {kind!r}")
    *parents, last = _pointer(op["path"])
    node: Any = obj
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        index = len(node) if last == "-" else int(last)
        if kind == "add":
            node.insert(index, copy.deepcopy(op["value"]))
        elif kind == "replace":
            node[index] = copy.deepcopy(op["value"])
        else:
            del node[index]
        return
    if kind in ("replace", "remove") and last not in node:
        raise KeyError(f"patch {kind} of missing {op['path']}")
    if kind == "remove":
        del node[last]
    else:
        node[last] = copy.deepcopy(op["value"])


def _patch(objects: list[Obj], spec: Obj) -> None:
    if set(spec) != {"target", "patch"} or set(spec["target"]) - {"kind", "name"}:
        raise UnsupportedField(f"patches entry {sorted(spec)}: only target (kind, name) and patch")
    target = spec["target"]
    matched = [
        o
        for o in objects
        if o["kind"] == target.get("kind", o["kind"]) and o["metadata"]["name"] == target.get("name")
    ]
    if not matched:
        raise KeyError(f"patch target {target} matches no object")
    for obj in matched:
        for op in yaml.safe_load(spec["patch"]):
            _apply_op(obj, op)


def _config_map(base: Path, spec: Obj) -> Obj:
    if set(spec) - {"name", "files", "options"} or spec.get("options") != {"disableNameSuffixHash": True}:
        raise UnsupportedField(
            f"configMapGenerator {spec.get('name')}: only name, files, disableNameSuffixHash"
        )
    data = {}
    for entry in spec["files"]:
        key, _, rel = entry.rpartition("=")
        path = base / rel
        data[key or path.name] = path.read_text()
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": spec["name"]}, "data": data}


def render(directory: Path) -> list[Obj]:
    """The objects `kubectl kustomize DIRECTORY` would print, for the supported subset."""
    k = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(k) - _FIELDS
    if unknown:
        raise UnsupportedField(f"{directory}/kustomization.yaml: {sorted(unknown)}")
    objects: list[Obj] = []
    for entry in k.get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            objects.extend(render(path))
        else:
            objects.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    for spec in k.get("configMapGenerator", []):
        objects.append(_config_map(directory, spec))
    for spec in k.get("patches", []):
        _patch(objects, spec)
    namespace = k.get("namespace")
    if namespace:
        for obj in objects:
            if obj["kind"] == "Namespace":
                obj["metadata"]["name"] = namespace
            elif obj["kind"] not in _CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = namespace
    return objects
