"""The server's TLS context: the standard ``ssl`` module, TLS 1.2 or newer."""

from __future__ import annotations

import ssl


class TLSError(Exception):
    """The certificate or key cannot be used; the message is one line."""


def server_context(cert: str, key: str) -> ssl.SSLContext:
    """Modern defaults (Python's own: forward-secret AEAD ciphers), TLS >= 1.2."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    for path in (cert, key):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise TLSError(f"cannot read {path}: {exc.strerror}") from None
    try:
        ctx.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or str(exc)
        raise TLSError(f"cannot use --tls-cert {cert} with --tls-key {key}: {reason}") from None
    return ctx
