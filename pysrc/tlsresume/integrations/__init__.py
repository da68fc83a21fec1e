"""tlsresume inside real servers: gunicorn, uvicorn, hypercorn, aiohttp, Sanic, Tornado,
asyncio and ``http.server``/``socketserver``. See ``docs/integrations.md`` for the recipes.

Each server has its own module (``tlsresume.integrations.gunicorn``, ...), which
imports that server only when it is itself imported; this package imports none.
"""

from __future__ import annotations

from ._shared import CloseNotifySSLSocket, KeyFile, Resumption, send_close_notify

__all__ = ["Resumption", "KeyFile", "CloseNotifySSLSocket", "send_close_notify"]
