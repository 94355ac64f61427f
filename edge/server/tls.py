"""Server-side TLS for the public listener: one SSLContext per certificate, picked by SNI.

`ServerTls(config)` loads every `[[tls.certificates]]` into its own context (TLS 1.2 or
newer, ALPN `http/1.1`) and returns the first as the listener's context; its SNI callback
swaps in the context whose host names match the name the client sent (an exact name first,
then a `*.domain` wildcard, one label deep), and keeps the default otherwise. `reload`
builds a complete new set before it swaps, so a bad file leaves the running certificates in
place (for a SIGHUP reload). A context already given to a connection is never changed:
OpenSSL copies the certificate into each connection at accept, so connections open at a
reload keep theirs and only new handshakes see the new files.

Under TLS the kernel cannot send file bytes itself: the writer detects the TLS transport and
reads disk objects in 256 KiB pieces on the executor, writing them through the TLS
transport under its flow control (edge.server.writer.Writer.sendfile).
"""

from __future__ import annotations

import logging
import ssl

from edge.config.tls import TlsCertificate, TlsConfig

__all__ = ["ServerTls", "TlsError", "match_certificate", "reload_certificates"]

log = logging.getLogger("edge.server.tls")


class TlsError(ValueError):
    """A certificate or key cannot be used; the message names the config entry and the file."""


def match_certificate(name: str, exact: dict[str, int], wildcard: dict[str, int]) -> int | None:
    """The index of the certificate serving `name`: exact names win over `*.domain` ones — pure."""
    name = name.lower().rstrip(".")
    if name in exact:
        return exact[name]
    _, dot, parent = name.partition(".")
    return wildcard.get(parent) if dot else None


def _context(cert: TlsCertificate, index: int, min_version: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3 if min_version == "1.3" else ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        ctx.load_cert_chain(cert.cert_file, cert.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(
            f"tls.certificates[{index}]: cannot use {cert.cert_file} with {cert.key_file} "
            f"({getattr(exc, 'strerror', None) or exc}); give a PEM certificate chain and its unencrypted key"
        ) from exc
    return ctx


class ServerTls:
    """The listener's TLS contexts and the SNI choice between them."""

    def __init__(self, config: TlsConfig) -> None:
        self.default = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # replaced by the first certificate
        self._contexts: list[ssl.SSLContext] = []
        self._exact: dict[str, int] = {}
        self._wildcard: dict[str, int] = {}  # parent domain → index, for "*.parent"
        self.reload(config)

    def reload(self, config: TlsConfig) -> None:
        """Loads every certificate; raises TlsError (keeping the current set) when one is unusable."""
        if not config.certificates:
            raise TlsError("tls.certificates: none configured; add a [[tls.certificates]] table")
        contexts = [_context(c, i, config.min_version) for i, c in enumerate(config.certificates)]
        exact: dict[str, int] = {}
        wildcard: dict[str, int] = {}
        for index, cert in enumerate(config.certificates):
            for host in cert.hosts:
                if host.startswith("*."):
                    wildcard.setdefault(host[2:], index)
                else:
                    exact.setdefault(host, index)
        if self._contexts:  # a reload: the listener holds self.default; give it the new first certificate
            first = config.certificates[0]
            try:  # just loaded above, so only a file replaced in between can fail here
                self.default.load_cert_chain(first.cert_file, first.key_file)
            except (OSError, ssl.SSLError) as exc:
                raise TlsError(
                    f"tls.certificates[0]: {first.cert_file} changed while it was read ({exc})"
                ) from exc
            self.default.minimum_version = contexts[0].minimum_version
            contexts[0] = self.default
        else:
            self.default = contexts[0]
        self._contexts, self._exact, self._wildcard = contexts, exact, wildcard
        self.default.sni_callback = self._pick

    def _pick(self, sock: ssl.SSLObject | ssl.SSLSocket, name: str | None, _: ssl.SSLContext) -> None:
        """SNI callback: switch to the certificate for `name` (the default keeps the rest)."""
        if name is None:
            return
        index = match_certificate(name, self._exact, self._wildcard)
        if index is not None and index < len(self._contexts):
            sock.context = self._contexts[index]


def reload_certificates(tls: ServerTls, config: TlsConfig) -> bool:
    """SIGHUP: reads every certificate file again (renewed in place or renamed); False if kept.

    Called on every reload, even when `[tls]` did not change: a renewal tool (certbot,
    cert-manager) rewrites the files under the same names and then sends SIGHUP.
    """
    try:
        tls.reload(config)
    except TlsError as exc:
        log.error("SIGHUP: TLS certificates not reloaded, the running ones stay: %s", exc)
        return False
    log.info(
        "SIGHUP: TLS certificates reloaded (%d); new handshakes use them, open connections keep theirs",
        len(config.certificates),
    )
    return True
