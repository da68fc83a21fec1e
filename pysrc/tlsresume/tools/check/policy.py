"""The cross-policy probe: does a session from one server resume on another that
admits different clients? (It must not.)
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

from .tls import _client_context, _read_response


@dataclass
class CrossPolicy:
    """Whether the checked endpoint resumes sessions another endpoint issued, and
    whether the two admit the same clients (``check --against``).

    Attributes:
        other: ``host:port`` of the endpoint that issued the session.
        other_admits_anonymous: a full handshake without a client certificate (and a
            request) succeeded there; ``None`` if it could not be tried.
        target_admits_anonymous: the same against the checked endpoint.
        resumed: the checked endpoint resumed the other's session.
        served: ... and answered the request on it.
        severity: ``"critical"`` (a client the target refuses gets in through the
            other endpoint's session), ``"info"`` (sessions are shared between
            endpoints that admit the same clients), ``"ok"`` (not shared) or
            ``"untested"``.
        finding: one sentence for the operator.
    """

    other: str
    other_admits_anonymous: bool | None = None
    target_admits_anonymous: bool | None = None
    resumed: bool = False
    served: bool = False
    severity: str = "untested"
    finding: str = ""


def _anonymous_get(
    ctx: ssl.SSLContext,
    host: str,
    port: int,
    sni: str,
    path: str,
    timeout: float,
    session: ssl.SSLSession | None = None,
) -> tuple[bool, bool, ssl.SSLSession | None, str | None]:
    """One request without a client certificate. Returns (served, resumed, the
    session it ended with, why it failed)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname=sni, session=session) as tls:
                request = (
                    f"GET {path} HTTP/1.1\r\nHost: {sni}\r\n"
                    "User-Agent: tlsresume-check\r\nConnection: close\r\n\r\n"
                )
                tls.sendall(request.encode("ascii"))
                response = _read_response(tls)
                # TLS 1.3 refuses a missing certificate after the client's side of
                # the handshake is done: only an answer proves admission.
                return bool(response), bool(tls.session_reused), tls.session, None
    except (OSError, ssl.SSLError, ValueError) as exc:
        return False, False, None, f"{type(exc).__name__}: {exc}"


def cross_policy_probe(
    host: str,
    port: int,
    other_host: str,
    other_port: int,
    *,
    tls_version: str | None = None,
    cafile: str | None = None,
    insecure: bool = False,
    servername: str | None = None,
    other_servername: str | None = None,
    timeout: float = 10.0,
    path: str = "/",
) -> CrossPolicy:
    """Take a session from ``other`` as a client without a certificate and offer it
    to the target: report whether the target resumes it, and whether the target
    would have admitted that client on a full handshake.

    A target that resumes it while refusing certificate-less clients lets anyone
    past its client-certificate check who can reach the other endpoint: the two
    share ticket keys or a session store and the same session ID context.
    """
    ctx = _client_context(tls_version, cafile, insecure)
    sni, other_sni = servername or host, other_servername or servername or other_host
    label = f"{other_host}:{other_port}"
    out = CrossPolicy(other=label)
    served_other, _, session, why = _anonymous_get(
        ctx, other_host, other_port, other_sni, path, timeout
    )
    out.other_admits_anonymous = served_other
    out.target_admits_anonymous, _, _, _ = _anonymous_get(ctx, host, port, sni, path, timeout)
    if session is None or not served_other:
        out.finding = (
            f"{label} did not serve a client without a certificate ({why}), so "
            "no session could be taken from it to offer here"
        )
        return out
    out.served, out.resumed, _, _ = _anonymous_get(ctx, host, port, sni, path, timeout, session)
    if out.resumed and not out.target_admits_anonymous:
        out.severity = "critical"
        out.finding = (
            f"this endpoint resumed a session that {label} issued to a client without a "
            "certificate, although it refuses such a client on a full handshake: anyone "
            f"who reaches {label} gets past this endpoint's client-certificate check. "
            "They share ticket keys or a session store and one session ID context; with "
            "tlsresume, do not give both the same session_id_context= (the default binds "
            "sessions to each context's verification), or give them separate keys"
        )
    elif out.resumed:
        out.severity = "info"
        out.finding = (
            f"resumes sessions issued by {label}; both admit clients without a "
            "certificate, so sharing widens nothing"
        )
    else:
        out.severity = "ok"
        out.finding = f"does not resume sessions issued by {label}"
    return out
