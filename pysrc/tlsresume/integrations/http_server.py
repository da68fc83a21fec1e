"""``http.server`` and ``socketserver``: TLS that resumes across worker processes and
ends every connection with close_notify.

::

    from http.server import ThreadingHTTPServer
    from tlsresume.integrations import Resumption
    from tlsresume.integrations.http_server import wrap_server

    tls = Resumption()                                  # before the workers fork
    server = ThreadingHTTPServer(("", 8443), Handler)   # one listening socket
    # ... fork the workers; in each:
    wrap_server(server, tls.server_context("cert.pem", "key.pem"))
    server.serve_forever()

``socketserver`` ends a connection with ``shutdown(SHUT_WR)`` and ``close()`` and
never ``unwrap()``: without close_notify, OpenSSL's own cache evicts the session and
an OpenSSL client (curl) will not resume it. The sockets of a context from
:class:`~tlsresume.integrations.Resumption` send it from both places.
"""

from __future__ import annotations

import socketserver
import ssl
from typing import TypeVar

from ._shared import CloseNotifySSLSocket

__all__ = ["wrap_server"]

Server = TypeVar("Server", bound=socketserver.TCPServer)


def wrap_server(server: Server, context: ssl.SSLContext) -> Server:
    """Serve TLS on ``server``'s listening socket.

    The handshake is left to the first read, which runs in the request's handler
    (its own thread in ``ThreadingHTTPServer``), so a slow client never holds up
    ``accept()``. If ``context`` does not already make close_notify sockets, it is
    set to (its ``sslsocket_class`` becomes :class:`CloseNotifySSLSocket`).

    Returns:
        ``server``.

    Raises:
        TypeError: ``context`` is not a server-side ``ssl.SSLContext``.
    """
    if not isinstance(context, ssl.SSLContext) or context.protocol == ssl.PROTOCOL_TLS_CLIENT:
        raise TypeError(
            "wrap_server() needs a server-side ssl.SSLContext, e.g. "
            "Resumption().server_context(certfile, keyfile)"
        )
    if not issubclass(context.sslsocket_class, CloseNotifySSLSocket):
        context.sslsocket_class = CloseNotifySSLSocket
    server.socket = context.wrap_socket(
        server.socket, server_side=True, do_handshake_on_connect=False
    )
    return server
