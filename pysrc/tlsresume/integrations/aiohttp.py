"""aiohttp: worker processes that resume each other's TLS sessions.

Under gunicorn, aiohttp's ``GunicornWebWorker`` builds its own ``SSLContext`` and
never calls gunicorn's ``ssl_context`` hook. This module's worker does::

    gunicorn -c gunicorn.conf.py -k tlsresume.integrations.aiohttp.GunicornWebWorker app:make_app

with ``from tlsresume.integrations.gunicorn import ssl_context`` in the config file
(see :mod:`tlsresume.integrations.gunicorn`): one context per worker, from
gunicorn's default factory, with the master's key ring. (Importing this module needs
gunicorn, as ``aiohttp.worker`` does.)

With ``web.run_app`` in processes of your own, make a
:class:`~tlsresume.integrations.Resumption` before forking and give each worker
``tls.server_context(certfile, keyfile)`` as its ``ssl_context`` (docs/integrations.md
has the recipe). asyncio ends TLS connections with close_notify by itself.
"""

from __future__ import annotations

import importlib
import ssl
from typing import Any

from aiohttp.worker import GunicornWebWorker as _AiohttpWorker

from ._shared import KeyFile, Resumption

__all__ = ["GunicornWebWorker", "Resumption", "KeyFile"]


class GunicornWebWorker(_AiohttpWorker):
    """aiohttp's gunicorn worker, taking its context from gunicorn's ``ssl_context``
    hook (so :mod:`tlsresume.integrations.gunicorn` applies) instead of building
    its own."""

    @staticmethod
    def _create_ssl_context(cfg: Any) -> ssl.SSLContext:
        # gunicorn.sock.ssl_context(cfg) calls the config's ssl_context hook with
        # gunicorn's default factory (gunicorn >= 21). gunicorn ships no type hints.
        ctx: ssl.SSLContext = importlib.import_module("gunicorn.sock").ssl_context(cfg)
        return ctx
