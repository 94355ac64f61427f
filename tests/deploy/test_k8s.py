"""deploy/k8s: every manifest is a valid Kubernetes object, and the manifests agree with the
config.toml they mount and with the node's own config loader.

The kustomizations are rendered by tests/deploy/kustomize.py (no kubectl in CI); where kubectl
is installed its `kubectl kustomize` output must equal that rendering. Objects are checked
against the Kubernetes JSON schemas bundled by kubernetes-validate, in strict mode (an unknown
or misspelled field is an error), for the oldest and the newest Kubernetes version we support.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from edge.config.deployment import load
from edge.config.errors import ConfigError
from edge.config.secrets import inline_secrets
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


def _container(sts: Obj, name: str) -> Obj:
    spec = sts["spec"]["template"]["spec"]
    return next(c for c in spec["containers"] if c["name"] == name)


def _port(container: Obj, name: str) -> int:
    return int(next(p["containerPort"] for p in container["ports"] if p["name"] == name))


def _quantity(value: str) -> int:
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti)", value)
    assert m, f"unexpected quantity {value!r}"
    return int(m.group(1)) * 1024 ** ("KMGT".index(m.group(2)[0]) + 1)


def _mount(mount_path: str, tmp: Path) -> Path:
    """Where the test lays out a volume the pod mounts at `mount_path`."""
    return tmp / mount_path.lstrip("/")


def _pod_config(sts: Obj, config_map: Obj, tmp: Path, secrets: dict[str, str]) -> Path:
    """Lays out the ConfigMap and the Secret as the node container mounts them (under `tmp`)
    and returns the config file the node's --config names, its mount paths moved under `tmp`."""
    node = _container(sts, "edgecache")
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in node["volumeMounts"]}
    assert volumes["config"]["configMap"]["name"] == config_map["metadata"]["name"]
    text = config_map["data"]["config.toml"]
    for name in ("config", "secrets"):
        _mount(mounts[name], tmp).mkdir(parents=True)
        text = text.replace(mounts[name] + "/", str(_mount(mounts[name], tmp)) + "/")
    for key, value in secrets.items():
        (_mount(mounts["secrets"], tmp) / key).write_text(value + "\n")  # as `--from-file` leaves it
    config_arg = node["args"][node["args"].index("--config") + 1]
    assert Path(config_arg).parent == Path(mounts["config"]), "--config names the mounted ConfigMap"
    path = _mount(mounts["config"], tmp) / Path(config_arg).name
    path.write_text(text)
    return path


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
    template = config_map["data"]["config.toml"]
    for value in SECRET_VALUES.values():
        assert value not in template
    assert inline_secrets(tomllib.loads(template)) == (), "secrets come from the Secret's files"
    assert not sts["spec"]["template"]["spec"].get("initContainers"), "the node reads the files itself"
    path = _pod_config(sts, config_map, tmp_path, SECRET_VALUES)
    nodes = tomllib.loads(path.read_text())["nodes"]
    assert len(nodes) == 12
    for node in nodes:
        cfg = load(path, node)
        assert cfg.cluster is not None and cfg.cluster.secret == SECRET_VALUES["cluster-secret"]
        assert [t.token for t in cfg.admin.tokens] == [SECRET_VALUES["admin-token"]]


def test_mounted_config_fails_naming_the_key_when_the_secret_lacks_a_file(tmp_path: Path) -> None:
    objects = _rendered("eu")
    path = _pod_config(
        _one(objects, "StatefulSet"),
        _one(objects, "ConfigMap"),
        tmp_path,
        {"cluster-secret": SECRET_VALUES["cluster-secret"]},
    )
    with pytest.raises(ConfigError, match=r"^admin\.tokens\[0\]\.token_file: .*admin-token: file not found"):
        load(path, "edgecache-eu-0")


def test_the_secret_example_has_every_key_the_config_names() -> None:
    secret = yaml.safe_load((K8S / "secret.example.yaml").read_text())
    sts = _one(_rendered("eu"), "StatefulSet")
    volume = next(v for v in sts["spec"]["template"]["spec"]["volumes"] if v["name"] == "secrets")
    mount = next(m for m in _container(sts, "edgecache")["volumeMounts"] if m["name"] == "secrets")
    template = (K8S / "base" / "config.toml").read_text()
    named = set(re.findall(re.escape(mount["mountPath"]) + r"/([a-z0-9-]+)", template))
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
    path = _pod_config(sts, _one(objects, "ConfigMap"), tmp_path, SECRET_VALUES)
    pods = [f"{sts['metadata']['name']}-{i}" for i in range(sts["spec"]["replicas"])]
    in_region = sorted(
        n for n, body in tomllib.loads(path.read_text())["nodes"].items() if body["region"] == region
    )
    assert in_region == pods, "every pod is a node of this region in config.toml, and no other node is"

    node = _container(sts, "edgecache")
    assert node["args"] == ["--config", "/etc/edgecache/config/config.toml", "--node", "$(POD_NAME)"]
    assert (
        next(e for e in node["env"] if e["name"] == "POD_NAME")["valueFrom"]["fieldRef"]["fieldPath"]
        == "metadata.name"
    )
    peers = _service(objects, headless=True)
    assert sts["spec"]["serviceName"] == peers["metadata"]["name"]
    assert peers["spec"]["publishNotReadyAddresses"] is True
    mounts = {m["name"]: m["mountPath"] for m in node["volumeMounts"]}
    assert mounts["config"] == "/etc/edgecache/config"
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
        discovery = cfg.regions[region].discovery  # SRV records of the headless Service's port
        assert discovery is not None and discovery.record.value == "SRV"
        port_name = peers["spec"]["ports"][0]["name"]
        assert discovery.name == f"_{port_name}._tcp.{peers['metadata']['name']}.{namespace}.svc.cluster.local"
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
