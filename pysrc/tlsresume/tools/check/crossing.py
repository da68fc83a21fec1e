"""The crossing probe: do two endpoints resume each other's sessions (``check A
--against B``)? How an operator proves a key file shared by a mixed fleet (tlsresume,
nginx, HAProxy) or a migration works before it carries traffic.

For each direction (A's sessions offered to B, B's to A), each TLS version and each
way a client resumes (a ticket; a session ID, as curl does over TLS 1.2), it takes a
session from one endpoint as an ordinary client, offers it to the other, and when the
other does not resume it, names the most likely reason it can tell apart:

* different ticket keys: the ticket's key name (its first 16 bytes) is not the name
  the other endpoint issues under;
* the same key name but no resumption: the session ID contexts differ (OpenSSL
  stores the server's in every session and resumes a session only under the same
  one), or the cipher or protocol does;
* no ticket to offer: the session can only be resumed by session ID, which needs a
  session cache the two endpoints share; or the ticket is stateful (an ID into the
  issuer's cache).
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import asdict, dataclass

from .result import STATEFUL_TICKET_MAX
from .tls import _client_context, _read_response

#: The ways a client resumes, per TLS version: TLS 1.3 has tickets only (stateless,
#: or stateful when the server turned tickets off).
MODES = {"1.2": ("ticket", "session ID"), "1.3": ("ticket",)}


@dataclass
class Crossing:
    """One session taken from ``source`` and offered to ``target``.

    Attributes:
        source, target: ``host:port``.
        version: ``"1.2"`` or ``"1.3"``.
        mode: ``"ticket"`` or ``"session ID"`` (the client sends no ticket extension).
        resumed: the target resumed the source's session (``None``: untested).
        source_key, target_key: the hex key names of the source's ticket and of a
            ticket the target issued itself (``None``: no stateless ticket).
        reason: why not, or what could not be tried; empty when it resumed.
    """

    source: str
    target: str
    version: str
    mode: str
    resumed: bool | None = None
    source_key: str | None = None
    target_key: str | None = None
    reason: str = ""


@dataclass
class _Visit:
    session: ssl.SSLSession | None = None
    resumed: bool = False
    cipher: str | None = None
    error: str | None = None


def _visit(
    ctx: ssl.SSLContext,
    address: tuple[str, int],
    sni: str,
    timeout: float,
    session: ssl.SSLSession | None = None,
) -> _Visit:
    """One GET (the whole response is read, so TLS 1.3 tickets have arrived)."""
    try:
        with socket.create_connection(address, timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname=sni, session=session) as tls:
                request = (
                    f"GET / HTTP/1.1\r\nHost: {sni}\r\n"
                    "User-Agent: tlsresume-check\r\nConnection: close\r\n\r\n"
                )
                tls.sendall(request.encode("ascii"))
                _read_response(tls)
                cipher = tls.cipher()
                return _Visit(tls.session, bool(tls.session_reused), cipher and cipher[0])
    except (OSError, ssl.SSLError, ValueError) as exc:
        return _Visit(error=f"{type(exc).__name__}: {exc}")


def _key_name(session: ssl.SSLSession | None) -> tuple[str | None, bool]:
    """(hex key name of a stateless ticket, whether there is a ticket at all)."""
    from tlsresume.inspect import session_ticket

    ticket = session_ticket(session) if session is not None else None
    if ticket is None:
        return None, False
    if len(ticket) <= STATEFUL_TICKET_MAX:
        return None, True
    return ticket[:16].hex(), True


def _why_not(c: Crossing, got: _Visit, own: _Visit, has_ticket: bool, stateful: bool) -> str:
    """The most likely reason ``c.target`` did not resume ``c.source``'s session."""
    if c.mode == "session ID":
        return (
            f"{c.target} does not resume {c.source}'s session IDs: they share no session "
            "cache (or their session ID contexts differ); clients that resume by session "
            "ID (curl over TLS 1.2) resume only where their session began"
        )
    if not has_ticket:
        return f"{c.source} issued no ticket (tickets are off there): nothing to offer"
    if stateful:
        return (
            f"{c.source}'s tickets are stateful (IDs into its session cache, tickets off "
            f"with TLS 1.3): only a server sharing that cache resumes them"
        )
    if c.target_key is None:
        return f"{c.target} issues no stateless tickets (tickets are off there)"
    if c.target_key != c.source_key:
        return (
            f"different ticket keys: {c.source}'s ticket is under key name "
            f"{c.source_key}, {c.target} issues under {c.target_key} and did not accept it"
        )
    if got.cipher and own.cipher and got.cipher != own.cipher:
        return (
            f"the same ticket key, but the cipher differs ({c.source} chose "
            f"{got.cipher}, {c.target} {own.cipher}); OpenSSL resumes a session only with "
            "its cipher (its hash in TLS 1.3)"
        )
    return (
        "the same ticket key, so the session ID contexts differ (OpenSSL resumes a "
        "session only under the context it was made in; tlsresume's own differs between "
        "servers with other certificates, client verification or service names): give "
        "both the fleet's value (session_id_context=, serve --session-id-context; see "
        "docs/interop.md)"
    )


def crossing(
    source: tuple[str, int],
    target: tuple[str, int],
    version: str,
    mode: str,
    *,
    cafile: str | None = None,
    insecure: bool = False,
    servername: str | None = None,
    timeout: float = 10.0,
) -> Crossing:
    """Take one session from ``source`` and offer it to ``target``."""
    label = [f"{h}:{p}" if ":" not in h else f"[{h}]:{p}" for h, p in (source, target)]
    c = Crossing(label[0], label[1], version, mode)
    ctx = _client_context(version, cafile, insecure)
    if mode == "session ID":
        ctx.options |= ssl.OP_NO_TICKET  # no ticket extension, as curl over TLS 1.2
    first = _visit(ctx, source, servername or source[0], timeout)
    if first.session is None:
        c.reason = f"no session from {c.source}: {first.error or 'no answer'}"
        return c
    own = _visit(ctx, target, servername or target[0], timeout)
    if own.session is None:
        c.reason = f"cannot reach {c.target}: {own.error or 'no answer'}"
        return c
    c.source_key, has_ticket = _key_name(first.session)
    c.target_key, _ = _key_name(own.session)
    got = _visit(ctx, target, servername or target[0], timeout, first.session)
    if got.error is not None:
        c.reason = f"{c.target} failed the connection offering the session: {got.error}"
        return c
    c.resumed = got.resumed
    if not got.resumed:
        stateful = has_ticket and c.source_key is None
        c.reason = _why_not(c, got, own, has_ticket, stateful)
    return c


def crossing_probe(
    a: tuple[str, int],
    b: tuple[str, int],
    *,
    tls_version: str | None = None,
    cafile: str | None = None,
    insecure: bool = False,
    servername: str | None = None,
    timeout: float = 10.0,
) -> list[Crossing]:
    """Every crossing both ways: A's sessions offered to B, then B's to A, for each
    TLS version (``tls_version`` keeps one) and each resumption mode."""
    versions = [tls_version] if tls_version else list(MODES)
    return [
        crossing(
            src,
            dst,
            v,
            mode,
            cafile=cafile,
            insecure=insecure,
            servername=servername,
            timeout=timeout,
        )
        for src, dst in ((a, b), (b, a))
        for v in versions
        for mode in MODES[v]
    ]


def accepts(crossings: list[Crossing], source: str, target: str) -> bool:
    """Whether ``target`` resumed every ticket ``source`` issued (every version)."""
    rows = [c for c in crossings if (c.source, c.target) == (source, target)]
    return bool(rows) and all(c.resumed for c in rows if c.mode == "ticket")


def crossing_report(crossings: list[Crossing]) -> list[str]:
    """Lines for the operator: one verdict per direction, then one line per crossing."""
    lines: list[str] = []
    pairs = dict.fromkeys((c.source, c.target) for c in crossings)
    for source, target in pairs:
        verdict = "accepts" if accepts(crossings, source, target) else "does NOT accept"
        lines.append(f"crossing         {target} {verdict} the tickets of {source}")
        for c in crossings:
            if (c.source, c.target) != (source, target):
                continue
            state = {True: "resumed", False: "not resumed", None: "untested"}[c.resumed]
            line = f"  TLS {c.version} {c.mode:<10} {state}"
            if c.reason:
                line += f": {c.reason}"
            lines.append(line)
    return lines


def crossings_json(crossings: list[Crossing]) -> list[dict[str, object]]:
    return [asdict(c) for c in crossings]
