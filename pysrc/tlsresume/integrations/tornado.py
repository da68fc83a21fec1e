"""Tornado: ``fork_processes`` workers that resume each other's TLS sessions.

::

    import asyncio
    from tornado.httpserver import HTTPServer
    from tornado.netutil import bind_sockets
    from tornado.process import fork_processes
    from tlsresume.integrations.tornado import Resumption

    tls = Resumption()                       # before the fork
    sockets = bind_sockets(8443)
    fork_processes(4)

    async def main():
        server = HTTPServer(app, ssl_options=tls.ssl_options(
            {"certfile": "cert.pem", "keyfile": "key.pem"}))
        server.add_sockets(sockets)
        await asyncio.Event().wait()

    asyncio.run(main())

Given a dict, Tornado's ``ssl_options`` builds a **new context for every
connection** (``ssl_wrap_socket``), with fresh ticket keys and an empty cache:
nothing resumes, not even on the same worker, and every connection pays
``load_cert_chain``. :meth:`Resumption.ssl_options` turns the same dict (or a
context) into one context per worker process, built by Tornado's own
``ssl_options_to_context``, with the master's key ring and store installed.
Tornado closes its TLS sockets without ``unwrap()``; the context's sockets send
close_notify first (see :class:`~tlsresume.integrations.CloseNotifySSLSocket`).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from typing import Any

import tornado.netutil
import tornado.process

from ..errors import StateError
from ._shared import KeyFile
from ._shared import Resumption as _Resumption

__all__ = ["Resumption", "KeyFile"]

# The keys Tornado's ssl_options dict takes (tornado.netutil._SSL_CONTEXT_KEYWORDS).
_SSL_OPTIONS = frozenset({"ssl_version", "certfile", "keyfile", "cert_reqs", "ca_certs", "ciphers"})


class Resumption(_Resumption):
    """TLS session resumption for Tornado's ``fork_processes`` workers.

    Takes the arguments of :class:`tlsresume.integrations.Resumption`. Make it
    before ``fork_processes()`` (or ``HTTPServer.start(n)``): the forked workers
    inherit its ring and store.

    Raises:
        StateError: made in a process that ``fork_processes`` started (each worker
            would have its own keys).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if tornado.process.task_id() is not None:
            raise StateError(
                "tlsresume.integrations.tornado.Resumption() was made in a worker that "
                "fork_processes() started, so each worker would have its own keys: make it "
                "before fork_processes() and use it in the workers"
            )
        super().__init__(*args, **kwargs)

    def ssl_options(self, options: Mapping[str, Any] | ssl.SSLContext) -> ssl.SSLContext:
        """Tornado's ``ssl_options`` (a dict of ``certfile``, ``keyfile``,
        ``cert_reqs``, ``ca_certs``, ``ciphers``, ``ssl_version``, or a server
        context) as a context with resumption installed: pass the result as
        ``HTTPServer(..., ssl_options=...)``. A dict is built into a context once per
        process (and per distinct dict) and reused after that; a context is
        installed onto and returned.

        Raises:
            TypeError: ``options`` is neither a dict nor an ``SSLContext``.
            ValueError: a key Tornado does not take, or no ``certfile``.
        """
        if isinstance(options, ssl.SSLContext):
            return self.install(options)
        if not isinstance(options, Mapping):
            raise TypeError(
                "ssl_options() takes Tornado's ssl_options: a dict like "
                "{'certfile': 'cert.pem', 'keyfile': 'key.pem'} or a server ssl.SSLContext, "
                f"not {type(options).__name__}"
            )
        unknown = sorted(set(options) - _SSL_OPTIONS)
        if unknown:
            raise ValueError(
                f"ssl_options() got {', '.join(map(repr, unknown))}; Tornado's ssl_options "
                f"takes {', '.join(sorted(_SSL_OPTIONS))}"
            )
        if "certfile" not in options:
            raise ValueError(
                "ssl_options() needs 'certfile' (and 'keyfile' unless it holds the key)"
            )
        # One context per process and per options: servers of one worker with other
        # certificates get their own.
        key = (os.getpid(), tuple(sorted(options.items())))
        with self._ctx_lock:
            ctx = self._contexts.get(key)
            if ctx is None:
                made = tornado.netutil.ssl_options_to_context(dict(options), server_side=True)
                ctx = self._contexts[key] = self.install(made)
        return ctx

    def _setup(self, close_notify: bool, service: str | None = None) -> None:
        super()._setup(close_notify, service)
        self._contexts: dict[tuple[Any, ...], ssl.SSLContext] = {}
