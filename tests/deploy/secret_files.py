"""Lays out the secret files a deploy/ config names under /etc/edgecache/secrets in a temporary
directory, and returns a copy of the config that names them there instead."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["SECRETS_DIR", "with_secret_files"]

SECRETS_DIR = "/etc/edgecache/secrets/"


def with_secret_files(config: Path, tmp: Path) -> Path:
    """A copy of `config` in `tmp` whose secret files exist (each a long random-looking value)."""
    text = config.read_text()
    secrets = tmp / "secrets"
    secrets.mkdir(exist_ok=True)
    for name in re.findall(re.escape(SECRETS_DIR) + r"([a-z0-9-]+)", text):
        (secrets / name).write_text(f"a-long-random-{name}-for-the-test\n")
    copy = tmp / config.name
    copy.write_text(text.replace(SECRETS_DIR, f"{secrets}/"))
    return copy
