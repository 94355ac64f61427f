"""Whether a fill's response is kept, as what entry, and who may read it — pure.

`decide_keep` runs once per fill, on the response head: it computes the freshness once
(RFC 9111 §4.2, then the route policy where the origin is silent), asks the storability
rules (§3) why not, adds the edge's own limits (server errors, the largest object), picks
the variant key from Vary (§4.1) and builds the typed entry. `refreshed_meta` is the same
for a 304 that freshens a stored entry (§4.3.4). The producer only does the I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol, TypedDict

from edge.config.deployment import CacheConfig
from edge.rules.cache_control import Directives, response_directives
from edge.rules.deception import edge_lifetime_refusal
from edge.rules.error_storage import error_store_reason
from edge.rules.freshness import compute_freshness, updated_headers_from_304
from edge.rules.key import CacheKey, variant_id
from edge.rules.outcome import NoStoreReason
from edge.rules.site_policy import CachePolicy
from edge.rules.storable import HEURISTIC_STATUSES, no_store_reason
from edge.store.entry import EntryMeta
from edge.store.sliced import SLICED_STATUS
from origin.hopbyhop import HOP_BY_HOP

__all__ = [
    "VARY_MARKER_STATUS",
    "FillFreshness",
    "KeepDecision",
    "ResponseFacts",
    "decide_keep",
    "fill_freshness",
    "refreshed_meta",
    "replay_headers",
    "vary_marker",
    "vary_names",
]

Headers = tuple[tuple[str, str], ...]

# A stored entry with this status is a Vary marker: its `vary` names the fields that select
# the variant, stored under CacheKey.variant(); it has no body.
VARY_MARKER_STATUS = 0

# Fields never replayed from a stored response: hop-by-hop and framing (we set them), Age
# (recomputed on every response, RFC 9111 §4.2.3) and our own Cache-Status.
_NOT_REPLAYED = HOP_BY_HOP | {"content-length", "age", "cache-status", "accept-ranges"}

# Reasons a response is not stored but may still be given to the requests that waited on it:
# they are public answers (errors, too-large or unvalidatable bodies). Everything else
# (private, no-store, credentials, cookies) goes to the leader only. A client's own no-store
# only stops storing: the answer itself is public.
_SHAREABLE_REASONS = frozenset(
    {NoStoreReason.STATUS, NoStoreReason.TOO_LARGE, NoStoreReason.PARTIAL, NoStoreReason.REQUEST_NO_STORE}
)


class ResponseFacts(Protocol):
    """The parts of an upstream response head the decisions read (origin.upstream.UpstreamResponse)."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Headers: ...

    @property
    def request_time(self) -> float: ...

    @property
    def response_time(self) -> float: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class FillFreshness:
    """A response's freshness and validators, as EntryMeta keeps them, and how they were found."""

    initial_age_s: float
    lifetime_s: float  # the origin's (or heuristic) lifetime, or the policy's where it is silent
    swr_s: float
    sie_s: float
    must_revalidate: bool
    no_cache: bool
    etag: str | None
    last_modified: str | None
    directives: Directives  # the Cache-Control that decided (CDN-Cache-Control first)
    used_cdn: bool  # CDN-Cache-Control decided the policy (RFC 9213)
    from_policy: bool  # the lifetime is the route policy's (the origin was silent)

    def entry_fields(self) -> EntryFreshness:
        """The fields an EntryMeta takes from it, for a new entry and for a 304 refresh alike."""
        return EntryFreshness(
            initial_age_s=self.initial_age_s,
            lifetime_s=self.lifetime_s,
            swr_s=self.swr_s,
            sie_s=self.sie_s,
            must_revalidate=self.must_revalidate,
            no_cache=self.no_cache,
            etag=self.etag,
            last_modified=self.last_modified,
        )


class EntryFreshness(TypedDict):
    """EntryMeta's freshness and validator fields (RFC 9111 §4.2, §4.3)."""

    initial_age_s: float
    lifetime_s: float
    swr_s: float
    sie_s: float
    must_revalidate: bool
    no_cache: bool
    etag: str | None
    last_modified: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class KeepDecision:
    """What becomes of one fill's response."""

    reason: NoStoreReason | None  # why no entry is made; None: `meta` is the entry
    meta: EntryMeta | None  # the entry for the response; None when `reason` is set
    stored: bool  # `meta` is written to this node's store (False: no store given)
    shareable: bool  # the requests that waited on the fill may read it
    replay: Headers  # the fields every reader gets
    length: int | None  # Content-Length, when given as digits
    vary: tuple[str, ...]  # lower-cased Vary field names
    variant_id: bytes | None  # the id this variant is stored under, when the response varies
    marker: EntryMeta | None  # the Vary marker to store under the primary id first
    initial_age_s: float  # for Age on responses that are not stored


def replay_headers(headers: Iterable[tuple[str, str]]) -> Headers:
    """The response fields a cache replays (framing, per-hop fields and Age removed)."""
    return tuple((n, v) for n, v in headers if n.lower() not in _NOT_REPLAYED)


def vary_names(headers: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    """Lower-cased field names from every Vary header, in order, without duplicates."""
    names: list[str] = []
    for n, v in headers:
        if n.lower() == "vary":
            for token in v.split(","):
                token = token.strip().lower()
                if token and token not in names:
                    names.append(token)
    return tuple(names)


def _tags(headers: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    tags: list[str] = []
    for n, v in headers:
        ln = n.lower()
        if ln == "surrogate-key" or ln == "cache-tag":
            tags.extend(t for t in v.replace(",", " ").split() if t)
    return tuple(dict.fromkeys(tags))


def _header(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    for n, v in headers:
        if n.lower() == name:
            return v
    return None


def fill_freshness(
    status: int,
    headers: Headers,
    head: ResponseFacts,
    *,
    cache: CacheConfig,
    policy: CachePolicy,
    target: str,
) -> FillFreshness:
    """A response's freshness (RFC 9111 §4.2, then the policy where the origin is silent)."""
    directives, used_cdn = response_directives(headers)
    f = compute_freshness(
        status=status,
        response_headers=headers,
        directives=directives,
        used_cdn_cc=used_cdn,
        request_time=head.request_time,
        response_time=head.response_time,
        heuristic_fraction=cache.heuristic_fraction,
        heuristic_max_s=cache.heuristic_max_s,
    )
    explicit = (
        directives.s_maxage is not None
        or directives.max_age is not None
        or (not used_cdn and _header(headers, "expires") is not None)
    )
    silent = not (explicit or directives.no_cache or directives.no_store) and status in HEURISTIC_STATUSES
    policy_ttl = policy.silent_ttl(status, target) if silent else None
    return FillFreshness(
        initial_age_s=f.initial_age_s,
        lifetime_s=f.lifetime_s if policy_ttl is None else policy_ttl,
        swr_s=f.swr_s,
        sie_s=f.sie_s,
        must_revalidate=f.must_revalidate,
        no_cache=f.no_cache,
        etag=_header(headers, "etag"),
        last_modified=_header(headers, "last-modified"),
        directives=directives,
        used_cdn=used_cdn,
        from_policy=policy_ttl is not None,
    )


def decide_keep(
    head: ResponseFacts,
    *,
    key: CacheKey,
    client_headers: Mapping[str, str],
    authorization: bool,
    has_store: bool,
    cache: CacheConfig,
    max_object_bytes: int,
    policy: CachePolicy,
    purge_gen: int,
) -> KeepDecision:
    """Decides whether (and as what entry) a fill's full response is kept, and who may read it."""
    status, headers = head.status, head.headers
    fresh = fill_freshness(status, headers, head, cache=cache, policy=policy, target=key.target)
    reason = no_store_reason(
        method="GET",
        status=status,
        request_headers=client_headers,
        response_headers=headers,
        directives=fresh.directives,
        authorization=authorization,
        allow_set_cookie=cache.allow_set_cookie,
        used_cdn_cc=fresh.used_cdn,
    )
    if fresh.from_policy and reason is NoStoreReason.NO_FRESHNESS:
        reason = None  # the policy gives it the freshness the origin did not
    if reason is None:  # issue 12: web cache deception armour for edge-added lifetimes
        reason = edge_lifetime_refusal(
            target=key.target,
            status=status,
            request_headers=client_headers,
            response_headers=headers,
            directives=fresh.directives,
            used_cdn_cc=fresh.used_cdn,
            lifetime_s=fresh.lifetime_s,
        )
    if reason is None:  # issue 12: request-caused errors and 5xx are not kept, whatever they say
        reason = error_store_reason(status, policy.store_error_statuses)
    length_s = _header(headers, "content-length")
    length = int(length_s) if length_s and length_s.isdigit() else None
    if reason is None and length is not None and length > max_object_bytes:
        reason = NoStoreReason.TOO_LARGE
    replay = replay_headers(headers)
    vary = vary_names(headers)
    store_id = variant_id(key.id, vary, client_headers) if vary else key.id
    meta: EntryMeta | None = None
    if reason is None:
        meta = EntryMeta(
            key=store_id,
            url=key.url,
            status=status,
            headers=replay,
            request_time=head.request_time,
            response_time=head.response_time,
            **fresh.entry_fields(),
            vary=vary,
            tags=_tags(headers),
            purge_gen=purge_gen,
        )
    stored = meta is not None and has_store  # no store: the owner keeps it, we pass it on
    return KeepDecision(
        reason=reason,
        meta=meta,
        stored=stored,
        shareable=reason is None or reason in _SHAREABLE_REASONS,
        replay=replay,
        length=length,
        vary=vary,
        variant_id=store_id if vary else None,
        marker=vary_marker(key.id, meta) if meta is not None and stored and vary else None,
        initial_age_s=fresh.initial_age_s,
    )


def refreshed_meta(
    stale: EntryMeta,
    head: ResponseFacts,
    *,
    cache: CacheConfig,
    policy: CachePolicy,
    target: str,
    purge_gen: int,
) -> EntryMeta:
    """RFC 9111 §4.3.4: the stored entry with a 304's fields and a new freshness; the body stays."""
    headers = replay_headers(updated_headers_from_304(stale.headers, head.headers))
    status = 200 if stale.status == SLICED_STATUS else stale.status  # issue 14: a sliced 200's record
    fresh = fill_freshness(status, headers, head, cache=cache, policy=policy, target=target)
    return stale.replace(
        headers=headers,
        request_time=head.request_time,
        response_time=head.response_time,
        invalidated=False,
        purge_gen=purge_gen,
        **fresh.entry_fields(),
    )


def vary_marker(primary_id: bytes, variant: EntryMeta) -> EntryMeta:
    """The primary id's Vary marker (no body): it names the fields that select the variant."""
    return variant.replace(
        key=primary_id,
        status=VARY_MARKER_STATUS,
        headers=(),
        etag=None,
        last_modified=None,
        lifetime_s=10 * 365 * 86400.0,
        no_cache=False,
        must_revalidate=False,
    )
