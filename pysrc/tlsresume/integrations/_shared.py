"""What every server integration needs: the regions a server's workers share, made
once where they must be made, one server context per worker process, and sockets
that end connections with close_notify.

:class:`Resumption` is the one object an integration holds. Made in the parent
before the workers start, it makes (or is given) the key ring and session store;
workers that are *forked* inherit them, workers that are *spawned* receive the
object pickled, as the names of the regions, and attach to them.
"""

from __future__ import annotations

import atexit
import inspect
import logging
import os
import secrets
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, cast

from .._tls import send_close_notify
from ..context import install
from ..keyring import TicketKeyRing
from ..store import DEFAULT_STORE_SIZE, SessionStore, parse_size

__all__ = ["Resumption", "KeyFile", "CloseNotifySSLSocket", "send_close_notify"]

log = logging.getLogger("tlsresume")


class KeyFile(NamedTuple):
    """Ticket keys read from a key file (see :meth:`TicketKeyRing.from_file`).

    The file is the authority: every process (and machine) reading it holds the
    same keys; rewriting it rotates them.
    """

    path: str
    format: str
    poll_interval: float | None = 5.0


# ---- TCP_NODELAY ------------------------------------------------------------------------


def set_nodelay(sock: Any) -> bool:
    """Turn Nagle's algorithm off on a TCP socket (``socket.socket`` or asyncio's
    ``TransportSocket``); returns whether it is off now.

    A TLS handshake is a few small writes that each wait for the peer's answer;
    with Nagle on and the peer's delayed ACK (40 ms on Linux), a round trip can
    stall for tens of milliseconds. asyncio sets TCP_NODELAY only on sockets that
    say they are TCP (``proto == IPPROTO_TCP``), and a listening socket taken from
    a descriptor (uvicorn's ``--fd``: ``socket.fromfd(fd, AF_UNIX, SOCK_STREAM)``,
    so its accepted sockets even claim to be AF_UNIX) or made with proto 0 says
    nothing of the kind. The socket's own claims are not trusted here: the option
    is simply tried. Never raises: a socket that is not TCP refuses it, and is
    left as it is.
    """
    if sock is None:
        return False
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
    except (OSError, AttributeError) as exc:
        log.debug("tlsresume: cannot set TCP_NODELAY: %s", exc)
        return False


_nodelay_classes: dict[type, type] = {}


def nodelay_protocol(cls: type[Any]) -> type[Any]:
    """A subclass of the asyncio protocol ``cls`` whose ``connection_made`` sets
    TCP_NODELAY on the connection's socket first (one class per ``cls``)."""
    if cls not in _nodelay_classes:

        class NoDelay(cls):  # type: ignore[misc]  # a base known only at run time
            def connection_made(self, transport: Any) -> None:
                set_nodelay(transport.get_extra_info("socket"))
                super().connection_made(transport)

        NoDelay.__name__ = NoDelay.__qualname__ = f"NoDelay{cls.__name__}"
        _nodelay_classes[cls] = NoDelay
    return _nodelay_classes[cls]


# ---- close_notify ----------------------------------------------------------------------


class CloseNotifySSLSocket(ssl.SSLSocket):
    """An ``ssl.SSLSocket`` that sends close_notify before it goes away.

    Servers built on blocking sockets (gunicorn's sync and gthread workers,
    ``socketserver``) end a connection with ``shutdown(SHUT_WR)`` and/or ``close()``
    and never ``unwrap()``; ``SSLSocket.shutdown`` even drops the TLS layer on the
    floor. This class sends the alert first, from both places. Made by any context
    whose ``sslsocket_class`` it is (:meth:`Resumption.install` sets it).
    """

    def shutdown(self, how: int) -> None:
        if how != socket.SHUT_RD:
            send_close_notify(self)
        super().shutdown(how)

    # socket.close() calls _real_close() when the last makefile() reference is gone,
    # i.e. exactly when the file descriptor is about to be closed: the one moment a
    # close_notify is right. (A private hook, but the same in CPython 3.3-3.14.)
    def _real_close(self) -> None:
        send_close_notify(self)
        super()._real_close()  # type: ignore[misc]


# ---- shared regions made once per process ------------------------------------------------

# Regions this process made for a Resumption, by what they are. A server that re-reads
# its configuration in the same master (gunicorn on SIGHUP) builds a new Resumption
# and gets the same keys and sessions again, so clients of the old workers resume on
# the new ones.
_made: dict[tuple[Any, ...], Any] = {}
_made_lock = threading.Lock()


def _once(key: tuple[Any, ...], make: Callable[[], Any]) -> Any:
    key = (os.getpid(), *key)
    with _made_lock:
        region = _made.get(key)
        if region is None or region.closed:
            region = _made[key] = make()
            if region.name is not None:
                atexit.register(_unlink_if_mine, region, os.getpid())
        return region


def _unlink_if_mine(region: Any, pid: int) -> None:
    # Forked children inherit atexit handlers: only the maker removes the name.
    if os.getpid() == pid:
        try:
            region.unlink()
        except Exception:  # pragma: no cover - best effort at exit
            pass


def _region_name(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{secrets.token_hex(4)}"


# ---- the integration object -----------------------------------------------------------------


class Resumption:
    """TLS session resumption shared by the worker processes of one server.

    Make it in the parent (master) process before the workers start: it makes the
    key ring (and session store) at once. Forked workers inherit them; spawned
    workers (uvicorn and hypercorn ``--workers``) receive the object pickled, as the
    names of the regions, and attach. Each worker then gets one server context from
    :meth:`context` (built once per process) or installs onto its own with
    :meth:`install`.

    Args:
        keys: session-ticket keys.
            ``None`` (default): a new rotating :class:`TicketKeyRing`, made here.
            A :class:`TicketKeyRing`: that ring. A ``str``: the name of a ring,
            opened (created by the first process that asks; it outlives the server,
            so keys survive restarts, until someone unlinks it). A :class:`KeyFile`:
            keys read from a key file, shared by every process and machine reading
            it. ``False``: no shared ticket keys (only the session cache).
        session_cache: a server session cache shared by the workers, for clients
            that resume by session ID (curl over TLS 1.2 offers no ticket extension,
            so without it curl resumes only on the worker that made its session)
            and servers with tickets off. ``None`` or ``True`` (default): a new
            :class:`SessionStore` of :data:`~tlsresume.DEFAULT_STORE_SIZE` (10 MiB,
            nginx's customary ``ssl_session_cache shared:SSL:10m``, about 40,000
            sessions), made here. A size (``"1M"``): a new store of that size. A
            :class:`SessionStore`: that store. ``False``: none (ticket keys only).
        spawn: the workers are spawned, not forked: make the new regions *named*
            (``tlsresume.ring.<name>-<pid>-<random>``, mode 0600, in this user's
            private region directory on tmpfs) so that
            they can attach, and remove the names when this process exits. A given
            ring or store must then be named too.
        close_notify: contexts from this object make sockets that send close_notify
            when the server shuts them down or closes them (see
            :class:`CloseNotifySSLSocket`). asyncio already does; servers on
            blocking sockets need this.
        name: prefix of the names of regions made with ``spawn=True``.
        service: keeps this server's sessions apart from other services that share
            the same keys or store and are configured alike (see
            :func:`tlsresume.install`); sessions are always bound to each context's
            client verification and certificate.

    Raises:
        TypeError, ValueError: bad arguments.
        SharedMemoryError: a region could not be made.
    """

    _ring: TicketKeyRing | None
    _store: SessionStore | None

    def __init__(
        self,
        keys: TicketKeyRing | KeyFile | str | bool | None = None,
        *,
        session_cache: SessionStore | int | str | bool | None = None,
        spawn: bool = False,
        close_notify: bool = True,
        name: str = "tlsresume",
        service: str | None = None,
    ) -> None:
        self._setup(close_notify, service)
        keys, store, size = self._checked(keys, session_cache)
        prefix = name if spawn else None
        self._ring = self._make_ring(keys, prefix)
        if store is not None:
            self._store = store
        elif size is not None:
            self._store = cast(
                SessionStore,
                _once(
                    ("store", size, prefix),
                    lambda: SessionStore(size, name=_region_name(prefix) if prefix else None),
                ),
            )

    @staticmethod
    def _checked(
        keys: TicketKeyRing | KeyFile | str | bool | None,
        session_cache: SessionStore | int | str | bool | None,
    ) -> tuple[TicketKeyRing | KeyFile | str | bool | None, SessionStore | None, int | None]:
        """The arguments checked and resolved, making nothing: (keys, a given store,
        the size of a store to make)."""
        if keys is True:
            keys = None
        if not (keys is None or keys is False or isinstance(keys, (TicketKeyRing, KeyFile, str))):
            raise TypeError(
                "keys takes None (a new ring), a TicketKeyRing, a ring name, a KeyFile or "
                f"False, not {type(keys).__name__}"
            )
        if not (session_cache is None or isinstance(session_cache, (SessionStore, int, str))):
            raise TypeError(
                "session_cache takes a SessionStore, a size like '10M', True or False, not "
                f"{type(session_cache).__name__}"
            )
        if session_cache is None or session_cache is True:
            given = keys.session_store if isinstance(keys, TicketKeyRing) else None
            session_cache = given if given is not None else DEFAULT_STORE_SIZE
        if keys is False and session_cache is False:
            raise TypeError("keys=False and session_cache=False: there would be nothing to share")
        if isinstance(session_cache, SessionStore):
            return keys, session_cache, None
        if session_cache is False:
            return keys, None, None
        return keys, None, parse_size(session_cache)

    @classmethod
    def check_arguments(cls, *args: Any, **kwargs: Any) -> None:
        """Raise what ``Resumption(*args, **kwargs)`` would raise for bad arguments,
        making no region (for recipes that make the object later, in the master)."""
        try:
            bound = inspect.signature(Resumption).bind(*args, **kwargs)
        except TypeError as e:
            raise TypeError(f"{e}: Resumption takes {inspect.signature(Resumption)}") from None
        bound.apply_defaults()
        given = bound.arguments
        if given["service"] is not None and not isinstance(given["service"], str):
            raise TypeError(f"service must be a str, not {type(given['service']).__name__}")
        cls._checked(given["keys"], given["session_cache"])

    def _setup(self, close_notify: bool, service: str | None = None) -> None:
        if service is not None and not isinstance(service, str):
            raise TypeError(f"service must be a str, not {type(service).__name__}")
        self.close_notify = close_notify
        self.service = service
        self._ring = None
        self._store = None
        self._attach: tuple[str | None, str | None] | None = None  # names, in a spawned worker
        self._lock = threading.Lock()  # attaching in a spawned worker
        self._ctx_lock = threading.Lock()  # building this process's context
        self._ctx: tuple[int, ssl.SSLContext] | None = None

    @staticmethod
    def _make_ring(
        keys: TicketKeyRing | KeyFile | str | bool | None, prefix: str | None
    ) -> TicketKeyRing | None:
        if keys is False:
            return None
        if isinstance(keys, TicketKeyRing):
            return keys
        if isinstance(keys, str):
            return TicketKeyRing.open(keys, session_cache=False)  # the store is ours
        if isinstance(keys, KeyFile):
            path, fmt, poll = keys

            def from_file() -> TicketKeyRing:
                return TicketKeyRing.from_file(
                    path,
                    fmt,
                    name=_region_name(prefix) if prefix else None,
                    poll_interval=poll,
                    session_cache=False,
                )

            return cast(TicketKeyRing, _once(("keyfile", path, fmt, prefix), from_file))
        return cast(
            TicketKeyRing,
            _once(
                ("ring", prefix),
                lambda: TicketKeyRing(
                    name=_region_name(prefix) if prefix else None, session_cache=False
                ),
            ),
        )

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None, **kwargs: Any) -> Resumption:
        """A Resumption configured by environment variables (for command lines):
        ``TLSRESUME_SESSION_CACHE=1M`` sizes the shared session store (``off``: none;
        unset: the default size);
        ``TLSRESUME_RING=name`` opens a named ring; ``TLSRESUME_KEY_FILE=path`` with
        ``TLSRESUME_KEY_FORMAT`` (default ``openssl80``) reads the keys from a file;
        ``TLSRESUME_SERVICE=name`` names the service (see ``service``).
        """
        env = os.environ if environ is None else environ
        keys: Any = None
        if env.get("TLSRESUME_KEY_FILE"):
            keys = KeyFile(env["TLSRESUME_KEY_FILE"], env.get("TLSRESUME_KEY_FORMAT", "openssl80"))
        elif env.get("TLSRESUME_RING"):
            keys = env["TLSRESUME_RING"]
        if env.get("TLSRESUME_SERVICE"):
            kwargs.setdefault("service", env["TLSRESUME_SERVICE"])
        cache: Any = env.get("TLSRESUME_SESSION_CACHE") or None
        if isinstance(cache, str) and cache.strip().lower() == "off":
            cache = False
        return cls(keys, session_cache=cache, **kwargs)

    def _regions(self) -> tuple[TicketKeyRing | None, SessionStore | None]:
        if self._attach is not None:  # a spawned worker joins the parent's regions
            with self._lock:
                if self._attach is not None:
                    ring_name, store_name = self._attach
                    self._ring = TicketKeyRing.attach(ring_name) if ring_name else None
                    self._store = SessionStore.attach(store_name) if store_name else None
                    self._attach = None
        return self._ring, self._store

    @property
    def ring(self) -> TicketKeyRing | None:
        """The key ring the workers share (``None``: no ticket keys)."""
        return self._regions()[0]

    @property
    def session_store(self) -> SessionStore | None:
        """The session store the workers share (``None``: none)."""
        return self._regions()[1]

    # ---- contexts ---------------------------------------------------------------------

    def install(self, ctx: ssl.SSLContext) -> ssl.SSLContext:
        """Put the shared keys and store on ``ctx`` (a server context), and the
        close_notify socket class if asked; returns ``ctx``."""
        ring, store = self._regions()
        # An explicit False: a ring given by the caller may carry its own store.
        install(
            ctx, ring, session_cache=store if store is not None else False, service=self.service
        )
        if self.close_notify:
            ctx.sslsocket_class = CloseNotifySSLSocket
        return ctx

    def server_context(
        self,
        certfile: str | os.PathLike[str],
        keyfile: str | os.PathLike[str] | None = None,
        password: str | bytes | None = None,
    ) -> ssl.SSLContext:
        """A new server context (``create_default_context(Purpose.CLIENT_AUTH)``)
        with the certificate loaded and resumption installed."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(certfile, keyfile, password)
        return self.install(ctx)

    def context(self, factory: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        """This process's server context: ``factory()`` with resumption installed,
        built on the first call in each process and reused after that (a new
        context per connection could resume nothing, and loads the certificate
        every time)."""
        pid = os.getpid()
        cached = self._ctx
        if cached is None or cached[0] != pid:
            with self._ctx_lock:
                cached = self._ctx
                if cached is None or cached[0] != pid:
                    ctx = factory()
                    if not isinstance(ctx, ssl.SSLContext):
                        raise TypeError(
                            f"the context factory returned {type(ctx).__name__}, not an SSLContext"
                        )
                    cached = self._ctx = (pid, self.install(ctx))
        return cached[1]

    # ---- travelling to spawned workers -------------------------------------------------

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Pickled in the parent as a spawned worker starts: it travels as the names
        # of the regions, which the worker attaches to.
        if self._attach is not None:
            names = self._attach
        else:
            for region in (self._ring, self._store):
                if region is not None and region.name is None:
                    raise TypeError(
                        f"this Resumption shares an anonymous {region._what}, which only "
                        "forked workers inherit; for spawned workers make it with "
                        "spawn=True (or give it a named ring and store)"
                    )
            names = (
                self._ring.name if self._ring is not None else None,
                self._store.name if self._store is not None else None,
            )
        return (_attached, (type(self), names, self.close_notify, self.service))

    def __repr__(self) -> str:
        if self._attach is not None:
            return (
                f"<{type(self).__name__} attaching to ring={self._attach[0]} "
                f"store={self._attach[1]}>"
            )

        def show(region: Any) -> str:
            return "none" if region is None else region.name or "anonymous"

        return f"<{type(self).__name__} ring={show(self._ring)} store={show(self._store)}>"


def _attached(
    cls: type[Resumption],
    names: tuple[str | None, str | None],
    close_notify: bool,
    service: str | None = None,
) -> Resumption:
    """A spawned worker's copy: it attaches to the parent's regions on first use."""
    res = cls.__new__(cls)
    res._setup(close_notify, service)
    res._attach = names
    return res
