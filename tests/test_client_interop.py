"""The drop-in client context against real servers in other processes: ``openssl
s_server`` and ``tlsresume serve`` (pre-fork), TLS 1.2 and 1.3, through plain
sockets, http.client, urllib3, requests, httpx (sync and async), aiohttp and
asyncio. The server says whether it resumed; plain contexts are the negative
control. Save/load across two separate processes.

One file (over 500 lines): every client library against the same module-wide
real servers, on both cache backends.
"""

from __future__ import annotations

import asyncio
import gc
import http.client
import os
import shutil
import socket
import ssl
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

import tlsresume
import tlsresume.pyclient
from tlsresume import ClientSessionCache, client_context

from .conftest import ServeFactory, ServerCert
from .support import DEFAULT_TIMEOUT, child_env, parse_response

pytestmark = pytest.mark.interop

TIMEOUT = 10.0
CONNECTIONS = 4
VERSIONS = ("1.2", "1.3")


# ---- servers ------------------------------------------------------------------------


@dataclass
class Server:
    kind: str
    port: int
    version: str


class SServer:
    """``openssl s_server -www`` on a free loopback port; killed in teardown."""

    def __init__(self, cert: ServerCert, version: str) -> None:
        if shutil.which("openssl") is None:
            pytest.skip("the openssl command is not installed")
        cmd = [
            "openssl",
            "s_server",
            "-accept",
            "127.0.0.1:0",
            "-cert",
            cert.cert,
            "-key",
            cert.key,
            "-www",
            "-tls" + version.replace(".", "_"),
        ]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + DEFAULT_TIMEOUT
        assert self.proc.stdout is not None
        lines = []
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode(errors="replace")
            lines.append(line)
            if line.startswith("ACCEPT"):
                self.port = int(line.rsplit(":", 1)[1])
                return
            if not line:
                break
        self.stop()
        raise RuntimeError(f"openssl s_server did not start: {''.join(lines)}")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture(
    scope="module",
    params=[(kind, v) for kind in ("openssl", "serve") for v in VERSIONS],
    ids=lambda p: f"{p[0]}-tls{p[1]}",
)
def server(
    request: pytest.FixtureRequest, server_cert: ServerCert, serve_module: ServeFactory
) -> Iterator[Server]:
    kind, version = request.param
    if kind == "openssl":
        s = SServer(server_cert, version)
        try:
            yield Server(kind, s.port, version)
        finally:
            s.stop()
    else:
        proc = serve_module("--workers", "2", "--tls-max", version)
        yield Server(kind, proc.port, version)


def server_resumed(status_line: str, headers: dict[str, str], body: bytes) -> bool:
    """The server's own word: tlsresume serve's X-Session-Reused header, or the
    "Reused,"/"New," line of ``openssl s_server -www``'s status page."""
    assert " 200 " in status_line + " ", status_line
    if "x-session-reused" in headers:
        return headers["x-session-reused"] == "yes"
    if b"Reused, " in body:
        return True
    assert b"New, " in body, body[:200]
    return False


def pin(ctx: ssl.SSLContext, version: str) -> ssl.SSLContext:
    ctx.minimum_version = ctx.maximum_version = getattr(
        ssl.TLSVersion, "TLSv" + version.replace(".", "_")
    )
    return ctx


# ---- clients: each does one request and returns (status line, headers, body) ---------

Result = tuple[str, dict[str, str], bytes]
REQUEST = b"GET / HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n"


def via_socket(ctx: ssl.SSLContext, port: int) -> Result:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(REQUEST)
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
    return parse_response(data)


def via_http_client(ctx: ssl.SSLContext, port: int) -> Result:
    conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=TIMEOUT)
    try:
        conn.request("GET", "/", headers={"Connection": "close"})
        resp = conn.getresponse()
        body = resp.read()
        return (
            f"HTTP/1.x {resp.status} {resp.reason}",
            {k.lower(): v for k, v in resp.getheaders()},
            body,
        )
    finally:
        conn.close()


def via_urllib3(ctx: ssl.SSLContext, port: int, pools: dict[int, object]) -> Result:
    import urllib3

    # One pool manager for all requests, as an application keeps it.
    pool = pools.setdefault(
        id(ctx), urllib3.PoolManager(ssl_context=ctx, retries=False, timeout=TIMEOUT)
    )
    assert isinstance(pool, urllib3.PoolManager)
    r = pool.request("GET", f"https://localhost:{port}/", headers={"Connection": "close"})
    return f"HTTP/1.x {r.status} x", {k.lower(): v for k, v in r.headers.items()}, r.data


def via_requests(ctx: ssl.SSLContext, port: int, pools: dict[int, object]) -> Result:
    import requests
    from requests.adapters import HTTPAdapter

    class ContextAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: object, **kwargs: object) -> None:
            kwargs["ssl_context"] = ctx
            super().init_poolmanager(*args, **kwargs)  # type: ignore[arg-type]

    session = pools.get(id(ctx))
    if session is None:
        session = pools[id(ctx)] = requests.Session()
        session.mount("https://", ContextAdapter())
    assert isinstance(session, requests.Session)
    r = session.get(f"https://localhost:{port}/", timeout=TIMEOUT, headers={"Connection": "close"})
    return f"HTTP/1.x {r.status_code} x", {k.lower(): v for k, v in r.headers.items()}, r.content


def via_httpx(ctx: ssl.SSLContext, port: int, pools: dict[int, object]) -> Result:
    import httpx

    client = pools.setdefault(id(ctx), httpx.Client(verify=ctx, timeout=TIMEOUT))
    assert isinstance(client, httpx.Client)
    r = client.get(f"https://localhost:{port}/", headers={"Connection": "close"})
    return f"HTTP/1.x {r.status_code} x", {k.lower(): v for k, v in r.headers.items()}, r.content


def via_httpx_async(ctx: ssl.SSLContext, port: int) -> Result:
    import httpx

    async def go() -> Result:
        async with httpx.AsyncClient(verify=ctx, timeout=TIMEOUT) as client:
            r = await client.get(f"https://localhost:{port}/", headers={"Connection": "close"})
            return (
                f"HTTP/1.x {r.status_code} x",
                {k.lower(): v for k, v in r.headers.items()},
                r.content,
            )

    return asyncio.run(go())


def via_aiohttp(ctx: ssl.SSLContext, port: int) -> Result:
    import aiohttp

    async def go() -> Result:
        timeout = aiohttp.ClientTimeout(total=TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.get(
                f"https://localhost:{port}/", ssl=ctx, headers={"Connection": "close"}
            ) as r:
                body = await r.read()
                return (
                    f"HTTP/1.x {r.status} x",
                    {k.lower(): v for k, v in r.headers.items()},
                    body,
                )

    return asyncio.run(go())


def via_asyncio(ctx: ssl.SSLContext, port: int) -> Result:
    async def go() -> Result:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost"),
            TIMEOUT,
        )
        try:
            writer.write(REQUEST)
            data = await asyncio.wait_for(reader.read(), TIMEOUT)
        finally:
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), TIMEOUT)
            except (OSError, ssl.SSLError, asyncio.TimeoutError):
                pass
        return parse_response(data)

    return asyncio.run(go())


CLIENTS: dict[str, Callable[..., Result]] = {
    "socket": via_socket,
    "http.client": via_http_client,
    "urllib3": via_urllib3,
    "requests": via_requests,
    "httpx": via_httpx,
    "httpx-async": via_httpx_async,
    "aiohttp": via_aiohttp,
    "asyncio": via_asyncio,
}
POOLED = {"urllib3", "requests", "httpx"}


NEEDS = {
    "urllib3": "urllib3",
    "requests": "requests",
    "httpx": "httpx",
    "httpx-async": "httpx",
    "aiohttp": "aiohttp",
}


def run_client(name: str, ctx: ssl.SSLContext, port: int, n: int) -> list[bool]:
    """n requests through client ``name``; what the server said about each."""
    if name in NEEDS:
        pytest.importorskip(NEEDS[name])
    pools: dict[int, object] = {}
    try:
        said = []
        for _ in range(n):
            fn = CLIENTS[name]
            result = fn(ctx, port, pools) if name in POOLED else fn(ctx, port)
            said.append(server_resumed(*result))
        return said
    finally:
        for pool in pools.values():
            (getattr(pool, "close", None) or pool.clear)()
        gc.collect()


# ---- the tests --------------------------------------------------------------------------


@pytest.fixture(params=["c", "python"])
def backend(request: pytest.FixtureRequest) -> Any:
    """The client cache's implementation: the C core, or the pure-Python path a
    Python without a reachable OpenSSL gets (the same tests hold for both)."""
    return tlsresume.client if request.param == "c" else tlsresume.pyclient


@pytest.mark.parametrize("client", list(CLIENTS))
def test_drop_in_context_resumes(
    server: Server, server_cert: ServerCert, client: str, backend: Any
) -> None:
    """Through the drop-in context every connection after the first resumes, as the
    server itself reports; the cache's counters agree."""
    cache = backend.ClientSessionCache()
    ctx = pin(backend.client_context(cache, cafile=server_cert.cafile), server.version)
    said = run_client(client, ctx, server.port, CONNECTIONS)
    assert said == [False] + [True] * (CONNECTIONS - 1)
    stats = cache.stats()
    assert stats["offered"] == CONNECTIONS - 1
    assert stats["resumed"] == CONNECTIONS - 1 and stats["rejected"] == 0
    assert stats["stored"] >= 1


@pytest.mark.parametrize("client", list(CLIENTS))
def test_plain_context_never_resumes(server: Server, server_cert: ServerCert, client: str) -> None:
    """Negative control: the same requests through ssl.create_default_context()
    never resume (no client library caches sessions by itself)."""
    ctx = pin(ssl.create_default_context(cafile=server_cert.cafile), server.version)
    assert run_client(client, ctx, server.port, CONNECTIONS) == [False] * CONNECTIONS


def test_wrong_ca_fails_even_with_cached_sessions(
    server: Server, server_cert: ServerCert, backend: Any
) -> None:
    """A context that cannot verify the server gets no session from one that could:
    it fails the handshake instead of resuming past verification."""
    cache = backend.ClientSessionCache()
    good = pin(backend.client_context(cache, cafile=server_cert.cafile), server.version)
    via_socket(good, server.port)
    bad = pin(backend.client_context(cache), server.version)  # system CAs: not our test CA
    with pytest.raises(ssl.SSLCertVerificationError):
        via_socket(bad, server.port)
    assert cache.stats()["withheld_unsafe"] == 1


# ---- save/load across processes -------------------------------------------------------

SCRIPT = textwrap.dedent("""
    import logging, sys
    import tlsresume
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    mode, path, key, cafile, port, version = sys.argv[1:7]
    key = bytes.fromhex(key)
    cache = tlsresume.ClientSessionCache()
    if mode == "load":
        print("loaded", cache.load(path, key=key))
    ctx = tlsresume.client_context(cache, cafile=cafile)
    ctx.minimum_version = ctx.maximum_version = getattr(
        tlsresume.client.ssl.TLSVersion, "TLSv" + version.replace(".", "_"))
    import http.client
    conn = http.client.HTTPSConnection("localhost", int(port), context=ctx, timeout=10)
    conn.request("GET", "/")
    body = conn.getresponse().read()
    conn.close()
    print("resumed", b"Reused, " in body)
    if mode == "save":
        print("saved", cache.save(path, key=key))
""")


def run_script(*args: str) -> tuple[dict[str, str], str]:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, *args],
        capture_output=True,
        text=True,
        timeout=DEFAULT_TIMEOUT,
        env=child_env(),
    )
    assert proc.returncode == 0, proc.stderr
    return dict(line.split(" ", 1) for line in proc.stdout.splitlines()), proc.stderr


@pytest.mark.parametrize("version", VERSIONS)
def test_save_and_load_across_processes(
    server_cert: ServerCert, tmp_path: Path, version: str
) -> None:
    """One process saves its sessions, a second one loads them and resumes at its
    first connection; with the wrong key it warns and does a full handshake."""
    s = SServer(server_cert, version)
    try:
        path, key = str(tmp_path / "sessions"), os.urandom(32).hex()
        common = (server_cert.cafile, str(s.port), version)
        first, _ = run_script("save", path, key, *common)
        assert first["resumed"] == "False" and int(first["saved"]) >= 1
        second, err = run_script("load", path, key, *common)
        assert int(second["loaded"]) >= 1 and second["resumed"] == "True", err
        wrong, err = run_script("load", path, os.urandom(32).hex(), *common)
        assert wrong["loaded"] == "0" and wrong["resumed"] == "False"
        assert "WARNING" in err and "not loaded" in err
    finally:
        s.stop()


# ---- the trust fingerprint covers every anchor: pinned leaves, CRLs --------------------


def self_signed_leaf(d: Path, name: str) -> ServerCert:
    """A self-signed leaf certificate for localhost (basicConstraints CA:FALSE), made
    by ``openssl req``: what a service pins instead of trusting a CA."""
    cert, key = d / f"{name}.pem", d / f"{name}.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            f"/CN=localhost/O={name}",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return ServerCert(str(cert), str(key), str(cert))


@pytest.fixture(scope="module")
def pinned(tmp_path_factory: pytest.TempPathFactory) -> tuple[ServerCert, ServerCert]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    d = tmp_path_factory.mktemp("pinned")
    return self_signed_leaf(d, "A"), self_signed_leaf(d, "B")


def pinned_context(cache: ClientSessionCache, cert: ServerCert, version: str) -> ssl.SSLContext:
    ctx = client_context(cache, cafile=cert.cafile)
    return pin(ctx, version)


def handshake_error(ctx: ssl.SSLContext, port: int) -> str | None:
    """Connect and read; the handshake's error text, or None if it succeeded."""
    try:
        via_socket(ctx, port)
    except ssl.SSLError as exc:
        return f"{exc.reason}: {exc.verify_message if hasattr(exc, 'verify_message') else ''}"
    finally:
        gc.collect()
    return None


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"tls{v}")
@pytest.mark.parametrize("through", ["shared-cache", "save-load"])
def test_pinned_leaf_session_never_reaches_another_pin(
    pinned: tuple[ServerCert, ServerCert], version: str, through: str, tmp_path: Path
) -> None:
    """Context A pins certificate A, context B pins B (both self-signed CA:FALSE
    leaves for localhost:port, which get_ca_certs() leaves out). After A talked to
    the server holding A, B is never offered A's session, through one cache or
    through a saved file, and fails verification exactly as a fresh B does.
    Positive control: A, and a context configured like A, resume."""
    a, b = pinned
    s = SServer(a, version)
    try:
        fresh_b = handshake_error(pinned_context(ClientSessionCache(), b, version), s.port)
        assert fresh_b is not None and "CERTIFICATE_VERIFY_FAILED" in fresh_b, fresh_b
        cache = ClientSessionCache()
        ctx_a = pinned_context(cache, a, version)
        assert not server_resumed(*via_socket(ctx_a, s.port))
        if through == "save-load":
            key = os.urandom(32)
            assert cache.save(tmp_path / "cache", key) >= 1
            cache = ClientSessionCache.from_file(tmp_path / "cache", key)
            assert cache.stats()["loaded"] >= 1
        ctx_b = pinned_context(cache, b, version)
        offered_before = cache.stats()["offered"]
        assert handshake_error(ctx_b, s.port) == fresh_b
        assert cache.stats()["offered"] == offered_before  # nothing was even offered
        assert cache.stats()["withheld_unsafe"] >= 1
        # Positive control: an identically configured context resumes A's session.
        twin_a = pinned_context(cache, a, version)
        assert server_resumed(*via_socket(twin_a, s.port))
    finally:
        s.stop()


def _crl(ca: trustme.CA, revoked_serials: list[int]) -> bytes:
    """A CRL signed by ca revoking the given serials (PEM), via cryptography."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    ca_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), None)
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - datetime.timedelta(minutes=5))
        .next_update(now + datetime.timedelta(days=1))
    )
    for serial in revoked_serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(now - datetime.timedelta(minutes=1))
            .build()
        )
    crl = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    return crl.public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"tls{v}")
@pytest.mark.parametrize("through", ["shared-cache", "save-load"])
def test_crl_revoking_the_server_in_one_context_only(
    version: str, through: str, tmp_path: Path
) -> None:
    """Both contexts trust one CA and check CRLs (VERIFY_CRL_CHECK_LEAF); only B
    holds a CRL revoking the server's certificate (A's CRL revokes nothing). After
    A connected, B is not offered A's session and fails as a fresh B fails
    ("certificate revoked"). Positive control: a twin of A resumes."""
    from cryptography import x509

    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    serial = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).serial_number
    empty_crl, revoking_crl = tmp_path / "empty.crl", tmp_path / "revoking.crl"
    empty_crl.write_bytes(_crl(ca, []))
    revoking_crl.write_bytes(_crl(ca, [serial]))

    def context(cache: ClientSessionCache, crl: Path) -> ssl.SSLContext:
        ctx = client_context(cache, cadata=ca.cert_pem.bytes().decode())
        ctx.load_verify_locations(cafile=crl)  # cadata takes certificates only
        ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
        return pin(ctx, version)

    s = SServer(ServerCert(str(cert), str(key), ""), version)
    try:
        fresh_b = handshake_error(context(ClientSessionCache(), revoking_crl), s.port)
        assert fresh_b is not None and "CERTIFICATE_VERIFY_FAILED" in fresh_b, fresh_b
        cache = ClientSessionCache()
        assert not server_resumed(*via_socket(context(cache, empty_crl), s.port))
        if through == "save-load":
            k = os.urandom(32)
            cache.save(tmp_path / "cache", k)
            cache = ClientSessionCache.from_file(tmp_path / "cache", k)
        offered_before = cache.stats()["offered"]
        assert handshake_error(context(cache, revoking_crl), s.port) == fresh_b
        assert cache.stats()["offered"] == offered_before
        assert server_resumed(*via_socket(context(cache, empty_crl), s.port))
    finally:
        s.stop()


# ---- through an HTTP CONNECT proxy -----------------------------------------------------


class ConnectProxy:
    """A minimal HTTP CONNECT proxy on loopback (threads): it answers one CONNECT per
    connection with 200 and relays bytes both ways. Records the targets asked for."""

    def __init__(self) -> None:
        import threading

        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.targets: list[str] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    def _accept(self) -> None:
        import threading

        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        import threading

        conn.settimeout(TIMEOUT)
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            method, target = head.split(b" ", 2)[:2]
            if method != b"CONNECT":
                conn.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            self.targets.append(target.decode())
            host, port = target.decode().rsplit(":", 1)
            with socket.create_connection((host, int(port)), timeout=TIMEOUT) as up:
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")

                def relay(src: socket.socket, dst: socket.socket) -> None:
                    try:
                        while data := src.recv(65536):
                            dst.sendall(data)
                    except OSError:
                        pass
                    finally:
                        try:
                            dst.shutdown(socket.SHUT_WR)
                        except OSError:
                            pass

                back = threading.Thread(target=relay, args=(up, conn), daemon=True)
                back.start()
                relay(conn, up)
                back.join(TIMEOUT)

    def __enter__(self) -> ConnectProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._accepter.join(5)
        self.sock.close()
        for t in self._threads:
            t.join(5)


def through_proxy_urllib3(ctx: ssl.SSLContext, proxy: int, port: int) -> None:
    import urllib3

    with urllib3.ProxyManager(
        f"http://127.0.0.1:{proxy}", ssl_context=ctx, retries=False, timeout=TIMEOUT
    ) as pm:
        r = pm.request("GET", f"https://localhost:{port}/", headers={"Connection": "close"})
        assert r.status == 200


def through_proxy_httpx(ctx: ssl.SSLContext, proxy: int, port: int) -> None:
    import httpx

    with httpx.Client(verify=ctx, proxy=f"http://127.0.0.1:{proxy}", timeout=TIMEOUT) as c:
        assert c.get(f"https://localhost:{port}/").status_code == 200


def through_proxy_http_client(ctx: ssl.SSLContext, proxy: int, port: int) -> None:
    conn = http.client.HTTPSConnection("127.0.0.1", proxy, context=ctx, timeout=TIMEOUT)
    conn.set_tunnel("localhost", port)
    try:
        conn.request("GET", "/", headers={"Connection": "close"})
        assert conn.getresponse().status == 200
    finally:
        conn.close()


@pytest.mark.parametrize(
    "client",
    [through_proxy_urllib3, through_proxy_httpx, through_proxy_http_client],
    ids=["urllib3", "httpx", "http.client"],
)
def test_proxied_targets_get_their_own_entries(
    server_cert: ServerCert, client: Callable[..., None]
) -> None:
    """Two HTTPS servers on two ports of one host, sharing ticket keys (so each would
    resume the other's sessions), reached through one CONNECT proxy: the cache keys
    each under its own port, never the proxy's, and the second server's first
    connection is a full handshake. Then each resumes its own session."""
    from .support import InProcessServer

    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(server_cert.cert, server_cert.key)
    cache = ClientSessionCache()
    ctx = client_context(cache, cafile=server_cert.cafile)
    with ConnectProxy() as proxy, InProcessServer(server) as one, InProcessServer(server) as two:
        client(ctx, proxy.port, one.port)
        client(ctx, proxy.port, two.port)
        assert two.resumed == 0  # not handed the first server's session
        assert {(s.host, s.port) for s in cache.sessions()} == {
            ("localhost", one.port),
            ("localhost", two.port),
        }
        client(ctx, proxy.port, one.port)
        client(ctx, proxy.port, two.port)
        assert one.resumed == 1 and two.resumed == 1
        assert proxy.targets == [f"localhost:{p}" for p in (one.port, two.port) * 2]


def test_unrecognised_tunnel_keys_by_the_proxy_unless_told(server_cert: ServerCert) -> None:
    """What the bug looked like, and the remedy: a tunnel opened by hand is not
    recognised, so the socket's peer (the proxy) gives the port and both targets
    share the proxy's entry (the second server resumes the first one's session);
    inside session_port(target) each target gets its own entry."""
    from .support import InProcessServer

    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(server_cert.cert, server_cert.key)

    def tunnel(ctx: ssl.SSLContext, proxy: int, port: int) -> None:
        with socket.create_connection(("127.0.0.1", proxy), timeout=TIMEOUT) as raw:
            raw.sendall(b"CONNECT localhost:%d HTTP/1.1\r\n\r\n" % port)
            reply = b""
            while b"\r\n\r\n" not in reply:
                reply += raw.recv(4096)
            assert b" 200 " in reply
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(REQUEST)
                while tls.recv(65536):
                    pass
        gc.collect()

    with ConnectProxy() as proxy, InProcessServer(server) as one, InProcessServer(server) as two:
        cache = ClientSessionCache()
        ctx = client_context(cache, cafile=server_cert.cafile)
        tunnel(ctx, proxy.port, one.port)
        tunnel(ctx, proxy.port, two.port)
        assert {(s.host, s.port) for s in cache.sessions()} == {("localhost", proxy.port)}
        assert two.resumed == 1  # the first server's session went to the second

        cache = ClientSessionCache()
        ctx = client_context(cache, cafile=server_cert.cafile)
        resumed_before = two.resumed
        for port in (one.port, two.port):
            with tlsresume.session_port(port):
                tunnel(ctx, proxy.port, port)
        assert two.resumed == resumed_before
        assert {(s.host, s.port) for s in cache.sessions()} == {
            ("localhost", one.port),
            ("localhost", two.port),
        }


# ---- the pure-Python path: its own form of the safety rule ------------------------------


def test_limits_are_the_cores() -> None:
    """The limits both caches check are the C core's."""
    from tlsresume import _clientkeys
    from tlsresume._binding import lib

    assert _clientkeys.MIN_MAX_BYTES == lib.TLSR_CLIENT_MIN_BYTES
    assert _clientkeys.MAX_TICKETS_PER_HOST == lib.TLSR_CLIENT_MAX_TICKETS
    assert _clientkeys.NAME_MAX == lib.TLSR_CLIENT_NAME_MAX
    assert (_clientkeys.VERIFY_NONE, _clientkeys.VERIFY_CHAIN, _clientkeys.VERIFY_HOSTNAME) == (
        lib.TLSR_VERIFY_NONE,
        lib.TLSR_VERIFY_CHAIN,
        lib.TLSR_VERIFY_HOSTNAME,
    )


def test_python_path_withholds_after_a_trust_change(
    server: Server, server_cert: ServerCert, ca: trustme.CA
) -> None:
    """Pure-Python cache: setting a setting to the value it has (http.client and
    urllib3 do it on every connection) keeps the sessions; adding a CA, or turning
    hostname checking off and on again, withholds the sessions made before (they
    were verified under other rules). Sessions of one context never reach another."""
    py = tlsresume.pyclient
    cache = py.ClientSessionCache()
    ctx = pin(py.client_context(cache, cafile=server_cert.cafile), server.version)

    def resumed() -> bool:
        return server_resumed(*via_socket(ctx, server.port))

    assert resumed() is False
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    assert resumed() is True
    ctx.load_verify_locations(cadata=trustme.CA().cert_pem.bytes().decode())
    assert resumed() is False  # withheld: the trust store changed
    assert resumed() is True
    ctx.check_hostname = False
    ctx.check_hostname = True
    assert resumed() is False
    other = pin(py.client_context(cache, cafile=server_cert.cafile), server.version)
    assert server_resumed(*via_socket(other, server.port)) is False
    assert cache.stats()["withheld_unsafe"] == 3
