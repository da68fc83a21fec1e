"""tlsresume inside real servers: gunicorn, uvicorn, hypercorn, aiohttp, Sanic, Tornado,
asyncio and ``http.server``/``socketserver``, and the requests client. See
``docs/integrations.md`` for the recipes.

Each server has its own module (``tlsresume.integrations.gunicorn``, ...), which
imports that server only when it is itself imported; this package imports none.
Its own names load on first use (PEP 562), so the client-only module
(``tlsresume.integrations.requests``) imports on a Python where the C core cannot.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._shared import CloseNotifySSLSocket, KeyFile, Resumption, send_close_notify

__all__ = ["Resumption", "KeyFile", "CloseNotifySSLSocket", "send_close_notify"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'tlsresume.integrations' has no attribute {name!r}")
    value = getattr(importlib.import_module("._shared", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
