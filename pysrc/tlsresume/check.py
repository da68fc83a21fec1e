"""``tlsresume check``: does a server (pool) resume TLS sessions, and why not?

It connects ``n`` times as a resuming client (each connection offers the session the
previous one ended with), sends ``GET / HTTP/1.1`` and reads the whole response
(TLS 1.3 tickets arrive after the handshake, so only then is the session worth
keeping), and reports:

* how many of the ``n - 1`` reconnections resumed, by ticket or by session ID;
* the ticket lifetime hint;
* how many distinct ticket key names the server handed out: OpenSSL-style tickets
  begin with the 16-byte name of the key that encrypted them, so a pool whose
  workers each have their own keys shows one name per worker;
* how many distinct workers answered (from the ``X-Worker`` header, if sent);

and a one-line verdict an operator can read at a glance.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Attempt", "CheckResult", "run_check", "parse_hostport", "verdict"]

_TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
_MAX_RESPONSE = 1 << 20  # we only need the headers; never buffer an endless stream


@dataclass
class Attempt:
    """One connection of a check.

    Attributes:
        index: 0 for the first (full) handshake, then 1, 2, ...
        resumed: the server accepted the offered session.
        offered: a session was offered (every attempt but the first, unless the
            previous one failed).
        offered_ticket: the offered session carried a ticket.
        worker: the ``X-Worker`` header of the response, if any.
        key_name: hex of the first 16 bytes of the ticket this connection ended with,
            or ``None`` when there was no ticket or it could not be read.
        version: negotiated protocol, e.g. ``"TLSv1.3"``.
        error: why the connection failed, or ``None``.
    """

    index: int
    resumed: bool = False
    offered: bool = False
    offered_ticket: bool = False
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
        possible: reconnections that could have resumed (``n - 1``).
        resumed: reconnections that did resume.
        by_ticket: resumptions whose offered session carried a ticket.
        by_session_id: resumptions of sessions without a ticket (server cache).
        ticket_lifetime_hint: seconds, from the last session (``None`` without one).
        key_names: distinct ticket key names in hex, in order first seen; ``None``
            when ticket bytes cannot be read (tlsresume's core is not available).
        workers: distinct ``X-Worker`` values, in order first seen.
        errors: connections that failed.
        verdict: one line for an operator.
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
    by_session_id: int = 0
    ticket_lifetime_hint: int | None = None
    key_names: list[str] | None = None
    workers: list[str] = field(default_factory=list)
    errors: int = 0
    verdict: str = ""
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
        lines = [
            f"target           {self.host}:{self.port} ({self.protocol or 'no connection'})",
            f"resumed          {self.resumed}/{self.possible} reconnections",
            f"  by ticket      {self.by_ticket}",
            f"  by session ID  {self.by_session_id}",
            "ticket lifetime  "
            + ("none" if self.ticket_lifetime_hint is None else f"{self.ticket_lifetime_hint} s"),
            f"ticket key names {names}"
            + (f" ({', '.join(k[:8] + '…' for k in self.key_names)})" if self.key_names else ""),
            f"workers seen     {len(self.workers) if self.workers else 'unknown (no X-Worker)'}",
        ]
        if self.errors:
            lines.append(f"failed           {self.errors}/{self.n} connections")
        lines.append(f"verdict          {self.verdict}")
        return "\n".join(lines)


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


def _ticket_reader() -> Any:
    """``tlsresume.session_ticket`` if the core is usable, else ``None``."""
    try:
        import tlsresume

        return tlsresume.session_ticket
    except (ImportError, AttributeError):
        return None
    except Exception:  # the core refused to load (e.g. unreachable OpenSSL)
        return None


def _client_context(tls_version: str | None, cafile: str | None, insecure: bool) -> ssl.SSLContext:
    if insecure:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=cafile)
    if tls_version is not None:
        ctx.minimum_version = ctx.maximum_version = _TLS_VERSIONS[tls_version]
    return ctx


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
) -> CheckResult:
    """Connect ``n`` times as a resuming client and report what resumed.

    Args:
        host: address or name to connect to.
        port: TCP port.
        n: connections to make (the first is always a full handshake).
        tls_version: ``"1.2"`` or ``"1.3"`` to pin the version, ``None`` for any.
        cafile: PEM file of trusted certificates (default: the system store).
        insecure: skip certificate verification (throwaway certificates).
        servername: SNI and the name to verify (default ``host``).
        timeout: seconds per connection for connect, handshake and response.
        path: request target.

    Returns:
        The counts, names and verdict.

    Raises:
        ValueError: ``n`` < 1 or ``tls_version`` unknown.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, not {n}")
    if tls_version is not None and tls_version not in _TLS_VERSIONS:
        raise ValueError(f"tls_version must be '1.2' or '1.3', not {tls_version!r}")
    ctx = _client_context(tls_version, cafile, insecure)
    read_ticket = _ticket_reader()
    sni = servername or host
    result = CheckResult(host=host, port=port, n=n, tls_version=tls_version, possible=n - 1)
    if read_ticket is not None:
        result.key_names = []
    protocols: list[str] = []
    session: ssl.SSLSession | None = None

    for i in range(n):
        attempt = Attempt(index=i, offered=session is not None)
        attempt.offered_ticket = bool(session is not None and session.has_ticket)
        result.attempts.append(attempt)
        try:
            with socket.create_connection((host, port), timeout=timeout) as raw:
                with ctx.wrap_socket(raw, server_hostname=sni, session=session) as tls:
                    request = (
                        f"GET {path} HTTP/1.1\r\nHost: {sni}\r\n"
                        "User-Agent: tlsresume-check\r\nConnection: close\r\n\r\n"
                    )
                    tls.sendall(request.encode("ascii"))
                    response = _read_response(tls)
                    attempt.resumed = bool(tls.session_reused)
                    attempt.version = tls.version()
                    attempt.worker = _header(response, "X-Worker")
                    new_session = tls.session
        except (OSError, ValueError) as exc:
            # One failed connection is a finding, not the end of the check; the next
            # attempt starts over with a full handshake.
            attempt.error = f"{type(exc).__name__}: {exc}"
            result.errors += 1
            session = None
            continue

        if attempt.resumed and attempt.offered:
            result.resumed += 1
            if attempt.offered_ticket:
                result.by_ticket += 1
            else:
                result.by_session_id += 1
        if attempt.version and attempt.version not in protocols:
            protocols.append(attempt.version)
        if attempt.worker and attempt.worker not in result.workers:
            result.workers.append(attempt.worker)
        if new_session is not None:
            if new_session.has_ticket:
                result.ticket_lifetime_hint = new_session.ticket_lifetime_hint
                if read_ticket is not None and result.key_names is not None:
                    ticket = read_ticket(new_session)
                    if ticket and len(ticket) >= 16:
                        attempt.key_name = ticket[:16].hex()
                        if attempt.key_name not in result.key_names:
                            result.key_names.append(attempt.key_name)
        session = new_session

    result.protocol = "/".join(protocols) or None
    result.verdict = verdict(result)
    return result


def verdict(result: CheckResult) -> str:
    """The one-line conclusion of a check (a pure function of the counts).

    Args:
        result: a check whose counts are filled in.

    Returns:
        One sentence.
    """
    ok = result.n - result.errors
    if ok == 0:
        return "could not complete a single connection: check the address, port and certificate"
    if result.possible == 0:
        return "one connection cannot show resumption: use -n 2 or more"
    names = result.key_names
    workers = len(result.workers)
    across = f" across {workers} workers" if workers > 1 else ""
    if result.resumed == result.possible:
        how = "tickets" if result.by_ticket else "session IDs"
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
