"""Origin configuration: pools of servers, their balancing, health checks, timeouts, retry
policy and backup pool, and routing rules.

The values are frozen dataclasses; a value that cannot be right raises ValueError saying what
is wrong. Reading them from config.toml (unknown keys, types, the dotted path in each error) is
the edge's job: edge/config/origins.py builds them and never lets a bad table through.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urlsplit

__all__ = [
    "AdmissionConfig",
    "Balance",
    "HealthCheckConfig",
    "OriginPoolConfig",
    "OriginRewrite",
    "OriginTls",
    "PassiveHealthConfig",
    "RetryConfig",
    "RouteRule",
    "ServerConfig",
    "TimeoutConfig",
]


def url_problem(url: str) -> str | None:
    """Says what is wrong with a server base URL, or None when it is "http(s)://host[:port][/]"."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a non-numeric or out-of-range port
    except ValueError as exc:
        return f"{url!r} is not a URL ({exc}); write it as http://host:port"
    if parts.scheme not in ("http", "https"):
        return f"{url!r} has scheme {parts.scheme!r}; use http:// or https://"
    if not parts.hostname:
        return f"{url!r} has no host; write it as http://host:port"
    if parts.username is not None or parts.password is not None:
        return f"{url!r} carries credentials; remove the user:password@ part"
    if parts.path not in ("", "/") or parts.query or parts.fragment or url.endswith(("?", "#")):
        return f"{url!r} has a path, query or fragment; give only scheme://host:port"
    if port == 0:
        return f"{url!r} has port 0; give the port the origin listens on"
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    """One origin server, by its base URL "http://host:port" (no path)."""

    url: str  # "http://host:port" or "https://host:port"; a single trailing "/" is allowed

    def __post_init__(self) -> None:
        problem = url_problem(self.url)
        if problem is not None:
            raise ValueError(problem)

    @property
    def base(self) -> str:
        """The URL without a trailing "/", ready to have a raw target appended."""
        return self.url.rstrip("/")

    @property
    def netloc(self) -> str:
        """The "host:port" of the URL: the Host that health checks send by default."""
        return urlsplit(self.url).netloc


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeoutConfig:
    """Per-phase limits for one fetch from one server, in seconds."""

    connect_s: float = 2.0  # to open the TCP (and TLS) connection
    # from the start of the fetch (waiting for a pooled connection and connecting included)
    # until the whole response head arrived
    first_byte_s: float = 10.0
    total_s: float = 60.0  # from the start of the fetch until the last body byte
    idle_s: float = 10.0  # longest gap between two body chunks

    def __post_init__(self) -> None:
        for name in ("connect_s", "first_byte_s", "total_s", "idle_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryConfig:
    """How often an idempotent request is tried, and the budget that caps retries pool-wide."""

    attempts: int = 2  # total tries for an idempotent request (1 = never retry)
    budget_ratio: float = 0.2  # retries may be at most this fraction of requests
    # retries allowed before requests have paid for them; the cap on saved-up retries
    budget_burst: float = 10.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be >= 1")
        if self.budget_ratio < 0 or self.budget_burst < 0:
            raise ValueError("budget_ratio and budget_burst must be >= 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class AdmissionConfig:
    """How many fetches a pool runs at once, and how many more may wait (origin/admission.py).

    A fetch holds its slot from before the first try until its response body ends; beyond
    `max_in_flight`, up to `max_queue` fetches wait at most `queue_timeout_s` for a slot, and
    the rest fail at once with PoolSaturated (the edge answers 503 with Retry-After).
    """

    max_in_flight: int = 256  # fetches (tries, retries and bodies included) at once
    max_queue: int = 1024  # fetches waiting for a slot; 0 = none wait
    queue_timeout_s: float = 5.0  # longest wait for a slot

    def __post_init__(self) -> None:
        if self.max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        if self.max_queue < 0:
            raise ValueError("max_queue must be >= 0")
        if not self.queue_timeout_s > 0:
            raise ValueError("queue_timeout_s must be > 0")


class Balance(StrEnum):
    """How a pool spreads requests over its available servers (origin/balance.py); the value is
    the name config.toml uses."""

    ROUND_ROBIN = "round_robin"  # the next eligible server after the last one picked
    LEAST_OUTSTANDING = "least_outstanding"  # the eligible server with the fewest requests in flight


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthCheckConfig:
    """Active checks: GET `path` on every server each `interval_s`; 2xx/3xx is a success."""

    path: str | None = None  # origin-form target, e.g. "/healthz"; None = no active checks
    host: str | None = None  # Host header of the probe; None = the server's "host:port"
    interval_s: float = 5.0  # a round of probes starts this often
    timeout_s: float = 2.0  # one probe, connect to end of body; at most interval_s
    healthy_after: int = 2  # consecutive successes that bring a down server back
    unhealthy_after: int = 3  # consecutive failures that take a server out

    def __post_init__(self) -> None:
        if self.path is not None and not self.path.startswith("/"):
            raise ValueError("path must start with '/'")
        if not 0 < self.timeout_s <= self.interval_s:
            raise ValueError("timeout_s must be > 0 and <= interval_s")
        if self.healthy_after < 1 or self.unhealthy_after < 1:
            raise ValueError("healthy_after and unhealthy_after must be >= 1")

    @property
    def enabled(self) -> bool:
        """Whether active checks run at all."""
        return self.path is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class PassiveHealthConfig:
    """Passive checks: real requests that fail in a row take a server out."""

    # consecutive failed tries (connect error, timeout, malformed head) that mark a server
    # down; 0 = passive checks off
    failures: int = 3
    # without active checks: how long a server marked down is skipped; with active checks it
    # stays down until `healthy_after` probes in a row succeed
    cooldown_s: float = 10.0
    on_5xx: bool = False  # a 5xx response head also counts as a failure

    def __post_init__(self) -> None:
        if self.failures < 0 or self.cooldown_s < 0:
            raise ValueError("failures and cooldown_s must be >= 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class OriginRewrite:
    """What a pool changes on the way to its servers and back (origin/rewrite.py applies it).

    For origins that do not answer to the client's view of the URL: an object-store bucket, a
    differently named host, an origin behind another CDN. It applies to every request sent to
    the pool's servers, health probes included; the cache key stays the client's view.
    """

    host: str | None = None  # the Host sent; None = the client's Host
    # SNI and the name the certificate must carry (https servers); None = `host` when set, else
    # the server URL's host name
    tls_server_name: str | None = None
    strip_path_prefix: str | None = None  # removed from the path when it starts with it (at a "/")
    add_path_prefix: str | None = None  # then put in front of the path
    # set on every request, replacing what the client sent under those names; values may be
    # secrets, so repr never shows them
    request_headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    remove_response_headers: frozenset[str] = frozenset()  # folded names dropped before storing
    response_headers: tuple[tuple[str, str], ...] = ()  # then set, replacing the origin's

    def __post_init__(self) -> None:
        for name in ("strip_path_prefix", "add_path_prefix"):
            value = getattr(self, name)
            if value is not None and (not value.startswith("/") or value.endswith("/") or "?" in value):
                raise ValueError(f'{name} must start with "/", not end with "/" and have no "?"')

    @property
    def server_name(self) -> str | None:
        """The TLS server name to send instead of the URL's host, or None."""
        if self.tls_server_name is not None or self.host is None:
            return self.tls_server_name
        name, colon, port = self.host.rpartition(":")
        bare = name if colon and port.isdigit() and not self.host.endswith("]") else self.host
        return bare.strip("[]")


@dataclass(frozen=True, slots=True, kw_only=True)
class OriginTls:
    """How a pool checks its https servers' certificates (origin/tls.py builds the context)."""

    # check the chain and that the certificate names the server (the URL's host, or the
    # rewrite's TLS server name); False is an explicit, logged opt-out for a broken origin
    verify: bool = True
    ca_file: str | None = None  # PEM CAs trusted instead of the system store; None = the system's

    def __post_init__(self) -> None:
        if not self.verify and self.ca_file is not None:
            raise ValueError("ca_file has no effect when verify is off")


@dataclass(frozen=True, slots=True, kw_only=True)
class OriginPoolConfig:
    """A named group of interchangeable origin servers."""

    name: str
    servers: tuple[ServerConfig, ...]  # at least one
    balance: Balance = Balance.ROUND_ROBIN
    timeouts: TimeoutConfig = field(default_factory=TimeoutConfig)  # per fetch from one server
    retry: RetryConfig = field(default_factory=RetryConfig)
    forward_headers: tuple[str, ...] | None = None  # lower-case allowlist; None = transparent
    health: HealthCheckConfig = field(default_factory=HealthCheckConfig)
    passive: PassiveHealthConfig = field(default_factory=PassiveHealthConfig)
    # another pool's name: serves when every server here is down or refused the connection
    backup: str | None = None
    rewrite: OriginRewrite = field(default_factory=OriginRewrite)  # Host, SNI, path, headers
    admission: AdmissionConfig = field(default_factory=AdmissionConfig)  # fetches at once, queue
    tls: OriginTls = field(default_factory=OriginTls)  # certificate checks of https servers

    def __post_init__(self) -> None:
        if not self.servers:
            raise ValueError("a pool needs at least one server")
        if not isinstance(self.balance, Balance):
            raise ValueError(f"balance must be a Balance ({', '.join(Balance)}), got {self.balance!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteRule:
    """Requests whose host and path match go to `pool` (see origin.routes.Router for matching)."""

    # "*" (any host), "*.example.com" (any subdomain) or an exact host; lower-case, no port
    host: str = "*"
    path_prefix: str = "/"  # plain string prefix of the raw path; "/" matches every request
    pool: str  # name of an [origins.<name>] pool
