"""Accept-Encoding folded to the content codings the edge tells apart — pure.

A response that varies on Accept-Encoding is stored once per distinct request value, and
clients spell the same wish in endless ways (`gzip, deflate, br`, `br;q=1.0, gzip;q=0.8`,
`GZIP`, ...): 300 spellings made 300 origin fetches and 300 stored copies (issue 12). The
edge distinguishes three codings: `br`, `gzip` and `identity`. Each request's value is
replaced, before it is forwarded and before it selects a variant, by the one of these the
client likes best (RFC 9110 §12.5.3: q-values honoured, `*` covers codings not named,
`x-gzip` is gzip, `q=0` means "not acceptable"; on a tie br beats gzip beats identity).
A request without the field gets `identity`: the origin then sends what every client reads.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

__all__ = ["CODINGS", "normalise_accept_encoding", "normalise_raw_accept_encoding"]

CODINGS = ("br", "gzip", "identity")  # what a normalised value can be, best first on a tie
_ALIASES = {"x-gzip": "gzip"}
_MAX_VALUE = 1024  # longer values are read only this far (no real client sends more)


def _q(params: list[str]) -> float | None:
    """The q parameter's weight (1 when absent), or None when it is malformed."""
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                weight = float(value.strip())
            except ValueError:
                return None
            return weight if 0.0 <= weight <= 1.0 else None
    return 1.0


@functools.lru_cache(maxsize=1024)
def normalise_accept_encoding(value: str | None) -> str:
    """The coding among br, gzip and identity the client prefers (identity when none)."""
    if value is None:
        return "identity"
    weights: dict[str, float] = {}
    wildcard: float | None = None
    for item in value[:_MAX_VALUE].split(","):
        coding, *params = item.split(";")
        coding = coding.strip().lower()
        coding = _ALIASES.get(coding, coding)
        weight = _q(params)
        if not coding or weight is None:
            continue
        if coding == "*":
            wildcard = weight
        elif coding in CODINGS:
            weights[coding] = max(weight, weights.get(coding, 0.0))
    # §12.5.3: identity is acceptable unless excluded by name or by `*;q=0`, but only
    # named it carries a preference; unnamed, any acceptable compression beats it
    identity_default = 0.001 if wildcard is None else wildcard
    best, best_weight = "identity", weights.get("identity", identity_default)
    for coding in ("gzip", "br"):  # later wins ties: br before gzip before identity
        weight = weights.get(coding, wildcard or 0.0)
        if weight > 0 and weight >= best_weight:
            best, best_weight = coding, weight
    return best


def normalise_raw_accept_encoding(raw_headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The same, from raw header fields (every Accept-Encoding line, joined as a list)."""
    values = [value for name, value in raw_headers if name.lower() == b"accept-encoding"]
    if not values:
        return "identity"
    return normalise_accept_encoding(b",".join(values).decode("latin-1"))
