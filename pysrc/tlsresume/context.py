"""The one-line server API, ``tlsresume.install(ctx, ring)``, and the other functions
that act on a server ``ssl.SSLContext`` (session timeout, session ID context).

Named for what it acts on, the context, so that it is not confused with the
``tlsresume serve`` tool (:mod:`tlsresume.tools.serve`); ``tlsresume.server`` is its
deprecated old name."""

from __future__ import annotations

import ssl
import threading
import warnings
import weakref
from typing import Any, TypeVar

from . import _binding
from ._binding import ffi, lib
from .errors import ContextError, PolicyConflictError, TLSResumeWarning
from .keyring import StaticTicketKey, TicketKeyRing
from .keys import TicketKey
from .store import SessionStore

__all__ = [
    "install",
    "uninstall",
    "installed_ring",
    "set_session_timeout",
    "session_timeout",
    "session_id_context",
]

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
    session_cache: SessionStore | int | str | bool | None = None,
    service: str | None = None,
    session_id_context: bytes | None = None,
) -> Ctx:
    """Make ``ctx`` resume sessions started by any worker.

    Every session is bound to the policy that admitted it: each connection's
    session ID context (which OpenSSL compares before it resumes a session) is a
    digest of the client-verification settings and trusted client CAs of ``ctx``,
    its certificate chain, ``service`` and the server name the client asked for.
    A session made on a context that admits other clients, serves another
    certificate or another service never resumes here: it gets a full handshake.

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
            ``None`` (default): the ring's own store
            (:attr:`TicketKeyRing.session_store`, made beside the ring and shared
            exactly as the ring is), so every client resumes on every worker, those
            that resume by session ID (curl over TLS 1.2) included; no store for a
            static key. ``False``: no store (tickets only).
        service: a name that keeps this service's sessions apart from every other
            service sharing the same keys or store, even one configured alike.
        session_id_context: 1-32 bytes used verbatim instead of the derived value,
            to resume sessions with servers that are not tlsresume (``b"haproxy"``
            for HAProxy). A deliberate choice: every server holding the same keys
            and value then resumes each other's sessions whatever their client
            verification, so give it only to contexts that admit the same clients
            (tlsresume refuses to join two such contexts of this process that do not,
            and warns when the context verifies clients).

    Returns:
        ``ctx`` itself, so ``ctx = install(ssl.SSLContext(...), ring)`` reads well.

    Raises:
        TypeError: ``ctx`` is not an SSLContext or an argument has the wrong type.
        ContextError: a client-side context, or keys given while tickets are off.
        PolicyConflictError: ``session_id_context`` is already used by a context of
            this process that admits different clients.
        RingClosedError: the ring or store was closed.
    """
    pointer = _server_pointer(ctx)
    if keys is None and (session_cache is None or session_cache is False):
        raise TypeError("install() needs ticket keys, a session_cache, or both")
    if session_cache is True:
        raise TypeError(
            "session_cache takes a SessionStore, a size like '10M', None (the ring's "
            "own store) or False, not True"
        )
    _bind_sessions(ctx, pointer, service, session_id_context)
    if session_cache is not None and session_cache is not False:
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
            _use_ring(pointer, ring, session_cache)
        finally:
            ring.close()  # the context holds its own references
    elif isinstance(keys, TicketKeyRing):
        _use_ring(pointer, keys, session_cache)
    elif isinstance(keys, (StaticTicketKey, TicketKey)):
        static = keys if isinstance(keys, StaticTicketKey) else StaticTicketKey(keys)
        _binding.check(
            lib.tlsr_ctx_use_static_key(pointer, static.key.to_bytes()),
            "installing static ticket key",
        )
    else:
        raise TypeError(
            "install() takes a TicketKeyRing, a ring name, a StaticTicketKey or an 80-byte "
            f"TicketKey, not {type(keys).__name__}"
        )
    return ctx


# Explicit session ID contexts in use in this process: value -> (admission digest,
# the contexts using it). Lets install() refuse to join contexts that admit
# different clients under one value.
_explicit: dict[bytes, tuple[bytes, weakref.WeakSet[ssl.SSLContext]]] = {}
_explicit_lock = threading.Lock()


def _admission_digest(pointer: Any) -> bytes:
    out = ffi.new("uint8_t[32]")
    _binding.check(
        lib.tlsr_ctx_trust_digest(pointer, lib.TLSR_DIGEST_STORE_IF_VERIFYING, out),
        "reading the context's client-verification policy",
    )
    return bytes(out)


def _bind_sessions(
    ctx: ssl.SSLContext, pointer: Any, service: str | None, explicit: bytes | None
) -> None:
    if service is not None and explicit is not None:
        raise TypeError(
            "give service= or session_id_context=, not both: an explicit "
            "session ID context is used verbatim"
        )
    if explicit is None:
        if service is not None and not isinstance(service, str):
            raise TypeError(f"service must be a str, not {type(service).__name__}")
        data = (service or "").encode()
        if len(data) > lib.TLSR_SID_MAX:
            raise ValueError(f"service name is {len(data)} bytes; at most {lib.TLSR_SID_MAX} fit")
        _binding.check(
            lib.tlsr_ctx_set_sid(pointer, lib.TLSR_SID_DERIVED, data, len(data)),
            "binding sessions to the context's policy",
        )
        return
    if not isinstance(explicit, (bytes, bytearray, memoryview)):
        raise TypeError(f"session_id_context must be bytes, not {type(explicit).__name__}")
    value = bytes(explicit)
    if not 1 <= len(value) <= 32:
        raise ValueError(
            f"session_id_context must be 1-32 bytes (OpenSSL's limit), got {len(value)}"
        )
    digest = _admission_digest(pointer)
    with _explicit_lock:
        known = _explicit.get(value)
        if known is not None and known[0] != digest and any(c is not ctx for c in known[1]):
            raise PolicyConflictError(
                f"session_id_context={value!r} is already used by a context of this process "
                "that verifies clients differently (verify mode, flags or trusted CAs), so "
                "sessions would resume across them without the client check; give each "
                "policy its own value, or leave session_id_context out and let tlsresume "
                "derive one"
            )
        if known is None or known[0] != digest:
            known = (digest, weakref.WeakSet())
            _explicit[value] = known
        known[1].add(ctx)
    if ctx.verify_mode != ssl.CERT_NONE:
        warnings.warn(
            f"session_id_context={value!r} is used verbatim: any server holding the same "
            "ticket keys or session store with this value resumes its sessions here, "
            "without this context's client-certificate check; use it only to join "
            "servers that require the same client certificates",
            TLSResumeWarning,
            stacklevel=3,
        )
    _binding.check(
        lib.tlsr_ctx_set_sid(pointer, lib.TLSR_SID_EXPLICIT, value, len(value)),
        "setting the session ID context",
    )


def session_id_context(ctx: ssl.SSLContext) -> bytes | None:
    """The session ID context connections without a server name get on ``ctx``
    (``None`` if tlsresume was not installed on it). For diagnostics and tests:
    two contexts resume each other's sessions only if these are equal."""
    out = ffi.new("uint8_t[32]")
    n = _binding.check(
        lib.tlsr_ctx_session_id_context(_server_pointer(ctx), out), "reading the session ID context"
    )
    return bytes(out[0:n]) if n > 0 else None


def _check_window(ring: TicketKeyRing, pointer: Any) -> None:
    # TLS 1.2 tickets are not renewed onto newer keys (forward secrecy), so a
    # session lives on its first key: the window must cover the session lifetime.
    window, timeout = ring.acceptance_window, int(lib.tlsr_ctx_get_timeout(pointer))
    if window is not None and window < timeout:
        warnings.warn(
            f"the ring's acceptance window ({window:g} s) is shorter than this context's "
            f"session timeout ({timeout} s): TLS 1.2 sessions stay under the key they "
            "began with, so they stop resuming when it leaves the window; make "
            "acceptance_window at least the session timeout, or lower the timeout with "
            "tlsresume.set_session_timeout()",
            TLSResumeWarning,
            stacklevel=4,  # install()'s caller
        )


def _use_ring(pointer: Any, ring: TicketKeyRing, session_cache: object) -> None:
    _binding.check(lib.tlsr_ctx_use_ring(pointer, ring._handle()), "installing ring")
    if session_cache is None and ring.session_store is not None:
        _install_store(pointer, ring.session_store)
    _check_window(ring, pointer)


def _install_store(pointer: Any, session_cache: SessionStore | int | str) -> None:
    if isinstance(session_cache, SessionStore):
        _binding.check(
            lib.tlsr_ctx_use_store(pointer, session_cache._handle()), "installing session store"
        )
    elif isinstance(session_cache, (int, str)) and not isinstance(session_cache, bool):
        private = SessionStore(session_cache)
        try:
            _binding.check(
                lib.tlsr_ctx_use_store(pointer, private._handle()), "installing session store"
            )
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
