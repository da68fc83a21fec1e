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
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any

from .client import (
    KEY_SIZE,
    ClientContext,
    ClientSessionCache,
    client_context,
    offered,
    offered_ticket,
)
from .inspect import session_ticket

__all__ = [
    "Attempt",
    "CheckResult",
    "run_check",
    "parse_hostport",
    "verdict",
    "ticket_kind",
    "fetch_server_stats",
    "server_report",
    "STATEFUL_TICKET_MAX",
]

_TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
_MAX_RESPONSE = 1 << 20  # we only need the headers; never buffer an endless stream

#: A ticket this short cannot carry an encrypted session: it is a session ID
#: (OpenSSL's SSL_MAX_SSL_SESSION_ID_LENGTH) naming an entry in the server's cache.
STATEFUL_TICKET_MAX = 32

# The store counters shown in the summary, in order (all are in the JSON).
_STORE_SHOWN = (
    "lookups",
    "hits",
    "misses",
    "stores",
    "evictions",
    "expirations",
    "oversize",
    "errors",
)


@dataclass
class Attempt:
    """One connection of a check.

    Attributes:
        index: 0 for the first connection, then 1, 2, ...
        resumed: the server accepted the offered session.
        offered: the client cache offered a session (``tlsresume.client.offered``):
            every attempt but the first, and the first too when a cache file held a
            session for this server.
        offered_ticket: the offered session carried a ticket, of any kind.
        offered_ticket_kind: ``"stateless"``, ``"stateful"`` (an ID into the
            server's cache), or ``None`` without a ticket.
        offered_key_name: hex of the first 16 bytes of the offered ticket when it
            is stateless, else ``None``.
        worker: the ``X-Worker`` header of the response, if any.
        key_name: hex of the first 16 bytes of the stateless ticket this connection
            ended with, or ``None`` when there was none.
        version: negotiated protocol, e.g. ``"TLSv1.3"``.
        error: why the connection failed, or ``None``.
    """

    index: int
    resumed: bool = False
    offered: bool = False
    offered_ticket: bool = False
    offered_ticket_kind: str | None = None
    offered_key_name: str | None = None
    worker: str | None = None
    key_name: str | None = None
    version: str | None = None
    error: str | None = None


@dataclass
class CheckResult:
    """The outcome of :func:`run_check`; every field is JSON-serialisable.

    Attributes:
        host, port, n: what was checked, and how many connections were attempted.
        tls_version: the version the client was limited to (``"1.2"``, ``"1.3"``) or
            ``None`` for whatever the server picked.
        protocol: the protocol(s) negotiated, e.g. ``"TLSv1.3"``.
        possible: connections that could have resumed: ``n - 1`` reconnections, or
            all ``n`` when a cache file was loaded first (``cache_load``).
        resumed: connections that did resume.
        by_ticket: resumptions of a stateless ticket (or a ticket of unknown kind).
        by_stateful_ticket: resumptions of a TLS 1.3 stateful ticket, i.e. an ID
            looked up in the server's session cache.
        by_session_id: resumptions of sessions without a ticket (server cache).
        ticket_lifetime_hint: seconds, from the last session (``None`` without one).
        ticket_kind: the kind of tickets the server issued: ``"stateless"``,
            ``"stateful"``, ``"mixed"``, ``"unknown"`` (unreadable), or ``None``
            when it issued none.
        key_names: distinct ticket key names in hex, in order first seen, from
            stateless tickets only (offered ones and received ones). ``run_check``
            always fills it; ``None`` (unknown) is for results from elsewhere.
        workers: distinct ``X-Worker`` values, in order first seen.
        errors: connections that failed.
        verdict: one line for an operator.
        server: for a ``tlsresume serve``, its counters (see :func:`server_report`);
            ``None`` for other servers or with ``server_stats=False``.
        cache: the client session cache's counters at the end
            (:meth:`tlsresume.ClientSessionCache.stats`).
        cache_load: the cache file loaded before the first connection, or ``None``.
        cache_save: the cache file written at the end, or ``None``.
        cache_saved: sessions written to ``cache_save`` (``None``: not written).
        cache_error: why ``cache_save`` could not be written, or ``None``.
        attempts: per-connection details.
    """

    host: str
    port: int
    n: int
    tls_version: str | None
    protocol: str | None = None
    possible: int = 0
    resumed: int = 0
    by_ticket: int = 0
    by_stateful_ticket: int = 0
    by_session_id: int = 0
    ticket_lifetime_hint: int | None = None
    ticket_kind: str | None = None
    key_names: list[str] | None = None
    workers: list[str] = field(default_factory=list)
    errors: int = 0
    verdict: str = ""
    server: dict[str, Any] | None = None
    cache: dict[str, int] = field(default_factory=dict)
    cache_load: str | None = None
    cache_save: str | None = None
    cache_saved: int | None = None
    cache_error: str | None = None
    attempts: list[Attempt] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (for ``json.dumps``)."""
        return dataclasses.asdict(self)

    def to_json(self, *, indent: int | None = 2) -> str:
        """The result as JSON text."""
        return json.dumps(self.to_dict(), indent=indent)

    def summary(self) -> str:
        """A few human-readable lines (what ``tlsresume check`` prints)."""
        names = "unknown" if self.key_names is None else str(len(self.key_names))
        stateful_note = (
            " (TLS 1.3 stateful tickets: IDs into the server's session cache)"
            if self.by_stateful_ticket
            else ""
        )
        if self.cache_load is None:
            resumed = f"{self.resumed}/{self.possible} reconnections"
        else:
            resumed = f"{self.resumed}/{self.possible} connections ({_first_text(self)})"
        lines = [
            f"target           {self.host}:{self.port} ({self.protocol or 'no connection'})",
            f"resumed          {resumed}",
            f"  by ticket      {self.by_ticket}",
            f"  by ID ticket   {self.by_stateful_ticket}{stateful_note}",
            f"  by session ID  {self.by_session_id}",
            "ticket lifetime  "
            + ("none" if self.ticket_lifetime_hint is None else f"{self.ticket_lifetime_hint} s"),
            f"ticket kind      {self.ticket_kind or 'no tickets'}",
            f"ticket key names {names}"
            + (f" ({', '.join(k[:8] + '…' for k in self.key_names)})" if self.key_names else ""),
            f"workers seen     {len(self.workers) if self.workers else 'unknown (no X-Worker)'}",
        ]
        if self.errors:
            lines.append(f"failed           {self.errors}/{self.n} connections")
        if self.server is not None:
            lines.extend(_server_lines(self.server))
        if self.cache:
            lines.append(f"client cache     {_cache_text(self.cache)}")
        if self.cache_load is not None:
            loaded = _sessions(self.cache.get("loaded", 0))
            lines.append(f"cache file       loaded {loaded} from {self.cache_load}")
        if self.cache_save is not None:
            saved = (
                f"saved {_sessions(self.cache_saved)} to {self.cache_save}"
                if self.cache_saved is not None
                else f"NOT saved: {self.cache_error}"
            )
            lines.append(f"cache file       {saved}")
        lines.append(f"verdict          {self.verdict}")
        return "\n".join(lines)


# The client cache counters shown in the summary, in order (all are in the JSON).
_CACHE_SHOWN = (
    "offered",
    "resumed",
    "rejected",
    "misses",
    "stored",
    "loaded",
    "evicted",
    "expired",
    "withheld_unsafe",
)


def _sessions(count: int) -> str:
    return f"{count} session" + ("" if count == 1 else "s")


def _cache_text(stats: dict[str, int]) -> str:
    text = ", ".join(f"{key} {stats[key]}" for key in _CACHE_SHOWN if key in stats)
    return text + f"; holds {_sessions(stats.get('sessions', 0))}"


def _first_text(result: CheckResult) -> str:
    """How the first connection of a check that loaded a cache file went."""
    if not result.attempts:
        return "no connection"
    first = result.attempts[0]
    if first.error is not None:
        return "the first failed"
    if first.resumed:
        return "the first resumed from the loaded cache"
    if first.offered:
        return "the first offered a loaded session; the server did a full handshake"
    return "the loaded cache had no session for the first"


def _store_text(values: dict[str, Any], single_use: bool) -> str:
    text = ", ".join(f"{key} {values[key]}" for key in _STORE_SHOWN if key in values)
    if single_use:
        text += f", consumed {values.get('consumed', 0)} (single use)"
    return text


def _ring_text(values: dict[str, Any]) -> str:
    def get(key: str) -> int:
        return int(values.get(key, 0))

    resumed = get("resumed_current") + get("resumed_renewed")
    rejected = get("rejected_unknown") + get("rejected_expired")
    return (
        f"tickets issued {get('tickets_issued')}, resumed {resumed} "
        f"(current key {get('resumed_current')}, renewed {get('resumed_renewed')}), "
        f"rejected {rejected} (unknown {get('rejected_unknown')}, "
        f"expired {get('rejected_expired')}), rotations {get('rotations')}, "
        f"errors {get('errors')}"
    )


def _server_lines(server: dict[str, Any]) -> list[str]:
    """The summary lines for a tlsresume serve's counters."""
    store, ring = server.get("store"), server.get("ring")
    head = (
        f"server           tlsresume serve pid {server.get('pid')}, "
        f"{server.get('workers')} workers, tickets {'on' if server.get('tickets') else 'off'}"
    )
    if ring is None and store is None:
        return [head + ": shares nothing (no key ring, no session store)"]
    during = all(r is None or r.get("during_check") is not None for r in (ring, store))
    scope = "moved during this check" if during else "since the server started"
    lines = [head + f"; counters {scope}:"]
    if store is not None:
        values = store["during_check"] if during else store["total"]
        single_use = bool(store.get("settings", {}).get("single_use"))
        lines.append(f"  store          {_store_text(values, single_use)}")
    if ring is not None:
        values = ring["during_check"] if during else ring["total"]
        lines.append(f"  ring           {_ring_text(values)}")
    return lines


def parse_hostport(text: str, default_port: int = 443) -> tuple[str, int]:
    """Split ``HOST:PORT``, ``[IPv6]:PORT``, ``HOST`` or ``[IPv6]``.

    Raises:
        ValueError: the port is not a number in 1..65535, or brackets don't match.
    """
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"missing ']' in {text!r}; write IPv6 addresses as [::1]:443")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"expected ':PORT' after ']' in {text!r}")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if not host:
        raise ValueError(f"no host in {text!r}; expected HOST:PORT")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"bad port {port_text!r} in {text!r}; expected 1..65535")
    return host, int(port_text)


def _client_context(tls_version: str | None, cafile: str | None, insecure: bool) -> ssl.SSLContext:
    """A context without the cache, for the stats requests (they must offer nothing)."""
    if insecure:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=cafile)
    if tls_version is not None:
        ctx.minimum_version = ctx.maximum_version = _TLS_VERSIONS[tls_version]
    return ctx


def _cache_context(
    cache: ClientSessionCache, tls_version: str | None, cafile: str | None, insecure: bool
) -> ClientContext:
    """The check's own context: the same settings, with the session cache attached."""
    if insecure:
        ctx = ClientContext(cache=cache)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = client_context(cache, cafile=cafile)
    if tls_version is not None:
        ctx.minimum_version = ctx.maximum_version = _TLS_VERSIONS[tls_version]
    return ctx


def _cache_file_key(key: bytes | None, insecure_plaintext: bool) -> bytes | None:
    """Check the cache file key before any connection is made (a check that ends in
    a refused save would have been for nothing)."""
    if key is None:
        if not insecure_plaintext:
            raise ValueError(
                "a session cache file holds the sessions' master secrets: give cache_key= "
                f"({KEY_SIZE} bytes) or, knowingly, insecure_plaintext_cache=True"
            )
        return None
    if not isinstance(key, bytes):
        raise TypeError(f"cache_key must be bytes, not {type(key).__name__}")
    if len(key) != KEY_SIZE:
        raise ValueError(f"cache_key must be {KEY_SIZE} bytes (AES-256-GCM), not {len(key)}")
    return key


def _read_response(tls: ssl.SSLSocket) -> bytes:
    """Read until the server closes (it sends ``Connection: close``)."""
    data = bytearray()
    while len(data) < _MAX_RESPONSE:
        try:
            chunk = tls.recv(65536)
        except ssl.SSLZeroReturnError:
            break
        if not chunk:
            break
        data += chunk
    return bytes(data)


def _header(response: bytes, name: str) -> str | None:
    head = response.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    for line in head.split("\r\n")[1:]:
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == name.lower():
            return value.strip()
    return None


def ticket_kind(ticket: bytes | None) -> str:
    """``"stateful"`` for a ticket of at most :data:`STATEFUL_TICKET_MAX` bytes (an ID
    into the server's cache), ``"stateless"`` for a longer one, ``"unknown"`` when
    the bytes could not be read (``None``)."""
    if ticket is None:
        return "unknown"
    return "stateful" if len(ticket) <= STATEFUL_TICKET_MAX else "stateless"


def _https_get(
    ctx: ssl.SSLContext, host: str, port: int, sni: str, path: str, timeout: float
) -> bytes:
    with socket.create_connection((host, port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni) as tls:
            request = (
                f"GET {path} HTTP/1.1\r\nHost: {sni}\r\n"
                "User-Agent: tlsresume-check\r\nConnection: close\r\n\r\n"
            )
            tls.sendall(request.encode("ascii"))
            return _read_response(tls)


def fetch_server_stats(
    ctx: ssl.SSLContext, host: str, port: int, sni: str, timeout: float
) -> dict[str, Any] | None:
    """GET a ``tlsresume serve``'s counters (:data:`tlsresume.serve.STATS_PATH`).

    Returns:
        The parsed JSON object, or ``None`` for anything but a 200 answer whose body
        is a tlsresume serve's stats object (other servers, errors, timeouts): the
        check never fails because of it.
    """
    from tlsresume.serve import STATS_PATH, STATS_SERVER_ID

    try:
        response = _https_get(ctx, host, port, sni, STATS_PATH, timeout)
    except (OSError, ValueError):
        return None
    head, _, body = response.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    if len(status) < 2 or status[1] != b"200":
        return None
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    if not isinstance(payload, dict) or payload.get("server") != STATS_SERVER_ID:
        return None
    return payload


def server_report(before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, Any]:
    """What the server's counters say about a check (a pure function of two snapshots).

    Args:
        before: the stats object fetched before the first connection, or ``None``.
        after: the one fetched after the last.

    Returns:
        ``{"pid", "workers", "tickets", "version", "ring", "store"}`` where each
        region is ``None`` or ``{"name", "settings", "total", "during_check"}``:
        ``total`` is since the server started, ``during_check`` what moved between
        the two snapshots (counters subtracted, gauges as after; ``None`` without
        ``before`` or if the region changed name, i.e. the server restarted). All
        clients of the server count, and ``during_check`` includes the full
        handshake of the final stats request itself (tickets or a stored session),
        but no lookup: that request offers no session.
    """
    from tlsresume.stats import counter_delta

    out: dict[str, Any] = {key: after.get(key) for key in ("pid", "workers", "tickets", "version")}
    for kind in ("ring", "store"):
        region = after.get(kind)
        if not isinstance(region, dict) or not isinstance(region.get("stats"), dict):
            out[kind] = None
            continue
        previous = (before or {}).get(kind)
        during = None
        if (
            isinstance(previous, dict)
            and previous.get("name") == region.get("name")
            and isinstance(previous.get("stats"), dict)
        ):
            during = counter_delta(kind, previous["stats"], region["stats"])
        out[kind] = {
            "name": region.get("name"),
            "settings": region.get("settings", {}),
            "total": region["stats"],
            "during_check": during,
        }
    return out


def run_check(
    host: str,
    port: int,
    n: int = 20,
    *,
    tls_version: str | None = None,
    cafile: str | None = None,
    insecure: bool = False,
    servername: str | None = None,
    timeout: float = 10.0,
    path: str = "/",
    server_stats: bool = True,
    load: str | os.PathLike[str] | None = None,
    save: str | os.PathLike[str] | None = None,
    cache_key: bytes | None = None,
    insecure_plaintext_cache: bool = False,
) -> CheckResult:
    """Connect ``n`` times through a client session cache and report what resumed.

    Args:
        host: address or name to connect to.
        port: TCP port.
        n: connections to make (the first is a full handshake unless ``load``
            gave the cache a session for this server).
        tls_version: ``"1.2"`` or ``"1.3"`` to pin the version, ``None`` for any.
        cafile: PEM file of trusted certificates (default: the system store).
        insecure: skip certificate verification (throwaway certificates).
        servername: SNI and the name to verify (default ``host``).
        timeout: seconds per connection for connect, handshake and response.
        path: request target.
        server_stats: ask the server for its counters before and after (answered
            by ``tlsresume serve`` only; one ignored request to any other server).
        load: a cache file (:meth:`ClientSessionCache.save`) to load before the
            first connection; then all ``n`` connections may resume. A missing,
            unreadable or tampered file, or the wrong key, logs a warning on the
            ``tlsresume.client`` logger and loads nothing; the check goes on.
        save: where to save the cache after the last connection (atomically, mode
            0600); a failure is reported in ``cache_error``, not raised.
        cache_key: the 32-byte key that seals the cache file (AES-256-GCM).
        insecure_plaintext_cache: without ``cache_key``, read and write the file in
            plaintext. It holds the sessions' master secrets: whoever reads it can
            decrypt those sessions, whoever writes it can impersonate the servers.

    Returns:
        The counts, names, cache counters and verdict.

    Raises:
        ValueError: ``n`` < 1, ``tls_version`` unknown, or ``load``/``save``
            without ``cache_key`` or ``insecure_plaintext_cache``, or a key that is
            not 32 bytes.
        TypeError: ``cache_key`` is not bytes.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, not {n}")
    if tls_version is not None and tls_version not in _TLS_VERSIONS:
        raise ValueError(f"tls_version must be '1.2' or '1.3', not {tls_version!r}")
    key = None
    if load is not None or save is not None:
        key = _cache_file_key(cache_key, insecure_plaintext_cache)
    plaintext = key is None  # only reached with the explicit opt-in
    cache = ClientSessionCache()
    ctx = _cache_context(cache, tls_version, cafile, insecure)
    sni = servername or host
    key_names: list[str] = []
    result = CheckResult(
        host=host, port=port, n=n, tls_version=tls_version, possible=n - 1, key_names=key_names
    )
    if load is not None:
        result.cache_load = os.fspath(load)
        result.possible = n
        cache.load(load, key, insecure_plaintext=plaintext)
    protocols: list[str] = []
    kinds: list[str] = []
    plain = _client_context(tls_version, cafile, insecure) if server_stats else None
    before = fetch_server_stats(plain, host, port, sni, timeout) if plain else None

    for i in range(n):
        attempt = Attempt(index=i)
        result.attempts.append(attempt)
        try:
            new_session = _connect(ctx, attempt, host, port, sni, path, timeout)
        except (OSError, ValueError) as exc:
            # One failed connection is a finding, not the end of the check.
            attempt.error = f"{type(exc).__name__}: {exc}"
            result.errors += 1
            continue

        if attempt.resumed and attempt.offered:
            result.resumed += 1
            how = _resumed_by(attempt)
            setattr(result, how, getattr(result, how) + 1)
        if attempt.version and attempt.version not in protocols:
            protocols.append(attempt.version)
        if attempt.worker and attempt.worker not in result.workers:
            result.workers.append(attempt.worker)
        if new_session is not None and new_session.has_ticket:
            result.ticket_lifetime_hint = new_session.ticket_lifetime_hint
            ticket = session_ticket(new_session)
            kind = ticket_kind(ticket)
            if kind not in kinds:
                kinds.append(kind)
            # Only a stateless ticket starts with the key name; a stateful one is an ID.
            if kind == "stateless" and ticket is not None:
                attempt.key_name = ticket[:16].hex()
        for name in (attempt.offered_key_name, attempt.key_name):
            if name is not None and name not in key_names:
                key_names.append(name)

    result.protocol = "/".join(protocols) or None
    result.ticket_kind = kinds[0] if len(kinds) == 1 else ("mixed" if kinds else None)
    if plain is not None and before is not None:
        after = fetch_server_stats(plain, host, port, sni, timeout)
        if after is not None:
            result.server = server_report(before, after)
    if save is not None:
        result.cache_save = os.fspath(save)
        try:
            result.cache_saved = cache.save(save, key, insecure_plaintext=plaintext)
        except OSError as exc:
            result.cache_error = f"cannot write {result.cache_save}: {exc}"
    result.cache = cache.stats()
    result.verdict = verdict(result)
    return result


def _connect(
    ctx: ClientContext,
    attempt: Attempt,
    host: str,
    port: int,
    sni: str,
    path: str,
    timeout: float,
) -> ssl.SSLSession | None:
    """One connection of a check: fills ``attempt``, returns the session it ended with.

    The cache offers its session when the socket is wrapped, so what was offered is
    recorded before the handshake, and stays recorded if the handshake fails.
    """
    with socket.create_connection((host, port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni, do_handshake_on_connect=False) as tls:
            attempt.offered = bool(offered(tls))
            ticket = offered_ticket(tls)
            attempt.offered_ticket = bool(ticket)
            if ticket:
                attempt.offered_ticket_kind = ticket_kind(ticket)
                if attempt.offered_ticket_kind == "stateless":
                    attempt.offered_key_name = ticket[:16].hex()
            tls.do_handshake()
            request = (
                f"GET {path} HTTP/1.1\r\nHost: {sni}\r\n"
                "User-Agent: tlsresume-check\r\nConnection: close\r\n\r\n"
            )
            tls.sendall(request.encode("ascii"))
            response = _read_response(tls)
            attempt.resumed = bool(tls.session_reused)
            attempt.version = tls.version()
            attempt.worker = _header(response, "X-Worker")
            return tls.session


def _resumed_by(attempt: Attempt) -> str:
    """The :class:`CheckResult` counter a resumed attempt belongs to."""
    if attempt.offered_ticket_kind == "stateful":
        return "by_stateful_ticket"
    if attempt.offered_ticket:
        return "by_ticket"
    return "by_session_id"


def verdict(result: CheckResult) -> str:
    """The one-line conclusion of a check (a pure function of the counts).

    With a cache file loaded (``cache_load``), what happened to the first connection
    comes first, then the verdict on the reconnections.

    Args:
        result: a check whose counts are filled in.

    Returns:
        One sentence.
    """
    if result.n - result.errors == 0:
        return "could not complete a single connection: check the address, port and certificate"
    if result.cache_load is None or not result.attempts:
        return _reconnection_verdict(result)
    first = result.attempts[0]
    if first.error is not None:
        note = "the first connection failed"
    elif first.resumed:
        note = "the first connection resumed from the loaded cache file"
    elif first.offered:
        note = (
            "the server did not resume the session loaded from the cache file (new "
            "ticket keys, a restart, or its session cache dropped it)"
        )
    else:
        note = (
            "the cache file gave the first connection no session (missing, unreadable, "
            "wrong key, expired, or saved for another server or other trust settings)"
        )
    if result.n == 1:
        return note
    rest = dataclasses.replace(
        result,
        n=result.n - 1,
        possible=result.possible - 1,
        errors=result.errors - (first.error is not None),
        resumed=result.resumed - first.resumed,
    )
    if first.resumed:
        how = _resumed_by(first)
        setattr(rest, how, getattr(rest, how) - 1)
    return f"{note}; {_reconnection_verdict(rest)}"


def _reconnection_verdict(result: CheckResult) -> str:
    """The verdict on the reconnections (the connections after the first)."""
    ok = result.n - result.errors
    if ok == 0:
        return "could not complete a single connection: check the address, port and certificate"
    if result.possible == 0:
        return "one connection cannot show resumption: use -n 2 or more"
    names = result.key_names
    workers = len(result.workers)
    across = f" across {workers} workers" if workers > 1 else ""
    if result.resumed == result.possible:
        how = " and ".join(
            label
            for count, label in (
                (result.by_ticket, "tickets"),
                (result.by_stateful_ticket, "stateful tickets (the server's session cache)"),
                (result.by_session_id, "session IDs"),
            )
            if count
        )
        if names is not None and len(names) > 1:
            return (
                f"all {result.possible} reconnections resumed{across} by {how}; the "
                f"{len(names)} ticket key names are rotations of one shared key ring"
            )
        return f"all {result.possible} reconnections resumed{across} by {how}: resumption works"
    if names is not None and len(names) > 1 and result.resumed < result.possible:
        return (
            f"server hands out {len(names)} different ticket key names: "
            "its workers do not share ticket keys"
        )
    if result.resumed == 0 and result.ticket_lifetime_hint is None:
        return "server issues no session tickets and resumed nothing"
    if result.resumed == 0 and result.ticket_kind == "stateful":
        if workers > 1:
            return (
                f"nothing resumed across {workers} workers: their TLS 1.3 tickets are "
                "stateful (IDs into a session cache) and the cache is not shared"
            )
        return (
            "server issues stateful TLS 1.3 tickets (IDs into its session cache) but "
            "resumed none: its cache drops or never keeps the sessions"
        )
    if result.resumed == 0:
        if workers > 1:
            return (
                f"nothing resumed across {workers} workers: they do not share "
                "ticket keys or a session cache"
            )
        return "server issues tickets but resumed none of them"
    part = f"{result.resumed} of {result.possible} reconnections resumed{across}"
    if workers > 1 and names is None:
        return part + ": likely only when the same worker answered twice (keys not shared)"
    return part + ": resumption is unreliable"
