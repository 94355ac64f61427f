"""Apache Traffic Server for bench/load/hits.py: installed with apt-get if it can be, run from a tmpdir.

`ensure_ats` returns None when `traffic_server` is usable, or the reason it is skipped (not
installed and apt-get could not install it: no package registry, no root); the benchmark runs
without it then. `render_ats` writes a runroot in the run's tmpdir (its own records.config,
remap.config, storage.config and a 256 MiB RAM cache; copies of the package's other config
files) and returns the command line: the system's Traffic Server service is never started or
touched. It listens on loopback only, as a reverse proxy in front of the demo origin, with the
origin's Cache-Control deciding the lifetime (as for nginx and the edge).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from servers import HOST, Say, apt_install

__all__ = ["ensure_ats", "is_ats_hit", "render_ats"]

_SYSTEM_CONF = Path("/etc/trafficserver")
_MODULES = Path("/usr/lib/trafficserver/modules")


def ensure_ats(say: Say) -> str | None:
    """None when traffic_server can run; else why Traffic Server is left out of the run."""
    if shutil.which("traffic_server") is None:
        say("traffic_server missing; installing trafficserver with apt-get")
        failed = apt_install(["trafficserver"], say)
        if failed:
            return failed.splitlines()[0] + " " + " ".join(failed.splitlines()[-2:])
    if shutil.which("traffic_server") is None:
        return "traffic_server not found after installing trafficserver"
    if not _SYSTEM_CONF.is_dir():
        return f"{_SYSTEM_CONF} missing (the package's default config files are needed)"
    return None


def render_ats(prefix: Path, *, port: int, origin_port: int, threads: int) -> list[str]:
    """Writes a runroot under prefix/ats and returns the traffic_server command line."""
    root = prefix / "ats"
    etc = root / "etc"
    for sub in ("run", "log", "cache"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    shutil.copytree(_SYSTEM_CONF, etc, dirs_exist_ok=True)
    (root / "runroot.yaml").write_text(
        "".join(
            f"{k}: {v}\n"
            for k, v in {
                "prefix": root, "exec_prefix": "/usr", "bindir": "/usr/bin", "sbindir": "/usr/sbin",
                "sysconfdir": etc, "datadir": root / "cache", "includedir": "/usr/include",
                "libdir": "/usr/lib/trafficserver", "libexecdir": _MODULES,
                "localstatedir": root / "run", "runtimedir": root / "run", "logdir": root / "log",
                "cachedir": root / "cache",
            }.items()
        )
    )
    records = {
        "proxy.config.exec_thread.autoconfig": "INT 0",
        "proxy.config.exec_thread.limit": f"INT {threads}",
        "proxy.config.accept_threads": "INT 0",
        "proxy.config.task_threads": "INT 1",
        "proxy.config.http.server_ports": f"STRING {port}:ip-in={HOST}",
        "proxy.config.incoming_ip_to_bind": f"STRING {HOST}",
        "proxy.config.admin.user_id": "STRING #-1",  # stay root: the tmpdir is root's
        "proxy.config.url_remap.remap_required": "INT 1",
        "proxy.config.reverse_proxy.enabled": "INT 1",
        "proxy.config.http.cache.http": "INT 1",
        "proxy.config.http.cache.required_headers": "INT 2",
        "proxy.config.http.insert_response_via_str": "INT 2",  # Via carries the cache result
        "proxy.config.http.keep_alive_no_activity_timeout_in": "INT 120",
        "proxy.config.cache.ram_cache.size": "INT 268435456",
        "proxy.config.cache.ram_cache_cutoff": "INT 16777216",  # 8 MiB objects stay in RAM
        "proxy.config.log.logging_enabled": "INT 0",  # as nginx's access_log off
        "proxy.config.diags.debug.enabled": "INT 0",
    }
    (etc / "records.config").write_text("".join(f"CONFIG {k} {v}\n" for k, v in records.items()))
    (etc / "remap.config").write_text(f"map http://{HOST}:{port}/ http://{HOST}:{origin_port}/\n")
    (etc / "storage.config").write_text(f"{root / 'cache'} 1G\n")
    (etc / "plugin.config").write_text("")
    return ["traffic_server", f"--run-root={root / 'runroot.yaml'}"]


def is_ats_hit(via: str) -> bool:
    """Via at level 2 ends with `[cHs f ]`-like codes: `cH` is a fresh hit from the cache."""
    return "[cH" in via
