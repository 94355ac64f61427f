"""deploy/k8s: every manifest is a valid Kubernetes object, and the manifests agree with the
config.toml they mount and with the node's own config loader.

The kustomizations are rendered by tests/deploy/kustomize.py (no kubectl in CI); where kubectl
is installed its `kubectl kustomize` output must equal that rendering. Objects are checked
against the Kubernetes JSON schemas bundled by kubernetes-validate, in strict mode (an unknown
or misspelled field is an error), for the oldest and the newest Kubernetes version we support.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from edge.config.deployment import load
from edge.config.errors import ConfigError
from tests.deploy.kustomize import render

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
REGIONS = sorted(p.name for p in (K8S / "regions").iterdir() if (p / "kustomization.yaml").is_file())
KUBERNETES_VERSIONS = ("1.29.0", "1.37.0")  # oldest supported (docs/deploy.md) and newest schemas
DRAIN_TIMEOUT_S = 30  # the node's SIGTERM drain deadline the manifests assume (operations issue 16)
SECRET_VALUES = {
    "cluster-secret": 'a "quoted" \\ cluster secret',
    "admin-token": "an-admin-token-of-32-characters!",
}

Obj = dict[str, Any]


def _rendered(region: str) -> list[Obj]:
    return render(K8S / "regions" / region)


def _one(objects: list[Obj], kind: str) -> Obj:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def _service(objects: list[Obj], headless: bool) -> Obj:
    found = [
        o for o in objects if o["kind"] == "Service" and (o["spec"].get("clusterIP") == "None") == headless
    ]
    assert len(found) == 1
    return found[0]


def _container(sts: Obj, name: str, init: bool = False) -> Obj:
    spec = sts["spec"]["template"]["spec"]
    return next(c for c in spec["initContainers" if init else "containers"] if c["name"] == name)


def _port(container: Obj, name: str) -> int:
    return int(next(p["containerPort"] for p in container["ports"] if p["name"] == name))


def _quantity(value: str) -> int:
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti)", value)
    assert m, f"unexpected quantity {value!r}"
    return int(m.group(1)) * 1024 ** ("KMGT".index(m.group(2)[0]) + 1)


def _render_config(
    sts: Obj, template: str, tmp: Path, secrets: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """Runs the StatefulSet's render-config step for real, on files laid out as the pod mounts them."""
    init = _container(sts, "render-config", init=True)
    assert init["command"][:2] == ["python", "-c"]
    (tmp / "template").mkdir()
    (tmp / "template" / "config.toml").write_text(template)
    (tmp / "secrets").mkdir()
    for key, value in secrets.items():
        (tmp / "secrets" / key).write_text(value + "\n")
    (tmp / "run").mkdir()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "EDGE_CONFIG_TEMPLATE": str(tmp / "template" / "config.toml"),
        "EDGE_SECRETS_DIR": str(tmp / "secrets"),
        "EDGE_CONFIG": str(tmp / "run" / "config.toml"),
    }
    declared = {e["name"] for e in init["env"]}
    assert declared == set(env) - {"PATH"}, "the test must set exactly the variables the manifest sets"
    return subprocess.run(
        [sys.executable, "-c", init["command"][2]], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl is not installed: the renderer is not cross-checked"
)
@pytest.mark.parametrize("region", REGIONS)
def test_renderer_matches_kubectl_kustomize(region: str) -> None:
    out = subprocess.run(
        ["kubectl", "kustomize", str(K8S / "regions" / region)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    theirs = [d for d in yaml.safe_load_all(out) if d]

    def key(o: Obj) -> tuple[str, str]:
        return o["kind"], o["metadata"]["name"]

    assert sorted(_rendered(region), key=key) == sorted(theirs, key=key)


def test_there_are_three_edge_regions_and_a_shield() -> None:
    cfg = tomllib.loads((K8S / "base" / "config.toml").read_text())
    assert set(REGIONS) == set(cfg["regions"]) == {"eu", "us", "ap", "shield"}
    assert {name: r.get("parent") for name, r in cfg["regions"].items()} == {
        "eu": "shield",
        "us": "shield",
        "ap": "shield",
        "shield": None,
    }


def _all_manifests() -> list[tuple[str, Obj]]:
    found = [(f"regions/{r}: {o['kind']}/{o['metadata']['name']}", o) for r in REGIONS for o in _rendered(r)]
    for path in sorted(K8S.glob("*.yaml")):  # manifests outside the kustomizations (the Secret example)
        found.extend((path.name, o) for o in yaml.safe_load_all(path.read_text()) if o)
    return found


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schemas(version: str) -> None:
    manifests = _all_manifests()
    kinds = {o["kind"] for _, o in manifests}
    assert {"Namespace", "StatefulSet", "Service", "ConfigMap", "Secret", "PodDisruptionBudget"} <= kinds
    for name, obj in manifests:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(
                f"{name} is not a valid {obj['kind']} for Kubernetes {version}: {path}: {exc.message}"
            )


def test_the_schema_check_rejects_a_misspelled_field() -> None:
    sts = copy.deepcopy(_one(_rendered("eu"), "StatefulSet"))
    sts["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = sts["spec"]["template"]["spec"][
        "containers"
    ][0].pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(sts, KUBERNETES_VERSIONS[0], strict=True)


@pytest.mark.parametrize("region", REGIONS)
def test_mounted_config_passes_the_config_loader_for_every_node(region: str, tmp_path: Path) -> None:
    objects = _rendered(region)
    sts = _one(objects, "StatefulSet")
    config_map = _one(objects, "ConfigMap")
    volume = next(v for v in sts["spec"]["template"]["spec"]["volumes"] if v["name"] == "config-template")
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    template = config_map["data"]["config.toml"]
    assert "@CLUSTER_SECRET@" in template and "@ADMIN_TOKEN@" in template, "secrets come from the Secret"
    with pytest.raises(ConfigError):  # the template alone is not a usable config: placeholders are no secrets
        path = tmp_path / "template.toml"
        path.write_text(template)
        load(path, f"edgecache-{region}-0")

    done = _render_config(sts, template, tmp_path, SECRET_VALUES)
    assert done.returncode == 0, done.stderr
    rendered = tmp_path / "run" / "config.toml"
    assert stat.S_IMODE(rendered.stat().st_mode) == 0o600
    nodes = tomllib.loads(rendered.read_text())["nodes"]
    assert len(nodes) == 12
    for node in nodes:
        cfg = load(rendered, node)
        assert cfg.cluster is not None and cfg.cluster.secret == SECRET_VALUES["cluster-secret"]
        assert [t.token for t in cfg.admin.tokens] == [SECRET_VALUES["admin-token"]]


def test_render_config_fails_when_the_secret_lacks_a_key(tmp_path: Path) -> None:
    objects = _rendered("eu")
    done = _render_config(
        _one(objects, "StatefulSet"),
        _one(objects, "ConfigMap")["data"]["config.toml"],
        tmp_path,
        {"cluster-secret": SECRET_VALUES["cluster-secret"]},
    )
    assert done.returncode != 0
    assert "admin-token" in done.stderr and "@ADMIN_TOKEN@" in done.stderr
    assert not (tmp_path / "run" / "config.toml").exists()


def test_the_secret_example_has_every_key_the_config_names() -> None:
    secret = yaml.safe_load((K8S / "secret.example.yaml").read_text())
    template = (K8S / "base" / "config.toml").read_text()
    named = {m.lower().replace("_", "-") for m in re.findall(r"@([A-Z][A-Z0-9_]*)@", template)}
    sts = _one(_rendered("eu"), "StatefulSet")
    volume = next(v for v in sts["spec"]["template"]["spec"]["volumes"] if v["name"] == "secrets")
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    assert named == set(secret["stringData"]) == set(SECRET_VALUES)


@pytest.mark.parametrize("region", REGIONS)
def test_statefulset_agrees_with_config_toml(region: str, tmp_path: Path) -> None:
    objects = _rendered(region)
    sts = _one(objects, "StatefulSet")
    namespace = f"edgecache-{region}"
    assert _one(objects, "Namespace")["metadata"]["name"] == namespace
    assert all(o["metadata"].get("namespace") == namespace for o in objects if o["kind"] != "Namespace")
    assert sts["metadata"]["name"] == f"edgecache-{region}"
    done = _render_config(sts, _one(objects, "ConfigMap")["data"]["config.toml"], tmp_path, SECRET_VALUES)
    assert done.returncode == 0, done.stderr
    path = tmp_path / "run" / "config.toml"
    pods = [f"{sts['metadata']['name']}-{i}" for i in range(sts["spec"]["replicas"])]
    in_region = sorted(
        n for n, body in tomllib.loads(path.read_text())["nodes"].items() if body["region"] == region
    )
    assert in_region == pods, "every pod is a node of this region in config.toml, and no other node is"

    node = _container(sts, "edgecache")
    init = _container(sts, "render-config", init=True)
    config_out = next(e["value"] for e in init["env"] if e["name"] == "EDGE_CONFIG")
    assert node["args"] == ["--config", config_out, "--node", "$(POD_NAME)"]
    assert (
        next(e for e in node["env"] if e["name"] == "POD_NAME")["valueFrom"]["fieldRef"]["fieldPath"]
        == "metadata.name"
    )
    peers = _service(objects, headless=True)
    assert sts["spec"]["serviceName"] == peers["metadata"]["name"]
    assert peers["spec"]["publishNotReadyAddresses"] is True
    mounts = {m["name"]: m["mountPath"] for m in node["volumeMounts"]}
    assert mounts["run"] == str(Path(config_out).parent)
    template_spec = sts["spec"]["template"]["spec"]
    limit = _quantity(node["resources"]["limits"]["memory"])
    claim = next(c for c in sts["spec"]["volumeClaimTemplates"] if c["metadata"]["name"] == "cache")
    for pod in pods:
        cfg = load(path, pod)
        assert (
            cfg.node.internal_url
            == f"http://{pod}.{peers['metadata']['name']}.{namespace}.svc.cluster.local:{_port(node, 'peer')}"
        )
        assert peers["spec"]["ports"][0]["port"] == _port(node, "peer")
        assert cfg.node.port == _port(node, "http") and cfg.node.admin_port == _port(node, "admin")
        assert str(cfg.disk_dir) == mounts["cache"]
        assert _quantity(claim["spec"]["resources"]["requests"]["storage"]) > cfg.cache.disk_bytes
        assert limit >= cfg.cache.memory_bytes + 256 * 1024**2, (
            "memory limit: the tier plus room for the process"
        )

    # probes on the endpoints of the operations issue; grace longer than preStop + drain
    assert node["readinessProbe"]["httpGet"] == {"path": "/_edge/ready", "port": "http"}
    assert node["livenessProbe"]["httpGet"] == {"path": "/_edge/live", "port": "admin"}
    pause = int(node["lifecycle"]["preStop"]["exec"]["command"][1])
    assert template_spec["terminationGracePeriodSeconds"] > pause + DRAIN_TIMEOUT_S

    labels = template_spec and sts["spec"]["template"]["metadata"]["labels"]
    for obj in objects:
        selector = obj["spec"].get("selector") if obj["kind"] in ("Service", "PodDisruptionBudget") else None
        if selector is not None:
            selector = selector.get("matchLabels", selector)
            assert selector.items() <= labels.items(), (
                f"{obj['kind']}/{obj['metadata']['name']} selects no pod"
            )
    assert _one(objects, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    assert template_spec["securityContext"]["runAsNonRoot"] is True
