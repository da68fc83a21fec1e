"""Running a check: connecting through the client session cache, reading the
responses, and a ``tlsresume serve``'s counters before and after.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
from typing import Any

from tlsresume._tls import TLS_VERSIONS
from tlsresume.client import (
    ClientContext,
    ClientSessionCache,
    check_cache_key,
    client_context,
    offered,
    offered_ticket,
)
from tlsresume.inspect import session_ticket

from .failure import explain
from .policy import cross_policy_probe
from .result import STATEFUL_TICKET_MAX, Attempt, CheckResult, _resumed_by, verdict
from .tls import _client_context, _read_response


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
        ctx.minimum_version = ctx.maximum_version = TLS_VERSIONS[tls_version]
    return ctx


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
    """GET a ``tlsresume serve``'s counters (:data:`tlsresume.tools.serve.STATS_PATH`).

    Returns:
        The parsed JSON object, or ``None`` for anything but a 200 answer whose body
        is a tlsresume serve's stats object (other servers, errors, timeouts): the
        check never fails because of it.
    """
    from tlsresume.tools.serve import STATS_PATH, STATS_SERVER_ID

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
    from tlsresume.regions import counter_delta

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
    against: tuple[str, int] | None = None,
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
        against: ``(host, port)`` of another endpoint: also run
            :func:`cross_policy_probe` (does this one resume that one's sessions,
            and do they admit the same clients?) into ``result.against``.

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
    if tls_version is not None and tls_version not in TLS_VERSIONS:
        raise ValueError(f"tls_version must be '1.2' or '1.3', not {tls_version!r}")
    key = None
    if load is not None or save is not None:
        # Checked before any connection is made: a check that ends in a refused
        # save would have been for nothing.
        key = check_cache_key(
            cache_key,
            insecure_plaintext_cache,
            key_arg="cache_key",
            plaintext_arg="insecure_plaintext_cache",
        )
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

    first_failure: BaseException | None = None
    for i in range(n):
        attempt = Attempt(index=i)
        result.attempts.append(attempt)
        try:
            new_session = _connect(ctx, attempt, host, port, sni, path, timeout)
        except (OSError, ValueError) as exc:
            # One failed connection is a finding, not the end of the check.
            attempt.error = f"{type(exc).__name__}: {exc}"
            result.errors += 1
            first_failure = first_failure or exc
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

    if first_failure is not None and result.errors == n:
        result.failure = explain(first_failure, host, port, sni, timeout)
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
    if against is not None:
        result.against = cross_policy_probe(
            host,
            port,
            against[0],
            against[1],
            tls_version=tls_version,
            cafile=cafile,
            insecure=insecure,
            servername=servername,
            timeout=timeout,
            path=path,
        )
    result.verdict = verdict(result)
    if result.against is not None and result.against.severity == "critical":
        result.verdict = f"CRITICAL: {result.against.finding}; {result.verdict}"
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
