"""``tlsresume serve``: a pre-fork HTTPS server that behaves like real Python servers.

One master process binds ONE listening socket, makes the shared state (the ticket
key ring, and with ``--session-cache`` a session store), and starts N workers that
all accept on that socket. Every worker builds its own ``ssl.SSLContext`` (as
gunicorn, uvicorn ``--workers`` or hypercorn do), so without tlsresume each worker
has its own random ticket keys and its own session cache: a client that reconnects
to another worker cannot resume. With tlsresume each worker installs the shared ring
(and store) on its context and any worker resumes any session.

What is shared:

* default: the key ring (stateless tickets, TLS 1.2 and 1.3) and one
  :class:`~tlsresume.SessionStore` of :data:`~tlsresume.DEFAULT_STORE_SIZE` (10 MiB,
  nginx's customary size, about 40,000 sessions) for clients that resume by session
  ID (curl over TLS 1.2, ``s_client -no_ticket``): a TLS 1.2 client that asks for no
  ticket resumes on no other worker without it.
* ``--session-cache SIZE``: that store with SIZE bytes; ``--no-session-cache``: none.
* ``--no-tickets``: ``ssl.OP_NO_TICKET`` on every worker context and no ring; TLS 1.3
  tickets become stateful (IDs into the store), so only ``--session-cache`` shares
  anything. ``--single-use`` makes those stateful tickets resume once.
* ``--no-share``: no tlsresume at all, the baseline every Python pre-fork server
  has today (``--no-tickets`` still applies; ``--session-cache`` is refused).

The ring and store are always NAMED regions, ``serve-<master pid>``
(``tlsresume.ring.serve-<pid>``, ``tlsresume.store.serve-<pid>`` in this user's
region directory, see :func:`tlsresume.regions.region_dir`), so that
``tlsresume stats`` can read them from any process of the same user; the master
removes the names when it stops. Workers also answer ``GET /.well-known/tlsresume/stats``
(:data:`STATS_PATH`) with the counters as JSON.

Two ways to start workers, matching the two ways real servers do it:

* fork (default): workers inherit the master's mapping of the regions.
* ``--spawn``: workers are fresh interpreters (``subprocess``) that attach to the
  regions by name and receive the listening socket by file-descriptor inheritance.

Across machines, ``--redis URL``: the master links the ring (and the store) to Redis
with :func:`tlsresume.redis.connect_server` after making them and before any worker
exists, so the first key sync is done before a ticket is issued. Forked workers
inherit the link (each restarts its own session tier); ``--spawn`` workers attach a
session tier of their own (:func:`tlsresume.redis.connect_worker`) and read the keys
the master's sync puts into the named ring. Several ``serve --redis URL`` instances
(their own process groups, shared memory and ports) then resume each other's
sessions. The master key comes from a file (``--redis-master-key-file``), never from
the command line; spawned workers get it from the master through a pipe. Redis down
at start is a warning (the instance serves with its own keys and converges when Redis
comes); a URL redis-py cannot use, refused credentials or a master key that does not
match the fleet's stop the start with an error. See docs/redis.md.

Each worker answers every HTTP/1.0 or 1.1 request with ``worker <pid>`` and closes
the connection with close_notify, because an OpenSSL client (curl) refuses to reuse a
TLS 1.2 session from a connection that ended without one (docs/design.md, "Facts the
code relies on").

A worker's accepting thread serves each connection itself while the client keeps
up (a few milliseconds per wait), and hands a slow client to one of ``--threads``
connection threads, so an idle client never stalls the others; each response says
which in ``X-Served`` (``inline`` or ``pool``).

The server logic is importable: build a :class:`ServerConfig` and call :func:`run`.

The modules: :mod:`.config` (options, listening line), :mod:`.protocol` (HTTP, pure),
:mod:`.connection` (a worker's connections), :mod:`.worker` and :mod:`.master` (the
processes). Starting a server as a subprocess is :mod:`tlsresume.tools.launch`.
"""

from __future__ import annotations

from ..launch import child_env, die_with_parent
from .config import (
    LISTENING_PREFIX,
    STATS_PATH,
    STATS_SERVER_ID,
    ListeningLine,
    ServeError,
    ServerConfig,
    parse_listening_line,
)
from .connection import build_server_context
from .master import run
from .protocol import Request, build_response, parse_request_head, stats_payload

__all__ = [
    "ServerConfig",
    "ServeError",
    "Request",
    "run",
    "build_server_context",
    "parse_request_head",
    "build_response",
    "LISTENING_PREFIX",
    "STATS_PATH",
    "STATS_SERVER_ID",
    "stats_payload",
    "ListeningLine",
    "parse_listening_line",
    "child_env",
    "die_with_parent",
]
