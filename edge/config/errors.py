"""ConfigError: the one error every config reader raises, for the whole TOML file."""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """The configuration is invalid; the message starts with the dotted path of the bad key."""
