"""``tlsresume check``: does a server (pool) resume TLS sessions, and why not?

It connects ``n`` times through tlsresume's client session cache
(:mod:`tlsresume.client`), which offers each new connection what the server gave
the earlier ones (a TLS 1.2 session, or a TLS 1.3 ticket, each ticket once), sends
``GET / HTTP/1.1`` and reads the whole response (TLS 1.3 tickets arrive after the
handshake), and reports:

* how many of the ``n - 1`` reconnections resumed, and how: by a (stateless)
  ticket, by a TLS 1.3 stateful ticket, or by session ID (see below). With a cache
  file loaded first (``load=``, ``tlsresume check --load``) the first connection
  can resume too, so all ``n`` connections count: that shows resumption across
  runs of a client;
* the ticket lifetime hint;
* how many distinct ticket key names the server handed out: OpenSSL-style tickets
  begin with the 16-byte name of the key that encrypted them, so a pool whose
  workers each have their own keys shows one name per worker;
* how many distinct workers answered (from the ``X-Worker`` header, if sent);
* when the server is a ``tlsresume serve``, its own counters (key ring and session
  store), read from ``/.well-known/tlsresume/stats`` before and after the check
  (through a context without the cache: those requests offer no session);
* the client cache's counters (:meth:`ClientSessionCache.stats`);

and a one-line verdict an operator can read at a glance.

How a resumption is classified, from the session the client offered:

* no ticket: **by session ID**, looked up in the server's session cache (TLS 1.2);
* a ticket of at most 32 bytes: **by stateful ticket**. Such a ticket is too short to
  hold an encrypted session; it is an ID into the server's cache. OpenSSL sends these
  in TLS 1.3 when tickets are turned off (``SSL_OP_NO_TICKET``), and Python's client
  still reports ``SSLSession.has_ticket`` as true, so ``has_ticket`` alone would
  call a cache hit a ticket resumption;
* a longer ticket: **by ticket** (stateless: the session travels encrypted in it).

Ticket key names are read from stateless tickets only: the ones offered, and the
ones each connection ended with.

The modules: :mod:`.probe` (:func:`run_check`), :mod:`.result` (what was found, the
verdict), :mod:`.policy` (the cross-policy probe).
"""

from __future__ import annotations

from .policy import CrossPolicy, cross_policy_probe
from .probe import fetch_server_stats, parse_hostport, run_check, server_report, ticket_kind
from .result import STATEFUL_TICKET_MAX, Attempt, CheckResult, verdict

__all__ = [
    "Attempt",
    "CheckResult",
    "CrossPolicy",
    "cross_policy_probe",
    "run_check",
    "parse_hostport",
    "verdict",
    "ticket_kind",
    "fetch_server_stats",
    "server_report",
    "STATEFUL_TICKET_MAX",
]
