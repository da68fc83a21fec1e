"""Looking into sessions a client holds: the ticket, and the server key name in it."""

from __future__ import annotations

import ssl

from . import _binding
from ._binding import ffi, lib

__all__ = ["session_ticket", "ticket_key_name"]


def session_ticket(session: ssl.SSLSession) -> bytes | None:
    """The raw ticket a client holds in ``session`` (``None`` if it has none).

    OpenSSL-style tickets (OpenSSL, nginx, HAProxy, tlsresume) start with the
    16-byte name of the server key that made them.
    """
    pointer = _binding.ssl_session_pointer(session)
    size = lib.tlsr_session_ticket(pointer, ffi.NULL, 0)
    if size == 0:
        return None
    buf = ffi.new("uint8_t[]", size)
    lib.tlsr_session_ticket(pointer, buf, size)
    return bytes(ffi.buffer(buf, size))


def ticket_key_name(session: ssl.SSLSession) -> bytes | None:
    """The first 16 bytes of the session's ticket: the server's key name."""
    ticket = session_ticket(session)
    return None if ticket is None or len(ticket) < 16 else ticket[:16]
