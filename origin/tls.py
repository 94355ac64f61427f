"""The TLS client context of a pool's https servers: verified by default.

`client_context(pool)` gives one SSLContext per pool, shared by its servers' clients (and so
by their health probes): the system's trusted CAs, or only the PEM CAs of `tls.ca_file`,
checking the chain and that the certificate names the server (the URL's host, or the
rewrite's TLS server name, origin/config.py). TLS 1.2 is the oldest version offered.
`verify = False` turns both checks off; it is logged as a warning each time the pool is built
(at start and on a reload), since anyone on the network path can then pose as the origin.
A pool with only http:// servers gets None.
"""

from __future__ import annotations

import logging
import ssl

from origin.config import OriginPoolConfig

__all__ = ["client_context"]

log = logging.getLogger("origin.tls")


def client_context(pool: OriginPoolConfig) -> ssl.SSLContext | None:
    """The pool's TLS context, or None when none of its servers is https. Raises ssl.SSLError/OSError
    when `ca_file` holds no usable certificate (edge/config/origin_tls.py checks that first)."""
    if not any(server.base.startswith("https:") for server in pool.servers):
        return None
    tls = pool.tls
    if not tls.verify:
        log.warning(
            "origins.%s: tls_verify = false: the https servers' certificates are not checked, so anyone "
            "on the network path can pose as the origin; set tls_ca_file instead",
            pool.name,
        )
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=tls.ca_file)  # None: the system store
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx
