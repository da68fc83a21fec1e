"""Join a tlsresume server to a fleet of nginx or HAProxy servers sharing its keys.

Reading the same ticket key file is not enough for servers to resume each other's
sessions: OpenSSL stores the server's session ID context (sid_ctx) inside every
session, tickets included, and resumes a session only on a connection with the
same sid_ctx. Each server sets its own: CPython ``b"Python"``, tlsresume a digest of
the context's policy, HAProxy 2.6 ``b"haproxy"``, nginx a SHA-1 digest of its
configuration. Give the fleet's value to :func:`tlsresume.install` as
``session_id_context``::

    ring = tlsresume.TicketKeyRing.from_file("/etc/haproxy/ticket.keys", "haproxy")
    tlsresume.install(ctx, ring, session_id_context=tlsresume.interop.HAPROXY_SESSION_ID_CONTEXT)

    ring = tlsresume.TicketKeyRing.from_file("/etc/nginx/ticket.key", "nginx")
    sid = tlsresume.interop.nginx_session_id_context(["/etc/nginx/cert.pem"])
    tlsresume.install(ctx, ring, session_id_context=sid)

A fixed value is a deliberate choice: every server with the same keys and value
resumes every session, whatever client verification it does (see ``install``).
"""

from __future__ import annotations

import hashlib
import os
import re
import ssl
from collections.abc import Sequence

__all__ = ["HAPROXY_SESSION_ID_CONTEXT", "nginx_session_id_context"]

#: The session ID context HAProxy 2.6 sets on its SSL contexts.
HAPROXY_SESSION_ID_CONTEXT = b"haproxy"

#: The string nginx's modules digest first (``ngx_http_ssl_sess_id_ctx``, and the
#: stream module's).
_NGINX_MODULES = {"http": b"HTTP", "stream": b"STREAM"}

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----\s*(.+?)\s*-----END CERTIFICATE-----", re.S)


def _leaf_der(path: str | os.PathLike[str]) -> bytes:
    """The first certificate of a PEM file, DER (nginx's leaf: the rest is chain)."""
    with open(path, "rb") as f:
        data = f.read()
    m = _PEM_CERT.search(data)
    if m is None:
        raise ValueError(
            f"{os.fspath(path)!r} holds no PEM certificate (nginx's "
            "ssl_certificate file, leaf first)"
        )
    return ssl.PEM_cert_to_DER_cert(m.group(0).decode("ascii"))


def nginx_session_id_context(
    certificates: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    module: str = "http",
) -> bytes:
    """The session ID context nginx gives a ``server`` block, so that a tlsresume
    server reading the same ``ssl_session_ticket_key`` file resumes its tickets and
    it resumes ours.

    nginx (``ngx_ssl_session_id_context``, the same from 1.22 to today) sets SHA-1
    over: the module's name (``"HTTP"``), the SHA-1 of each certificate loaded by
    ``ssl_certificate`` (the first certificate in each file, in configuration
    order), and the SHA-1 of each CA name sent for client verification. This
    reproduces it for certificates given as static file paths and no
    ``ssl_verify_client``/``ssl_client_certificate``: with client verification the
    CA names change the value and this one will not match (no resumption across,
    never a failed handshake). Certificates named with variables are digested as
    the configuration strings: not covered. Tested against nginx 1.22 with one
    ``ssl_certificate``.

    Args:
        certificates: the ``ssl_certificate`` file(s) of the ``server`` block, in
            configuration order.
        module: ``"http"`` (default) or ``"stream"``.

    Returns:
        20 bytes, for ``tlsresume.install(..., session_id_context=...)``.

    Raises:
        ValueError: unknown module, no certificate, or a file without a PEM
            certificate.
        OSError: a file cannot be read.
    """
    if module not in _NGINX_MODULES:
        raise ValueError(f"module must be 'http' or 'stream' (nginx's), not {module!r}")
    if isinstance(certificates, (str, os.PathLike)):
        certificates = [certificates]
    if not certificates:
        raise ValueError("give the server block's ssl_certificate file(s)")
    md = hashlib.sha1(_NGINX_MODULES[module])
    for path in certificates:
        md.update(hashlib.sha1(_leaf_der(path)).digest())
    return md.digest()
