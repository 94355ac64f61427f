"""Checks shared by the config readers: sizes, addresses, typed keys, unknown keys.

Every failure raises edge.config.errors.ConfigError naming the dotted key and what to do.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, TypeVar

from edge.config.errors import ConfigError

__all__ = [
    "boolean",
    "check_keys",
    "choice",
    "choices_text",
    "number",
    "opt_str",
    "parse_addr",
    "parse_size",
    "table",
]

Choice = TypeVar("Choice", bound=StrEnum)

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": KiB,
    "mib": MiB,
    "gib": GiB,
    "tib": 1024 * GiB,
}


def parse_size(value: object, path: str) -> int:
    """Parses a byte size: an int or a string like "256MiB"."""
    if isinstance(value, bool):
        raise ConfigError(f'{path}: expected a size such as 268435456 or "256MiB", got {value!r}')
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"{path}: size must not be negative")
        return value
    if isinstance(value, str):
        m = _SIZE.match(value)
        if m:
            return int(float(m.group(1)) * _UNITS[(m.group(2) or "B").lower()])
    raise ConfigError(f'{path}: expected a size such as 268435456 or "256MiB", got {value!r}')


def parse_addr(value: object, path: str) -> tuple[str, int]:
    """Parses "host:port"."""
    if isinstance(value, str) and ":" in value:
        host, _, port = value.rpartition(":")
        if host and port.isdigit() and 0 < int(port) < 65536:
            return host.strip("[]"), int(port)
    raise ConfigError(f'{path}: expected "host:port" such as "127.0.0.1:8080", got {value!r}')


def table(data: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"{path}: expected a table")
    return value


def check_keys(table: Mapping[str, Any], allowed: set[str], path: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{path}.{key}: unknown key; allowed keys are {', '.join(sorted(allowed))}")


def number(table: Mapping[str, Any], key: str, default: float, path: str) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{path}.{key}: expected a non-negative number, got {value!r}")
    return float(value)


def boolean(table: Mapping[str, Any], key: str, default: bool, path: str) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{path}.{key}: expected true or false, got {value!r}")
    return value


def opt_str(table: Mapping[str, Any], key: str, path: str) -> str | None:
    value = table.get(key)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{path}.{key}: expected a string, got {value!r}")
    return value


def choices_text(kind: type[StrEnum]) -> str:
    """The valid names of a choice, quoted as config.toml writes them: '"a", "b"'."""
    return ", ".join(f'"{member.value}"' for member in kind)


def choice(table: Mapping[str, Any], key: str, default: Choice, path: str, what: str = "value") -> Choice:
    """Reads `key` as one of the names of `default`'s enum; an unknown name lists the valid ones."""
    kind = type(default)
    value = table.get(key, default.value)
    if isinstance(value, str):
        for member in kind:
            if member.value == value:
                return member
    raise ConfigError(f"{path}.{key}: unknown {what} {value!r}; use one of {choices_text(kind)}")
