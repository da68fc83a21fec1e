"""Small TLS pieces shared by the library and the tools; no C core, so the tools
that run without it (``serve --no-share``, ``check``) can use them."""

from __future__ import annotations

import ssl

__all__ = ["TLS_VERSIONS", "send_close_notify"]

#: The protocol versions a ``--tls``/``tls_version`` option names, by their short name.
TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def send_close_notify(tls: ssl.SSLSocket) -> None:
    """Write our close_notify alert now, without waiting for the peer's.

    A non-blocking ``unwrap()`` writes the alert in its first ``SSL_shutdown`` and
    gives up at once instead of waiting for the peer's reply, which many clients
    never send. That alert is what keeps the session resumable: an OpenSSL client
    (curl) drops a TLS 1.2 session whose connection ended without one, and OpenSSL's
    own server cache evicts it (docs/design.md, "Unclean close evicts"). Never raises;
    a socket whose TLS layer is already gone, or whose handshake never finished, is
    left alone.
    """
    try:
        timeout = tls.gettimeout()
    except OSError:
        return
    try:
        tls.setblocking(False)
        try:
            tls.unwrap()
        finally:
            tls.settimeout(timeout)
    except (OSError, ValueError):  # SSLWantReadError is the normal outcome
        pass
