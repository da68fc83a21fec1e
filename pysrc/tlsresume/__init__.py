"""tlsresume: TLS session resumption for Python across processes and machines.

Server side::

    ring = tlsresume.TicketKeyRing()          # before the workers fork (keys + a 10M store)
    ...
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)   # in each worker
    ctx.load_cert_chain("cert.pem", "key.pem")
    tlsresume.install(ctx, ring)

The C core is bound to the OpenSSL that Python's ``ssl`` module loaded the first
time a name that needs it is used (``tlsresume.install``, ``TicketKeyRing``, ...;
PEP 562). On a Python where that is impossible, using such a name raises
:class:`OpenSSLUnavailableError` (also an ``ImportError``, so
``from tlsresume import TicketKeyRing`` inside ``try/except ImportError`` still
works) explaining why; ``import tlsresume`` itself, the errors, :class:`TicketKey`,
:mod:`tlsresume.keyfile` and the ``tlsresume`` command's ``keygen`` and ``--help``
work without the core. The client session cache (``ClientSessionCache``,
``client_context``, ``ClientContext``) falls back to a pure-Python path there,
with the same API and safety rule but no sharing between contexts and no
persistence (:mod:`tlsresume.pyclient`).
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from .errors import (
    ContextError,
    CoreError,
    KeyFileError,
    LayoutError,
    OpenSSLUnavailableError,
    PolicyConflictError,
    RingClosedError,
    SharedMemoryError,
    StateError,
    TLSResumeError,
    TLSResumeWarning,
)
from .keys import TicketKey

if TYPE_CHECKING:
    from .client import (
        CachedSession,
        ClientContext,
        ClientSessionCache,
        client_context,
        generate_cache_key,
        read_cache_key,
        session_port,
    )
    from .context import (
        install,
        installed_ring,
        session_id_context,
        session_timeout,
        set_session_timeout,
        uninstall,
    )
    from .inspect import session_ticket, ticket_key_name
    from .keyring import (
        DEFAULT_ACCEPTANCE_WINDOW,
        DEFAULT_ROTATION_PERIOD,
        KeyRecord,
        KeyStatus,
        StaticTicketKey,
        TicketKeyRing,
    )
    from .store import DEFAULT_STORE_SIZE, SessionStore, parse_size

__version__ = "0.1.0"

#: The names that need the C core, and the module each comes from.
_CORE_NAMES = {
    **dict.fromkeys(
        (
            "DEFAULT_ACCEPTANCE_WINDOW",
            "DEFAULT_ROTATION_PERIOD",
            "KeyRecord",
            "KeyStatus",
            "StaticTicketKey",
            "TicketKeyRing",
        ),
        "keyring",
    ),
    **dict.fromkeys(
        (
            "install",
            "installed_ring",
            "session_id_context",
            "session_timeout",
            "set_session_timeout",
            "uninstall",
        ),
        "context",
    ),
    **dict.fromkeys(("DEFAULT_STORE_SIZE", "SessionStore", "parse_size"), "store"),
    **dict.fromkeys(("session_ticket", "ticket_key_name"), "inspect"),
    **dict.fromkeys(
        (
            "CachedSession",
            "ClientContext",
            "ClientSessionCache",
            "client_context",
            "generate_cache_key",
            "read_cache_key",
            "session_port",
        ),
        "client",
    ),
}


def __getattr__(name: str) -> Any:
    """Load a core-backed name on first use (PEP 562).

    Raises:
        OpenSSLUnavailableError: the C core cannot be bound (each use says why).
        AttributeError: no such name.
    """
    module = _CORE_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'tlsresume' has no attribute {name!r}")
    try:
        found = importlib.import_module(f".{module}", __name__)
    except OpenSSLUnavailableError as exc:
        if module != "client":
            raise
        # The client cache has a pure-Python path on the public ssl API (no
        # sharing between contexts, no persistence): see tlsresume.pyclient.
        found = importlib.import_module(".pyclient", __name__)
        logging.getLogger("tlsresume").info(
            "tlsresume: the C core is unavailable (%s); the client session cache runs "
            "in pure Python (tlsresume.pyclient)",
            exc,
        )
    value = getattr(found, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_CORE_NAMES})


__all__ = [
    "TLSResumeError",
    "OpenSSLUnavailableError",
    "KeyFileError",
    "RingClosedError",
    "SharedMemoryError",
    "ContextError",
    "CoreError",
    "PolicyConflictError",
    "StateError",
    "LayoutError",
    "TLSResumeWarning",
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
    "session_id_context",
    "session_ticket",
    "ticket_key_name",
    # Client side: the session cache and the drop-in client context.
    "ClientSessionCache",
    "ClientContext",
    "CachedSession",
    "client_context",
    "session_port",
    "generate_cache_key",
    "read_cache_key",
]
