"""What the check's probes share: the client context a check uses and reading one
response (bounded).
"""

from __future__ import annotations

import ssl

from tlsresume._tls import TLS_VERSIONS

_MAX_RESPONSE = 1 << 20  # we only need the headers; never buffer an endless stream


def _client_context(tls_version: str | None, cafile: str | None, insecure: bool) -> ssl.SSLContext:
    """A context without the cache, for the stats requests (they must offer nothing)."""
    if insecure:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=cafile)
    if tls_version is not None:
        ctx.minimum_version = ctx.maximum_version = TLS_VERSIONS[tls_version]
    return ctx


def _read_response(tls: ssl.SSLSocket) -> bytes:
    """Read until the server closes (it sends ``Connection: close``)."""
    data = bytearray()
    while len(data) < _MAX_RESPONSE:
        try:
            chunk = tls.recv(65536)
        except ssl.SSLZeroReturnError:
            break
        if not chunk:
            break
        data += chunk
    return bytes(data)
