"""The one-line server API: ``tlsresume.install(ctx, ring)``."""

from __future__ import annotations

import ssl
from typing import Any, TypeVar

from . import _binding
from ._binding import lib
from .errors import ContextError
from .keyring import StaticTicketKey, TicketKeyRing
from .keys import TicketKey
from .store import SessionStore

__all__ = ["install", "uninstall", "installed_ring", "set_session_timeout", "session_timeout"]

Ctx = TypeVar("Ctx", bound=ssl.SSLContext)


def _server_pointer(ctx: Any) -> Any:
    if not isinstance(ctx, ssl.SSLContext) and not hasattr(ctx, "_ctx"):
        raise TypeError(
            f"install() needs an ssl.SSLContext, got {type(ctx).__module__}."
            f"{type(ctx).__qualname__}"
        )
    if getattr(ctx, "protocol", None) == ssl.PROTOCOL_TLS_CLIENT:
        raise ContextError(
            "install() needs a server-side SSLContext, but this one was made for clients "
            "(PROTOCOL_TLS_CLIENT, e.g. ssl.create_default_context() without "
            "Purpose.CLIENT_AUTH); use ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER) or "
            "ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)"
        )
    return _binding.ssl_ctx_pointer(ctx)


def install(
    ctx: Ctx,
    keys: TicketKeyRing | StaticTicketKey | TicketKey | str | None = None,
    *,
    session_cache: SessionStore | int | str | None = None,
) -> Ctx:
    """Make ``ctx`` resume sessions started by any worker.

    Args:
        ctx: a server-side ``ssl.SSLContext`` (plain, from
            ``create_default_context(Purpose.CLIENT_AUTH)``, or a subclass).
        keys: session-ticket keys: a :class:`TicketKeyRing` (shared, rotating); the
            name of a ring to attach to; or a :class:`StaticTicketKey` / 80-byte
            :class:`TicketKey` installed through OpenSSL's own ticket path.
        session_cache: a :class:`SessionStore` shared by the workers (made before
            they fork, or opened by name), or a size (``"10M"``) for a store private
            to this process, which still keeps sessions alive across connections
            closed without close_notify (OpenSSL's own cache drops them).

    Returns:
        ``ctx`` itself, so ``ctx = install(ssl.SSLContext(...), ring)`` reads well.

    Raises:
        TypeError: ``ctx`` is not an SSLContext or an argument has the wrong type.
        ContextError: a client-side context, or keys given while tickets are off.
        RingClosedError: the ring or store was closed.
    """
    pointer = _server_pointer(ctx)
    if keys is None and session_cache is None:
        raise TypeError("install() needs ticket keys, a session_cache, or both")
    if session_cache is not None:
        _install_store(pointer, session_cache)
    if keys is None:
        return ctx
    if ctx.options & ssl.OP_NO_TICKET:
        raise ContextError(
            "session tickets are turned off on this context (ssl.OP_NO_TICKET), so ticket "
            "keys would never be used; clear the option (ctx.options &= ~ssl.OP_NO_TICKET)"
        )
    if isinstance(keys, str):
        ring = TicketKeyRing.attach(keys)
        try:
            _binding.check(lib.tlsr_ctx_use_ring(pointer, ring._handle()), "installing ring")
        finally:
            ring.close()  # the context holds its own reference
    elif isinstance(keys, TicketKeyRing):
        _binding.check(lib.tlsr_ctx_use_ring(pointer, keys._handle()), "installing ring")
    elif isinstance(keys, (StaticTicketKey, TicketKey)):
        static = keys if isinstance(keys, StaticTicketKey) else StaticTicketKey(keys)
        _binding.check(lib.tlsr_ctx_use_static_key(pointer, static.key.to_bytes()),
                       "installing static ticket key")
    else:
        raise TypeError(
            "install() takes a TicketKeyRing, a ring name, a StaticTicketKey or an 80-byte "
            f"TicketKey, not {type(keys).__name__}"
        )
    return ctx


def _install_store(pointer: Any, session_cache: SessionStore | int | str) -> None:
    if isinstance(session_cache, SessionStore):
        _binding.check(lib.tlsr_ctx_use_store(pointer, session_cache._handle()),
                       "installing session store")
    elif isinstance(session_cache, (int, str)) and not isinstance(session_cache, bool):
        private = SessionStore(session_cache)
        try:
            _binding.check(lib.tlsr_ctx_use_store(pointer, private._handle()),
                           "installing session store")
        finally:
            private.close()  # the context keeps its own reference
    else:
        raise TypeError(
            "session_cache takes a SessionStore or a size like '10M', not "
            f"{type(session_cache).__name__}"
        )


def uninstall(ctx: ssl.SSLContext) -> None:
    """Remove tlsresume's ticket keys from ``ctx``; OpenSSL's own keys take over."""
    _binding.check(lib.tlsr_ctx_reset(_server_pointer(ctx)), "uninstalling")


def installed_ring(ctx: ssl.SSLContext) -> bool:
    """Whether ``ctx`` carries a tlsresume key ring."""
    return bool(lib.tlsr_ctx_has_ring(_server_pointer(ctx)))


def set_session_timeout(ctx: ssl.SSLContext, seconds: int) -> None:
    """Set how long sessions made on ``ctx`` stay resumable (OpenSSL's
    ``SSL_CTX_set_timeout``; CPython fixes it at 7200 s and has no setter).

    It bounds session-ID resumption, stateful tickets, and ticket lifetimes (the
    hint sent to clients); a ring's acceptance window should cover it.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        raise TypeError(f"seconds must be an int, not {type(seconds).__name__}")
    if not 1 <= seconds <= 7 * 86400:
        raise ValueError(f"session timeout must be 1 s to 7 days (RFC 8446), got {seconds}")
    lib.tlsr_ctx_set_timeout(_binding.ssl_ctx_pointer(ctx), seconds)


def session_timeout(ctx: ssl.SSLContext) -> int:
    """The session lifetime of ``ctx`` in seconds."""
    return int(lib.tlsr_ctx_get_timeout(_binding.ssl_ctx_pointer(ctx)))
