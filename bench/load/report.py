"""The load benchmark's report: rows, the table, the issue's targets, machine facts, JSON."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

from servers import tool_version

__all__ = [
    "BUSY_PCT",
    "TARGETS",
    "Row",
    "best_rows",
    "check_targets",
    "machine_info",
    "print_table",
    "ratio",
    "size_label",
    "write_json",
]

KiB, MiB = 1024, 1024 * 1024
BUSY_PCT = 15.0  # other% above this marks a run as disturbed by other work on the machine
CLIENT_BOUND_PCT = 90.0  # wrk% above this: wrk's one thread was the bottleneck
# (what, object size, metric, edge/nginx ratio needed): the targets of issue 13 (req/s with
# `workers = auto`, requests per server CPU-second with one worker)
TARGETS = [
    ("req/s on 1 KiB", KiB, "rps", 1.0),
    ("req per server cpu-s on 1 KiB", KiB, "req_per_cpu_s", 0.8),
    ("MB/s on 8 MiB", 8 * MiB, "mb_s", 1.5),
]
BASES = ("nginx", "floor")  # the ratio columns: each server against these, from the same run


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the table: one server at one object size."""

    size: int
    server: str
    hit_verified: bool
    rps: float
    mb_s: float  # 10**6 bytes per second as wrk counts them (headers included)
    p99_ms: float
    cpu_pct: float  # the server's CPU during the run (nginx: master + workers); 100 = one core
    wrk_pct: float  # wrk's CPU; near 100 = the client, not the server, set the pace
    other_pct: float  # CPU used by everything but the server and wrk meanwhile; should be near 0
    requests: int
    socket_errors: int
    non_2xx: int
    req_per_cpu_s: float = 0.0  # requests per CPU-second of the server's processes


def size_label(n: int) -> str:
    """1024 -> '1 KiB', 8388608 -> '8 MiB'."""
    for unit, mult in (("MiB", MiB), ("KiB", KiB)):
        if n >= mult and n % mult == 0:
            return f"{n // mult} {unit}"
    return f"{n} B"


def ratio(
    rows: list[Row], size: int, metric: str, server: str = "edge", base: str = "nginx"
) -> float | None:
    """server / base for one size and metric ('rps', 'mb_s', 'req_per_cpu_s'); None unless both ran."""
    by = {r.server: float(getattr(r, metric)) for r in rows if r.size == size}
    return by[server] / by[base] if server in by and by.get(base) else None


def best_rows(runs: list[Row]) -> list[Row]:
    """Per (size, server), in first-seen order, the run with the most req/s.

    Other work on the machine only ever slows a run down, so the best of a few alternating
    rounds is the closest to the server's own speed (and both servers get the same chances).
    """
    groups: dict[tuple[int, str], list[Row]] = {}
    for r in runs:
        groups.setdefault((r.size, r.server), []).append(r)
    return [max(g, key=lambda r: r.rps) for g in groups.values()]


def _notes(r: Row) -> str:
    notes = [] if r.hit_verified else ["NOT VERIFIED AS HIT"]
    notes += [f"{r.socket_errors} socket errors"] if r.socket_errors else []
    notes += [f"{r.non_2xx} non-2xx"] if r.non_2xx else []
    notes += ["machine busy"] if r.other_pct > BUSY_PCT else []
    notes += ["wrk-bound"] if r.wrk_pct > CLIENT_BOUND_PCT else []
    return ", ".join(notes)


def print_table(rows: list[Row]) -> None:
    """Prints one line per size and server, then the ratio table against nginx and the floor."""
    head = (f"{'size':>7} | {'server':<6} | {'req/s':>9} | {'MB/s':>8} | {'p99 ms':>8} | "
            f"{'cpu%':>4} | {'req/cpu-s':>9} | {'wrk%':>4} | {'other%':>6} | notes")
    print("\n" + head + "\n" + "-" * len(head))
    for r in rows:
        print(f"{size_label(r.size):>7} | {r.server:<6} | {r.rps:>9,.0f} | {r.mb_s:>8,.1f} | "
              f"{r.p99_ms:>8.2f} | {r.cpu_pct:>4.0f} | {r.req_per_cpu_s:>9,.0f} | "
              f"{r.wrk_pct:>4.0f} | {r.other_pct:>6.0f} | {_notes(r)}")
    print("cpu%: the server's processes and their children (100 = one core); req/cpu-s: requests "
          "per CPU-second of them;\nwrk%: the load generator's, over "
          f"{CLIENT_BOUND_PCT:.0f} the client set the pace; other%: CPU used meanwhile by anything "
          f"else, over {BUSY_PCT:.0f} other work was running: rerun on a quiet machine.")
    cols = [(base, metric, label) for base in BASES
            for metric, label in (("rps", "req/s"), ("mb_s", "MB/s"), ("req_per_cpu_s", "per cpu-s"))]
    names = [f"{label + ' x ' + base:>16}" for base, _, label in cols]
    head = f"{'size':>7} | {'server':<6} | " + " | ".join(names)
    print("\nratios (same run): x nginx, x floor\n" + head + "\n" + "-" * len(head))
    for r in rows:
        cells = []
        for base, metric, _ in cols:
            got = ratio(rows, r.size, metric, r.server, base)
            cells.append(f"{got:>16.2f}" if got is not None else f"{'-':>16}")
        print(f"{size_label(r.size):>7} | {r.server:<6} | " + " | ".join(cells))


def check_targets(rows: list[Row]) -> list[dict[str, object]]:
    """Prints and returns each target of the issue as met / NOT met / not measured."""
    out: list[dict[str, object]] = []
    print("\ntargets (edge vs nginx, same run):")
    for what, size, metric, need in TARGETS:
        got = ratio(rows, size, metric)
        verdict = "not measured" if got is None else ("met" if got >= need else "NOT met")
        shown = "-" if got is None else f"{got:.2f}x"
        print(f"  {what} >= {need}x nginx: {shown} -> {verdict}")
        out.append({"target": what, "needed_ratio": need, "ratio": got, "verdict": verdict})
    return out


def _dist_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, str]:
    """CPU, kernel, Python and the versions of everything on the measured path."""
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "?")
    return {"nproc": str(os.cpu_count()), "cpu": cpu, "kernel": platform.release(),
            "python": platform.python_version(), "uvloop": _dist_version("uvloop"),
            "aiohttp": _dist_version("aiohttp"), "httptools": _dist_version("httptools"),
            "nginx": tool_version(["nginx", "-v"]), "wrk": tool_version(["wrk", "-v"])}


def write_json(path: Path, *, machine: dict[str, str], params: dict[str, object],
               targets: list[dict[str, object]], rows: list[Row], runs: list[Row]) -> None:
    """Writes the run as one JSON document: the table's rows and every wrk run behind them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"machine": machine, "params": params, "targets": targets,
           "results": [asdict(r) for r in rows], "runs": [asdict(r) for r in runs]}
    path.write_text(json.dumps(doc, indent=2) + "\n")
