"""What ``tlsresume check`` found: :class:`Attempt`, :class:`CheckResult`, the
summary lines and the one-line :func:`verdict`. Pure: no sockets.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from .policy import CrossPolicy

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
        failure: when every connection failed, why, in one line with the fix
            (:func:`tlsresume.tools.check.failure.explain`); else ``None``.
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
    failure: str | None = None
    against: CrossPolicy | None = None
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
        lines = []
        if self.against is not None and self.against.severity == "critical":
            # The most serious finding a check can make comes first.
            lines.append(f"CRITICAL         {self.against.finding}")
        lines += [
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
        if self.against is not None and self.against.severity != "critical":
            lines.append(f"against          {self.against.finding}")
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

    resumed = get("resumed_current") + get("resumed_older_key")
    rejected = get("rejected_unknown") + get("rejected_expired")
    return (
        f"tickets issued {get('tickets_issued')}, resumed {resumed} "
        f"(current key {get('resumed_current')}, older key {get('resumed_older_key')}), "
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
    if workers > 1 and result.ticket_kind == "stateful":
        return (
            part + ": their TLS 1.3 tickets are stateful (IDs into a session cache) and "
            "the cache is not shared, so only a return to the same worker resumes"
        )
    if workers > 1 and names is None:
        return part + ": likely only when the same worker answered twice (keys not shared)"
    return part + ": resumption is unreliable"
