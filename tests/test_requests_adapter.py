"""tlsresume.integrations.requests.ResumingAdapter against a real pre-fork server
(``tlsresume serve --workers 2``): new connections resume, the CA bundle is loaded
once per verification setting instead of once per connection, and verification
stays exactly as strict (a wrong CA and a wrong hostname fail, cached sessions or
not). Controls: stock requests resumes nothing, and loads the bundle every time."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

import tlsresume

from .conftest import ServeFactory, ServerCert

requests = pytest.importorskip("requests")

from tlsresume.integrations.requests import ResumingAdapter  # noqa: E402

pytestmark = pytest.mark.interop
CLOSE = {"Connection": "close"}  # every request on a new connection


@pytest.fixture(scope="module")
def port(serve_module: ServeFactory) -> int:
    return serve_module("--workers", "2").port


def _session(adapter: Any | None = None, verify: Any = True) -> Any:
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE and proxies of the machine stay out
    session.verify = verify
    if adapter is not None:
        session.mount("https://", adapter)
    return session


def _reused(session: Any, port: int, n: int) -> list[bool]:
    out = []
    for _ in range(n):
        r = session.get(f"https://localhost:{port}/", headers=CLOSE, timeout=10)
        assert r.status_code == 200
        out.append(r.headers["x-session-reused"] == "yes")
    return out


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every load_verify_locations call made in this process (by urllib3 or us)."""
    calls: list[Any] = []
    real = ssl.SSLContext.load_verify_locations  # tlsresume's ClientContext inherits it

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(args or kwargs)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counting)
    yield calls


def test_new_connections_resume_and_load_the_bundle_once(
    port: int, server_cert: ServerCert, loads: list[Any]
) -> None:
    """verify=<CA file>: 8 requests, each on a new connection, 7 resume, and the
    bundle is loaded once. Control: stock requests resumes none and loads the
    bundle at every connection."""
    adapter = ResumingAdapter()
    resumed = _reused(_session(adapter, verify=server_cert.cafile), port, 8)
    assert resumed == [False] + [True] * 7, resumed
    assert len(loads) == 1, loads
    del loads[:]
    stock = _reused(_session(verify=server_cert.cafile), port, 8)
    assert not any(stock), stock
    assert len(loads) == 8, loads


def test_a_given_context_serves_verify_true(port: int, server_cert: ServerCert) -> None:
    """The context given to the adapter is the one verify=True uses."""
    ctx = tlsresume.client_context(cafile=server_cert.cafile)
    adapter = ResumingAdapter(ctx)
    assert _reused(_session(adapter), port, 4) == [False, True, True, True]
    assert adapter.context_for(True) is ctx
    assert ctx.session_cache is adapter.cache


def test_wrong_ca_fails_even_with_sessions_cached(port: int, server_cert: ServerCert) -> None:
    """Sessions verified against the right CA sit in the shared cache; a request
    verifying against another CA (and the default bundle, certifi's) still fails
    its handshake: no cached session is offered where the CAs differ."""
    adapter = ResumingAdapter()
    right = _session(adapter, verify=server_cert.cafile)
    assert _reused(right, port, 3) == [False, True, True]
    other = Path(server_cert.cafile).with_name("other-ca.pem")
    trustme.CA().cert_pem.write_to_path(str(other))
    for verify in (str(other), True):
        with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
            _session(adapter, verify=verify).get(f"https://localhost:{port}/", timeout=10)
    assert adapter.cache.stats()["withheld_unsafe"] >= 2
    assert _reused(right, port, 2) == [True, True]  # the right CA still resumes


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_wrong_hostname_fails(
    serve_module: ServeFactory, ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A certificate from the trusted CA but for another name is refused, as stock
    requests refuses it; verify=False (a context of its own) accepts it, and its
    sessions are never offered to the verifying context."""
    d = tmp_path_factory.mktemp("othername")
    leaf = ca.issue_cert("other.example")
    cert, key, cafile = d / "cert.pem", d / "key.pem", d / "ca.pem"
    leaf.private_key_pem.write_to_path(str(key))
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    ca.cert_pem.write_to_path(str(cafile))
    other = serve_module("--cert", str(cert), "--key", str(key), cert=False).port
    url = f"https://localhost:{other}/"
    adapter = ResumingAdapter()
    loose = _session(adapter, verify=False)
    assert _reused(loose, other, 3) == [False, True, True]
    for session in (_session(adapter, verify=str(cafile)), _session(verify=str(cafile))):
        with pytest.raises(requests.exceptions.SSLError, match="match|mismatch"):
            session.get(url, headers=CLOSE, timeout=10)


def test_bad_arguments_are_refused_clearly(server_cert: ServerCert) -> None:
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with pytest.raises(ValueError, match="needs a client context"):
        ResumingAdapter(server_side)
    with pytest.raises(TypeError, match="must be an ssl.SSLContext"):
        ResumingAdapter("ctx")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ClientSessionCache"):
        ResumingAdapter(cache={})  # type: ignore[arg-type]
    given = ResumingAdapter(tlsresume.client_context(cafile=server_cert.cafile))
    with pytest.raises(ValueError, match="load the client certificate into that context"):
        given.context_for(True, ("cert.pem", "key.pem"))
    with pytest.raises(OSError, match="invalid path: /nonexistent/ca.pem"):
        ResumingAdapter().context_for("/nonexistent/ca.pem")
