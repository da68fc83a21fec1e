"""A second tier behind a :class:`SessionStore`, for sessions shared between machines.

The store's C callbacks ask the tier on a local miss and hand it every session they
store; the tier must bound its own wait on ``get`` (the handshake waits for it) and
must not block on ``put``/``remove`` (queue the work). Whatever the tier does wrong
(an exception, a timeout, garbage) is a miss and a full handshake, never an error
in the TLS stack: exceptions are logged and counted here.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

from ._binding import ffi, lib

__all__ = ["RemoteTier", "attach_remote", "detach_remote", "remote_errors"]

log = logging.getLogger("tlsresume")


class RemoteTier(Protocol):
    """What a store's second tier provides. Times are epoch seconds."""

    def get(self, session_id: bytes) -> bytes | None:
        """The session's DER, or None. Must return within its own time bound."""

    def put(self, session_id: bytes, der: bytes, expires: float) -> None:
        """Keep the session until ``expires``. Must not block."""

    def remove(self, session_id: bytes) -> None:
        """Forget the session (a party that proved it holds the session's keys
        ended a connection of it with a fatal alert). Must not block."""


_errors = 0
_errors_lock = threading.Lock()


def remote_errors() -> int:
    """Exceptions raised by remote tiers in this process (each one was a miss)."""
    return _errors


def _failed(what: str, exc: BaseException) -> None:
    global _errors
    with _errors_lock:
        _errors += 1
    log.warning("tlsresume: remote session tier failed in %s: %s", what, exc)


def _on_error(exception: type[BaseException], exc_value: BaseException, traceback: Any) -> None:
    _failed("a callback", exc_value)


@ffi.def_extern(onerror=_on_error)  # type: ignore[untyped-decorator]
def tlsr_py_remote_get(handle: Any, id_ptr: Any, id_len: int, buf: Any, size: int) -> int:
    tier: RemoteTier = ffi.from_handle(handle)
    der = tier.get(bytes(ffi.buffer(id_ptr, id_len)))
    if not der or len(der) > size:
        return 0
    ffi.memmove(buf, der, len(der))
    return len(der)


@ffi.def_extern(onerror=_on_error)  # type: ignore[untyped-decorator]
def tlsr_py_remote_put(
    handle: Any, id_ptr: Any, id_len: int, der_ptr: Any, der_len: int, expires_ms: int
) -> None:
    tier: RemoteTier = ffi.from_handle(handle)
    tier.put(
        bytes(ffi.buffer(id_ptr, id_len)), bytes(ffi.buffer(der_ptr, der_len)), expires_ms / 1000
    )


@ffi.def_extern(onerror=_on_error)  # type: ignore[untyped-decorator]
def tlsr_py_remote_remove(handle: Any, id_ptr: Any, id_len: int) -> None:
    tier: RemoteTier = ffi.from_handle(handle)
    tier.remove(bytes(ffi.buffer(id_ptr, id_len)))


# C keeps a raw pointer to each attached tier's handle, and SSL contexts can keep a
# store alive after its Python object is gone: handles live here until detached.
_attached: dict[int, Any] = {}
# Handles of replaced tiers that a callback may still be inside (set_remote gave up
# waiting for it: a tier that does not bound its own wait). Freeing one would let
# that callback read a freed handle; each is kept until the store says no callback
# is left in any replaced tier (checked at every attach and detach).
_draining: dict[int, list[Any]] = {}


def attach_remote(store_handle: Any, tier: RemoteTier) -> None:
    """Make ``tier`` the second tier of the store behind ``store_handle``."""
    for method in ("get", "put", "remove"):
        if not callable(getattr(tier, method, None)):
            raise TypeError(f"a remote tier needs a {method}() method; {tier!r} has none")
    _publish(
        store_handle,
        ffi.new_handle(tier),
        lib.tlsr_py_remote_get,
        lib.tlsr_py_remote_put,
        lib.tlsr_py_remote_remove,
    )


def detach_remote(store_handle: Any) -> None:
    """Remove the store's second tier (in this process)."""
    _publish(store_handle, None, ffi.NULL, ffi.NULL, ffi.NULL)


def _publish(store_handle: Any, handle: Any, get: Any, put: Any, remove: Any) -> None:
    """Publish ``handle``'s tier (``None``: no tier) and release the replaced tier's
    handle only once no callback can be inside it."""
    from ._binding import check

    key = int(ffi.cast("uintptr_t", store_handle))
    rc = lib.tlsr_store_set_remote(
        store_handle, get, put, remove, ffi.NULL if handle is None else handle
    )
    if rc < 0 and rc != -lib.TLSR_E_BUSY:
        check(rc, "setting the remote session tier")  # nothing was published
    old = _attached.pop(key, None)
    if handle is not None:
        _attached[key] = handle
    waiting = _draining.setdefault(key, [])
    if old is not None:
        waiting.append(old)
    if rc == -lib.TLSR_E_BUSY:
        log.warning(
            "tlsresume: a replaced remote session tier was still inside a callback "
            "after 5 s (its get() does not bound its wait); keeping it alive until "
            "that callback returns"
        )
    if lib.tlsr_store_remote_draining(store_handle) == 0:
        del _draining[key]  # no callback left in any replaced tier: free them
    elif rc != -lib.TLSR_E_BUSY:
        log.debug("tlsresume: %d replaced remote tier(s) still draining", len(waiting))
