"""gunicorn: workers that resume each other's TLS sessions.

In the gunicorn config file (``gunicorn -c gunicorn.conf.py``)::

    from tlsresume.integrations.gunicorn import ssl_context   # noqa: F401
    certfile, keyfile = "cert.pem", "key.pem"

or, with a session cache for clients that resume by session ID (curl over TLS 1.2)::

    from tlsresume.integrations.gunicorn import Resumption
    ssl_context = Resumption(session_cache="10M").ssl_context

What it does, through gunicorn's ``ssl_context(conf, default_ssl_context_factory)``
server hook (gunicorn >= 21):

* The key ring (and store) are made when the config file runs, in the master,
  before any worker forks; every worker inherits them.
* gunicorn's sync and gthread workers call the hook for **every connection**, so
  each connection got a fresh context with fresh ticket keys and an empty cache:
  nothing ever resumed, and every connection paid ``load_cert_chain``. The hook
  builds the context (gunicorn's own default factory, so ``certfile``, ``ciphers``,
  ``ca_certs``, ALPN... all apply) once per worker process and reuses it.
* Connections end with close_notify: the context's sockets send it when gunicorn
  half-closes (``shutdown(SHUT_WR)`` in its graceful close) or closes them.

The gthread worker's HTTP/2 and the gevent, tornado and asgi workers call the same
hook (once per worker); aiohttp's ``GunicornWebWorker`` ignores it, use
:class:`tlsresume.integrations.aiohttp.GunicornWebWorker` instead.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from typing import Any

from ._shared import KeyFile
from ._shared import Resumption as _Resumption

__all__ = ["Resumption", "KeyFile", "ssl_context"]


class Resumption(_Resumption):
    """gunicorn hooks sharing TLS sessions between the workers.

    Takes the arguments of :class:`tlsresume.integrations.Resumption`. The regions
    are made with the object, so in the master: gunicorn runs its config file there,
    before it forks. A HUP reload re-runs the config file in the same master and
    gets the same ring and store back.
    """

    def ssl_context(
        self, conf: Any, default_ssl_context_factory: Callable[[], ssl.SSLContext]
    ) -> ssl.SSLContext:
        """gunicorn's ``ssl_context`` server hook: this worker's one context."""
        return self.context(default_ssl_context_factory)


#: gunicorn's ``ssl_context`` hook with a shared rotating key ring. The ring is made
#: when the config file imports this name, which gunicorn does in the master before
#: it forks the workers (module ``__getattr__``: importing the module alone makes
#: nothing).
ssl_context: Callable[[Any, Callable[[], ssl.SSLContext]], ssl.SSLContext]

_default: Resumption | None = None
_default_lock = threading.Lock()


def __getattr__(name: str) -> Any:
    global _default
    if name == "ssl_context":
        with _default_lock:
            if _default is None:
                _default = Resumption()
        return _default.ssl_context
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
