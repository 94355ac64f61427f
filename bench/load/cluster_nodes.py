"""The processes of the cluster benchmark: a 3-node region or a lone node, their keys and checks.

Every node listens on its own 127.0.0.x, talks only to the demo origin on 127.0.0.1 and to its
peers, and is started through `servers.Services`, which stops it in the caller's `finally`.
Every request sends `Host: demo.test`, so every node computes the same key for a URL.
"""

from __future__ import annotations

import http.client
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from servers import Say, Service, Services

__all__ = [
    "SITE",
    "Node",
    "check",
    "detail",
    "free_port",
    "get",
    "is_hit",
    "keys_by_owner",
    "start_nodes",
    "stop_nodes",
    "warm",
]

SITE = "demo.test"  # the Host of every request: one cache key per URL across the region
SECRET = "bench-cluster-secret"
TOKEN = "bench-cluster-admin-token"
_READY_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Node:
    """One edge node of the benchmark and its process."""

    name: str
    host: str
    port: int
    internal_port: int  # 0: a lone node without peers
    admin_port: int
    pid: int = 0


def free_port(host: str) -> int:
    """A port free on `host` a moment ago."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _config(origin_port: int, nodes: list[Node], cluster: list[str]) -> str:
    """config.toml for the nodes: memory only, one route to the demo origin, `cluster` lines."""
    lines = ["access_log = false", ""]
    if cluster:
        lines += ["[cluster]", f'secret = "{SECRET}"', *cluster, ""]
    lines += [
        "[cache]",
        'memory_bytes = "1GiB"',
        "",
        "[admin]",
        "[[admin.tokens]]",
        'name = "bench"',
        f'token = "{TOKEN}"',
        'hosts = ["*"]',
        "",
        "[origins.demo]",
        f'servers = ["http://127.0.0.1:{origin_port}"]',
        "",
        "[[routes]]",
        'host = "*"',
        'path_prefix = "/"',
        'origin = "demo"',
        "",
    ]
    for n in nodes:
        lines += [f"[nodes.{n.name}]", f'listen = "{n.host}:{n.port}"', f'admin = "{n.host}:{n.admin_port}"']
        if n.internal_port:
            lines += [f'internal = "{n.host}:{n.internal_port}"', 'region = "bench"']
        lines.append("")
    return "\n".join(lines)


def _wait_listening(svc: Service, host: str, port: int) -> None:
    """Returns once host:port accepts; raises if the process exits or time runs out."""
    deadline = time.monotonic() + _READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if svc.proc.poll() is not None:
            raise RuntimeError(f"{svc.name} exited with {svc.proc.returncode}:\n{svc.log_tail()}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{svc.name} not listening on {host}:{port}:\n{svc.log_tail()}")


def start_nodes(
    procs: Services,
    tmp: Path,
    label: str,
    origin_port: int,
    hosts: list[tuple[str, str]],
    cluster: list[str] | None,
    say: Say,
) -> dict[str, Node]:
    """Starts one process per (name, host): a region when `cluster` is given, else a lone node."""
    peers = cluster is not None
    nodes = [
        Node(name, host, free_port(host), free_port(host) if peers else 0, free_port(host))
        for name, host in hosts
    ]
    conf = tmp / f"{label}.toml"
    conf.write_text(_config(origin_port, nodes, cluster or []))
    started: dict[str, Node] = {}
    for n in nodes:
        svc = procs.start(
            f"{label}-{n.name}",
            [
                sys.executable,
                "-m",
                "edge",
                "--config",
                str(conf),
                "--node",
                n.name,
                "--no-access-log",
                "--log-level",
                "WARNING",
            ],
            n.port,
            say,
        )
        started[n.name] = Node(n.name, n.host, n.port, n.internal_port, n.admin_port, svc.proc.pid)
        _wait_listening(svc, n.host, n.port)
        if n.internal_port:
            _wait_listening(svc, n.host, n.internal_port)
        _wait_listening(svc, n.host, n.admin_port)
    return started


def stop_nodes(procs: Services, prefix: str, say: Say, timeout_s: float = 10.0) -> None:
    """Stops the started processes whose name begins with `prefix` (terminate, then kill)."""
    for svc in [s for s in procs.started if s.name.startswith(prefix)]:
        say(f"stopping {svc.name} (pid {svc.proc.pid})")
        svc.proc.terminate()
        try:
            svc.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            svc.proc.kill()
            svc.proc.wait(timeout=5)
        procs.started.remove(svc)


def get(node: Node, path: str) -> tuple[int, int, str]:
    """GET with Host: SITE; (status, body bytes, Cache-Status)."""
    conn = http.client.HTTPConnection(node.host, node.port, timeout=30)
    try:
        conn.request("GET", path, headers={"Host": SITE})
        resp = conn.getresponse()
        return resp.status, len(resp.read()), resp.headers.get("Cache-Status", "")
    finally:
        conn.close()


def detail(cache_status: str) -> str | None:
    m = re.search(r"detail=([^;,\s]+)", cache_status.split(",")[-1])  # this node's member (RFC 9211: last)
    return m.group(1) if m else None


def is_hit(cache_status: str) -> bool:
    return "hit" in [p.strip() for p in cache_status.split(",")[-1].split(";")[1:]]


def keys_by_owner(nodes: dict[str, Node], size: int, tag: str) -> dict[str, str]:
    """A path per node that the node owns: node a's answer names every other owner."""
    found: dict[str, str] = {}
    for i in range(200):
        path = f"/obj/cluster-{tag}-{size}-{i}?size={size}&cc=max-age=3600"
        status, _, cs = get(nodes["a"], path)
        if status != 200:
            raise RuntimeError(f"GET {path} at a -> {status}")
        d = detail(cs)
        owner = d.removeprefix("peer-") if d and d.startswith("peer-") else "a"
        found.setdefault(owner, path)
        if len(found) == len(nodes):
            return found
    raise RuntimeError(f"no key for every node among 200 (found {found})")


def check(node: Node, path: str, size: int, *, hit: bool, via: str | None, tries: int = 2) -> None:
    """Asks `tries` times; the last answer must be `hit` or not, and name `via` as its source."""
    for _ in range(tries):
        status, got, cs = get(node, path)
    if status != 200 or got != size or is_hit(cs) != hit or (not hit and detail(cs) != via):
        raise RuntimeError(
            f"{node.name} {path}: {status}, {got} bytes, Cache-Status {cs!r}; "
            f"wanted {'a hit' if hit else f'a fill via {via}'}"
        )


def warm(node: Node, paths: list[str]) -> None:
    """Asks every path once over one keep-alive connection; each must answer 200."""
    conn = http.client.HTTPConnection(node.host, node.port, timeout=30)
    try:
        for path in paths:
            conn.request("GET", path, headers={"Host": SITE})
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise RuntimeError(f"warming {node.name} {path}: {resp.status}")
    finally:
        conn.close()
