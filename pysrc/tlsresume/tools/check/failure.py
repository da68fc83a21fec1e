"""Why no connection of a check got through, said in one line with the fix.

When every connection fails the same way (a certificate the client does not trust,
a port that does not speak TLS, nothing listening), a table of zeros tells the
operator nothing; :func:`explain` turns the first failure into a sentence.
"""

from __future__ import annotations

import socket
import ssl

__all__ = ["explain", "first_reply"]

# OpenSSL's reasons when the bytes that came back are not a TLS record: 1.1/3.0 say
# WRONG_VERSION_NUMBER, 3.2+ say "record layer failure"; a long first line of text
# can also read as an oversized record.
_NOT_TLS_REASONS = frozenset(
    {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST"}
)


def first_reply(host: str, port: int, sni: str, timeout: float) -> bytes:
    """The first bytes ``host:port`` answers to a TLS ClientHello (empty if it closed).

    The handshake runs over memory buffers, so what the server sent is seen as it
    came, before OpenSSL parses it.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    with socket.create_connection((host, port), timeout=timeout) as raw:
        raw.sendall(outgoing.read())
        try:
            return raw.recv(64)
        except OSError:
            return b""


def _target(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def explain(exc: BaseException, host: str, port: int, sni: str, timeout: float) -> str:
    """One line: what went wrong reaching ``host:port``, and what to do about it."""
    where = _target(host, port)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"certificate verification failed for {where}: {exc.verify_message}; give "
            "--cafile CA.pem with the CA that issued the server's certificate, or "
            "--insecure (-k) to skip verification (test servers only)"
        )
    if isinstance(exc, ssl.SSLError) and exc.reason in _NOT_TLS_REASONS:
        try:
            reply = first_reply(host, port, sni, timeout)
        except OSError:
            reply = b""
        if reply.startswith(b"HTTP/"):
            answered = "it answered plain HTTP, not a TLS handshake"
        elif reply and all(32 <= b < 127 or b in b"\r\n\t" for b in reply):
            text = reply[:24].decode("ascii").split("\n")[0].strip()
            answered = f"it answered plain text ({text!r}: plain HTTP?), not a TLS handshake"
        elif reply:
            answered = f"it answered bytes that are not a TLS handshake ({reply[:8].hex()}...)"
        else:
            answered = "it did not answer with a TLS handshake"
        return (
            f"{where} does not speak TLS: {answered}; check the port (the server's "
            "HTTPS port, not its plain HTTP one)"
        )
    if isinstance(exc, ConnectionRefusedError):
        return f"nothing listens on {where} (connection refused); check the host and port"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return (
            f"{where} did not answer within {timeout:g} s; check the host and port, or "
            "give a longer --timeout"
        )
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve {host}: {exc.strerror or exc}; check the host name"
    if isinstance(exc, ssl.SSLError):
        return (
            f"the TLS handshake with {where} failed: {exc.reason or exc}; try --tls1.2 or "
            "--tls1.3 if the server supports only one"
        )
    return f"every connection to {where} failed: {type(exc).__name__}: {exc}"
