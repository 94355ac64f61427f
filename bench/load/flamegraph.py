"""Optional: a py-spy flame graph of the edge process while wrk drives it (hits.py --profile)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from servers import Say
from wrk import WrkResult, run_wrk

__all__ = ["record_during_wrk"]

_RATE_HZ = 250


def _py_spy(say: Say) -> Path | None:
    """The venv's py-spy, installed with pip when missing; None if that fails."""
    exe = Path(sys.executable).parent / "py-spy"
    if not exe.exists():
        say("installing py-spy into the venv")
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "py-spy"],
                       timeout=300, check=False)
    return exe if exe.exists() else None


def record_during_wrk(pid: int, url: str, out: Path, *, connections: int, duration_s: float,
                      say: Say) -> WrkResult | None:
    """Samples `pid` with py-spy into an SVG at `out` during one wrk run; None if py-spy fails."""
    exe = _py_spy(say)
    if exe is None:
        say("py-spy could not be installed; skipping the profile")
        return None
    # --nonblocking: sample without pausing the process, so the edge runs at nearly full speed
    argv = [str(exe), "record", "--pid", str(pid), "--duration", str(max(1, int(duration_s))),
            "--rate", str(_RATE_HZ), "--nonblocking", "--format", "flamegraph", "-o", str(out)]
    spy = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        result = run_wrk(url, connections=connections, duration_s=duration_s)
        spy_out = spy.communicate(timeout=duration_s + 30)[0].decode(errors="replace")
    finally:
        if spy.poll() is None:
            spy.kill()
            spy.wait(timeout=5)
    if spy.returncode != 0 or not out.exists():
        say(f"py-spy failed ({spy.returncode}; it needs ptrace): {spy_out.strip()[-500:]}")
        return None
    return result
