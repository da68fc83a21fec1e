"""tlsresume: TLS session resumption for Python across processes and machines.

Server side::

    ring = tlsresume.TicketKeyRing()          # before the workers fork
    ...
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)   # in each worker
    ctx.load_cert_chain("cert.pem", "key.pem")
    tlsresume.install(ctx, ring)

Importing tlsresume binds its C core to the OpenSSL that Python's ``ssl`` module
loaded; on a Python where that is impossible it raises
:class:`OpenSSLUnavailableError` (also an ``ImportError``) explaining why.
"""

from __future__ import annotations

from .errors import (
    ContextError,
    CoreError,
    KeyFileError,
    OpenSSLUnavailableError,
    RingClosedError,
    SharedMemoryError,
    TLSResumeError,
)
from .inspect import session_ticket, ticket_key_name
from .keyring import (  # noqa: I001  (binds the core: after the pure modules)
    DEFAULT_ACCEPTANCE_WINDOW,
    DEFAULT_ROTATION_PERIOD,
    KeyRecord,
    KeyStatus,
    StaticTicketKey,
    TicketKeyRing,
)
from .keys import TicketKey
from .server import install, installed_ring, session_timeout, set_session_timeout, uninstall
from .store import DEFAULT_STORE_SIZE, SessionStore, parse_size

__version__ = "0.1.0"

__all__ = [
    "TLSResumeError",
    "OpenSSLUnavailableError",
    "KeyFileError",
    "RingClosedError",
    "SharedMemoryError",
    "ContextError",
    "CoreError",
    "TicketKey",
    "TicketKeyRing",
    "StaticTicketKey",
    "KeyStatus",
    "KeyRecord",
    "DEFAULT_ROTATION_PERIOD",
    "DEFAULT_ACCEPTANCE_WINDOW",
    "SessionStore",
    "DEFAULT_STORE_SIZE",
    "parse_size",
    "install",
    "uninstall",
    "set_session_timeout",
    "session_timeout",
    "installed_ring",
    "session_ticket",
    "ticket_key_name",
]

# Client side: the session cache and the drop-in client context.
from .client import (  # noqa: E402
    CachedSession,
    ClientContext,
    ClientSessionCache,
    client_context,
    generate_cache_key,
    read_cache_key,
    session_port,
)

__all__ += [
    "ClientSessionCache",
    "ClientContext",
    "CachedSession",
    "client_context",
    "session_port",
    "generate_cache_key",
    "read_cache_key",
]
