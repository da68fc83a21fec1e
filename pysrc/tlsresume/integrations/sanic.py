"""Sanic: workers that resume each other's TLS sessions.

In the module that makes the app (so that it runs in the master and in every
worker)::

    from sanic import Sanic
    from tlsresume.integrations.sanic import setup

    app = Sanic("app")
    setup(app)                     # or setup(app, session_cache="1M"): Resumption's arguments

    if __name__ == "__main__":
        app.run(host="0.0.0.0", port=8443, workers=4,
                ssl={"cert": "cert.pem", "key": "key.pem"})

``sanic app:app --workers 4 --cert cert.pem --key key.pem`` works the same.

Sanic's worker manager starts each worker as a new process (``spawn``) that imports
the app again and builds its own context from the ``ssl`` settings: every worker
had its own ticket keys and session cache. :func:`setup` makes a :class:`Resumption`
in the master's ``main_process_start``, with named regions (removed when the
master exits), and hands it to the workers through ``app.shared_ctx``, where it
travels as the names; each worker's context, built by Sanic's own certificate
loader (so ``cert``/``key``, a certificate directory and ``creator`` apply), gets
resumption installed. asyncio ends TLS connections
with close_notify by itself.
"""

from __future__ import annotations

import ssl
from typing import Any

from sanic import Sanic
from sanic.worker.loader import CertLoader as _SanicCertLoader

from ..errors import StateError
from ._shared import KeyFile
from ._shared import Resumption as _Resumption

__all__ = ["setup", "CertLoader", "Resumption", "KeyFile"]

#: The name under ``app.shared_ctx`` that carries the master's Resumption.
SHARED_NAME = "tlsresume"


class Resumption(_Resumption):
    """Takes the arguments of :class:`tlsresume.integrations.Resumption`, with
    ``spawn=True`` (named regions) and the name prefix ``"sanic"`` by default."""

    def __init__(self, *args: Any, spawn: bool = True, name: str = "sanic", **kwargs: Any) -> None:
        super().__init__(*args, spawn=spawn, name=name, **kwargs)


class CertLoader(_SanicCertLoader):
    """Sanic's certificate loader, installing the master's :class:`Resumption` (from
    ``app.shared_ctx``) on the context it builds in each worker. :func:`setup` makes
    the app use it (or a subclass of the app's own loader class)."""

    def load(self, app: Any) -> Any:
        if not self._ssl_data:  # plain HTTP: Sanic calls a custom loader anyway
            return None
        ctx = super().load(app)
        if not isinstance(ctx, ssl.SSLContext):  # HTTP/3 and other non-SSLContext setups
            return ctx
        tls = getattr(app.shared_ctx, SHARED_NAME, None)
        if not isinstance(tls, _Resumption):
            raise StateError(
                "no tlsresume Resumption reached this Sanic worker: call "
                "tlsresume.integrations.sanic.setup(app) where the app is made, at import "
                "time, not under `if __name__ == '__main__':`, so that the master runs it "
                "before it starts the workers"
            )
        # A list of certificates is a selector that switches each connection to one
        # of them by SNI: every context a handshake can end on needs the keys. (Sanic
        # cannot pickle a selector for spawned workers; forked ones get one.)
        for each in (ctx, *getattr(ctx, "sanic_select", ())):
            tls.install(each)
        return ctx


def setup(app: Sanic[Any, Any], *args: Any, **kwargs: Any) -> None:
    """Make ``app``'s workers share TLS session resumption.

    Call it where the app is made, so it runs in the master and in each worker.
    Takes the arguments of :class:`tlsresume.integrations.Resumption` after ``app``
    (checked here; the object and its regions are made in the master's
    ``main_process_start``, never in a worker).

    Raises:
        TypeError, ValueError: ``app`` is not a Sanic app, or bad Resumption arguments.
        StateError: ``setup`` already ran for ``app``.
    """
    if not isinstance(app, Sanic):
        raise TypeError(
            f"setup() takes the Sanic app (app = Sanic('name')), not {type(app).__name__}"
        )
    _Resumption.check_arguments(*args, **kwargs)
    base = app.certloader_class
    if issubclass(base, CertLoader):
        raise StateError(f"tlsresume.integrations.sanic.setup() already ran for app {app.name!r}")
    # Keep a certificate loader of the app's own: ours runs after it.
    app.certloader_class = (
        CertLoader
        if base is _SanicCertLoader
        else type(f"Resuming{base.__name__}", (CertLoader, base), {})
    )

    def make_in_master(app: Sanic[Any, Any]) -> None:
        tls = Resumption(*args, **kwargs)
        # shared_ctx is how Sanic hands objects made here to the workers; it warns
        # about anything not from multiprocessing, but a Resumption is made to travel
        # (as the names of its regions), so it goes in without the check.
        vars(app.shared_ctx)[SHARED_NAME] = tls

    app.register_listener(make_in_master, "main_process_start")
