"""The drop-in client context against real servers in other processes: ``openssl
s_server`` and ``tlsresume serve`` (pre-fork), TLS 1.2 and 1.3, through plain
sockets, http.client, urllib3, requests, httpx (sync and async), aiohttp and
asyncio. The server says whether it resumed; plain contexts are the negative
control. Save/load across two separate processes."""

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

import pytest

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
        cmd = ["openssl", "s_server", "-accept", "127.0.0.1:0", "-cert", cert.cert,
               "-key", cert.key, "-www", "-tls" + version.replace(".", "_")]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
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


@pytest.fixture(scope="module", params=[(kind, v) for kind in ("openssl", "serve")
                                        for v in VERSIONS],
                ids=lambda p: f"{p[0]}-tls{p[1]}")
def server(request: pytest.FixtureRequest, server_cert: ServerCert,
           serve_module: ServeFactory) -> Iterator[Server]:
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
        ssl.TLSVersion, "TLSv" + version.replace(".", "_"))
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
        return (f"HTTP/1.x {resp.status} {resp.reason}",
                {k.lower(): v for k, v in resp.getheaders()}, body)
    finally:
        conn.close()


def via_urllib3(ctx: ssl.SSLContext, port: int, pools: dict[int, object]) -> Result:
    import urllib3

    # One pool manager for all requests, as an application keeps it.
    pool = pools.setdefault(id(ctx), urllib3.PoolManager(ssl_context=ctx, retries=False,
                                                         timeout=TIMEOUT))
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
    r = session.get(f"https://localhost:{port}/", timeout=TIMEOUT,
                    headers={"Connection": "close"})
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
            return (f"HTTP/1.x {r.status_code} x",
                    {k.lower(): v for k, v in r.headers.items()}, r.content)

    return asyncio.run(go())


def via_aiohttp(ctx: ssl.SSLContext, port: int) -> Result:
    import aiohttp

    async def go() -> Result:
        timeout = aiohttp.ClientTimeout(total=TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.get(f"https://localhost:{port}/", ssl=ctx,
                                   headers={"Connection": "close"}) as r:
                body = await r.read()
                return (f"HTTP/1.x {r.status} x",
                        {k.lower(): v for k, v in r.headers.items()}, body)

    return asyncio.run(go())


def via_asyncio(ctx: ssl.SSLContext, port: int) -> Result:
    async def go() -> Result:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost"),
            TIMEOUT)
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


NEEDS = {"urllib3": "urllib3", "requests": "requests", "httpx": "httpx",
         "httpx-async": "httpx", "aiohttp": "aiohttp"}


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


@pytest.mark.parametrize("client", list(CLIENTS))
def test_drop_in_context_resumes(server: Server, server_cert: ServerCert, client: str) -> None:
    """Through the drop-in context every connection after the first resumes, as the
    server itself reports; the cache's counters agree."""
    cache = ClientSessionCache()
    ctx = pin(client_context(cache, cafile=server_cert.cafile), server.version)
    said = run_client(client, ctx, server.port, CONNECTIONS)
    assert said == [False] + [True] * (CONNECTIONS - 1)
    stats = cache.stats()
    assert stats["offered"] == CONNECTIONS - 1
    assert stats["resumed"] == CONNECTIONS - 1 and stats["rejected"] == 0
    assert stats["stored"] >= 1


@pytest.mark.parametrize("client", list(CLIENTS))
def test_plain_context_never_resumes(server: Server, server_cert: ServerCert, client: str
                                     ) -> None:
    """Negative control: the same requests through ssl.create_default_context()
    never resume (no client library caches sessions by itself)."""
    ctx = pin(ssl.create_default_context(cafile=server_cert.cafile), server.version)
    assert run_client(client, ctx, server.port, CONNECTIONS) == [False] * CONNECTIONS


def test_wrong_ca_fails_even_with_cached_sessions(server: Server, server_cert: ServerCert
                                                  ) -> None:
    """A context that cannot verify the server gets no session from one that could:
    it fails the handshake instead of resuming past verification."""
    cache = ClientSessionCache()
    good = pin(client_context(cache, cafile=server_cert.cafile), server.version)
    via_socket(good, server.port)
    bad = pin(client_context(cache), server.version)  # system CAs: not our test CA
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
    proc = subprocess.run([sys.executable, "-c", SCRIPT, *args], capture_output=True,
                          text=True, timeout=DEFAULT_TIMEOUT, env=child_env())
    assert proc.returncode == 0, proc.stderr
    return dict(line.split(" ", 1) for line in proc.stdout.splitlines()), proc.stderr


@pytest.mark.parametrize("version", VERSIONS)
def test_save_and_load_across_processes(server_cert: ServerCert, tmp_path: Path,
                                        version: str) -> None:
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
