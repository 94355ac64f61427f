"""Secrets in config.toml: each one may be written inline, read from a file, or from the environment.

Every secret key `K` of the config (`[cluster] secret`, `[[admin.tokens]] token`, a secret
origin request header's `value`) accepts exactly one of three spellings:

    K = "the secret"                 inline: check-config warns, keep it for demos and tests
    K_file = "/run/secrets/name"     the file's text, surrounding whitespace removed (as
                                     Kubernetes and systemd's LoadCredential mount them)
    K_env = "EDGE_CLUSTER_SECRET"    the named environment variable's value

Files and variables are read once, when the config is loaded (start, check-config). A
secret's value never appears in a ConfigError; only the dotted key, the file's path or the
variable's name do. `inline_secrets(data)` lists the dotted keys of the secrets written
inline, for check-config's warnings.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from enum import StrEnum
from typing import Any

from edge.config.errors import ConfigError

__all__ = ["SECRET_HEADER_WORDS", "SecretSource", "inline_secrets", "read_secret", "secret_keys"]

MAX_SECRET_FILE_BYTES = 64 * 1024  # a secret file larger than this is the wrong file

# an inline origin request header whose name contains one of these carries a credential
SECRET_HEADER_WORDS = ("auth", "token", "key", "secret", "signature", "cookie", "password")


class SecretSource(StrEnum):
    """Where a secret's value came from."""

    INLINE = "inline"
    FILE = "file"
    ENV = "env"


def secret_keys(key: str) -> frozenset[str]:
    """The three spellings of secret key `key`: itself, `key_file` and `key_env`."""
    return frozenset({key, f"{key}_file", f"{key}_env"})


def _from_file(raw: object, path: str) -> str:
    if not isinstance(raw, str) or not raw:
        raise ConfigError(f'{path}: expected the path of a file holding the secret, such as "/run/secrets/x"')
    try:
        with open(raw, "rb") as f:
            data = f.read(MAX_SECRET_FILE_BYTES + 1)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: {raw}: file not found; mount the secret there or fix the path") from exc
    except OSError as exc:
        raise ConfigError(
            f"{path}: {raw}: cannot read it ({exc.strerror or type(exc).__name__}); make it readable by "
            "this user"
        ) from None  # the OSError's own text is safe, but its traceback is not needed
    if len(data) > MAX_SECRET_FILE_BYTES:
        raise ConfigError(f"{path}: {raw}: larger than {MAX_SECRET_FILE_BYTES} bytes; is it the right file?")
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: {raw}: not UTF-8 text; write the secret as text") from None


def _from_env(raw: object, path: str, env: Mapping[str, str]) -> str:
    if not isinstance(raw, str) or not raw:
        raise ConfigError(f'{path}: expected the name of an environment variable, such as "EDGE_SECRET"')
    if raw not in env:
        raise ConfigError(f"{path}: environment variable {raw} is not set; set it or use another spelling")
    return env[raw].strip()


def read_secret(
    table: Mapping[str, Any],
    key: str,
    path: str,
    *,
    env: Mapping[str, str] | None = None,
) -> tuple[str, SecretSource] | None:
    """The secret `key` of `table` (at dotted `path`) and where it came from; None when unset.

    Raises ConfigError when more than one spelling is given, the file or variable is
    missing, or the value is empty; the message never contains the value.
    """
    given = [k for k in (key, f"{key}_file", f"{key}_env") if k in table]
    if not given:
        return None
    if len(given) > 1:
        raise ConfigError(f"{path}.{given[1]}: {path}.{given[0]} is set too; give the secret one way only")
    spelling = given[0]
    raw = table[spelling]
    where = f"{path}.{spelling}"
    if spelling == key:
        if not isinstance(raw, str):
            raise ConfigError(f"{where}: expected a string")
        value, source = raw, SecretSource.INLINE
    elif spelling.endswith("_file"):
        value, source = _from_file(raw, where), SecretSource.FILE
    else:
        value, source = _from_env(raw, where, os.environ if env is None else env), SecretSource.ENV
    if not value:
        raise ConfigError(f"{where}: the secret is empty; give it a value")
    return value, source


def _header_is_secret(name: str) -> bool:
    lname = name.lower()
    return any(word in lname for word in SECRET_HEADER_WORDS)


def _walk(data: Mapping[str, Any]) -> Iterator[str]:
    cluster = data.get("cluster")
    if isinstance(cluster, Mapping) and "secret" in cluster:
        yield "cluster.secret"
    admin = data.get("admin")
    tokens = admin.get("tokens") if isinstance(admin, Mapping) else None
    for i, token in enumerate(tokens if isinstance(tokens, list) else ()):
        if isinstance(token, Mapping) and "token" in token:
            yield f"admin.tokens[{i}].token"
    origins = data.get("origins")
    for pool, body in origins.items() if isinstance(origins, Mapping) else ():
        headers = body.get("request_headers") if isinstance(body, Mapping) else None
        for name, value in headers.items() if isinstance(headers, Mapping) else ():
            inline = isinstance(value, str) or (isinstance(value, Mapping) and "value" in value)
            if inline and _header_is_secret(name):
                yield f"origins.{pool}.request_headers.{name}"


def inline_secrets(data: Mapping[str, Any]) -> tuple[str, ...]:
    """The dotted keys of the secrets written inline in a decoded config — pure.

    Origin request headers count when their name looks like a credential
    (SECRET_HEADER_WORDS: Authorization, X-Api-Key, ...).
    """
    return tuple(_walk(data))
