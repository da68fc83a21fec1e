"""The integrations inside real servers: gunicorn (sync, gthread), uvicorn and
hypercorn ``--workers``, aiohttp (gunicorn worker and a pre-fork of ``run_app``),
plain asyncio and ``http.server``, each with two worker processes behind one
listening socket, and resuming clients (Python ``ssl`` and curl).

Every server runs as a subprocess in its own process group, on a listening socket
the test made and passed down (no port races), and is stopped at the end of the
module, workers included. Each positive test has its negative control: the same
server without tlsresume, where no reconnection resumes on a worker other than the
one that made its session.

One file (over 500 lines): every server integration shares one pool of real
servers started once for the module.
"""

from __future__ import annotations

import os
import pickle
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest

import tlsresume
from tlsresume.integrations import CloseNotifySSLSocket, KeyFile, Resumption
from tlsresume.regions import region_dir

from .conftest import ServerCert
from .support import (
    InProcessServer,
    Response,
    child_env,
    client_context,
    group_members,
    https_get,
)

pytestmark = pytest.mark.interop

TLS = ("1.2", "1.3")
WORKERS = 2
START_TIMEOUT = 30.0


# --------------------------------------------------------------------------------------
# The servers' code: apps that name their worker, and the pre-fork scripts
# --------------------------------------------------------------------------------------

WSGI_APP = """
import os

def app(environ, start_response):
    sock = environ.get("gunicorn.socket")
    reused = getattr(sock, "session_reused", False)
    builds = getattr(getattr(sock, "context", None), "test_builds", 0)
    body = b"worker %d\\n" % os.getpid()
    start_response("200 OK", [
        ("Content-Type", "text/plain"), ("Content-Length", str(len(body))),
        ("X-Worker", str(os.getpid())), ("X-Session-Reused", "yes" if reused else "no"),
        ("X-Context-Builds", str(builds)),
    ])
    return [body]
"""

ASGI_APP = """
import os
import socket


def nodelay(client):
    # TCP_NODELAY of this worker's socket connected to the client: read from the
    # socket itself (a dup of each descriptor), so the test needs no server hook.
    for fd in os.listdir("/proc/self/fd"):
        try:
            dup = os.dup(int(fd))
        except OSError:
            continue
        try:
            sock = socket.socket(fileno=dup)
        except OSError:
            os.close(dup)
            continue
        try:
            if sock.getpeername()[:2] == tuple(client):
                return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        except OSError:
            pass
        finally:
            sock.close()
    return -1


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b"worker %d\\n" % os.getpid()
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body)),
        (b"x-worker", b"%d" % os.getpid()),
        (b"x-nodelay", b"%d" % nodelay(scope["client"]))]})
    await send({"type": "http.response.body", "body": body})
"""

AIOHTTP_APP = """
import os
from aiohttp import web

async def hello(request):
    reused = request.transport.get_extra_info("ssl_object").session_reused
    return web.Response(text=f"worker {os.getpid()}\\n", headers={
        "X-Worker": str(os.getpid()), "X-Session-Reused": "yes" if reused else "no"})

def make_app():
    app = web.Application()
    app.router.add_get("/", hello)
    return app

app = make_app()
"""

# gunicorn configs. The tlsresume one counts, per worker, how many contexts the
# factory built (X-Context-Builds): one per worker, however many connections.
GUNICORN_TLSRESUME = """
from tlsresume.integrations.gunicorn import Resumption

_tls = Resumption(session_cache="1M")
_builds = 0

def ssl_context(conf, default_ssl_context_factory):
    def counting_factory():
        global _builds
        _builds += 1
        ctx = default_ssl_context_factory()
        ctx.test_builds = _builds
        return ctx
    return _tls.ssl_context(conf, counting_factory)
"""
GUNICORN_ONE_LINE = "from tlsresume.integrations.gunicorn import ssl_context  # noqa: F401\n"
GUNICORN_NO_CLOSE_NOTIFY = """
from tlsresume.integrations.gunicorn import Resumption
ssl_context = Resumption(close_notify=False, session_cache=False).ssl_context
"""
GUNICORN_RING_ONLY = """
from tlsresume.integrations.gunicorn import Resumption
ssl_context = Resumption(session_cache=False).ssl_context
"""
GUNICORN_PLAIN = ""

# A pre-fork: the parent makes the Resumption, then forks workers that each build
# their own context and bind their own socket on one port with SO_REUSEPORT (the
# kernel spreads connections between them). Without tlsresume each worker builds a
# plain context, as such servers do today.
PREFORK = """
import os, signal, socket, ssl, sys
from tlsresume.integrations import Resumption

port, workers, mode, certfile, keyfile = int(sys.argv[1]), int(sys.argv[2]), *sys.argv[3:6]
tls = Resumption(session_cache="1M") if mode == "tlsresume" else None


def make_context():
    if tls is not None:
        return tls.server_context(certfile, keyfile)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certfile, keyfile)
    return ctx

{worker}

pids = []
for _ in range(workers):
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            worker(port, make_context())
            code = 0
        finally:
            os._exit(code)
    pids.append(pid)
signal.signal(signal.SIGTERM, lambda *_: [os.kill(p, signal.SIGTERM) for p in pids])
for pid in pids:
    while True:
        try:
            os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
"""

AIOHTTP_WORKER = """
from aiohttp import web
from aioapp import make_app

def worker(port, ctx):
    web.run_app(make_app(), host="127.0.0.1", port=port, reuse_port=True, ssl_context=ctx,
                print=None)
"""

ASYNCIO_WORKER = """
import asyncio

async def handle(reader, writer):
    await reader.readuntil(b"\\r\\n\\r\\n")
    reused = writer.get_extra_info("ssl_object").session_reused
    body = b"worker %d\\n" % os.getpid()
    writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: %d\\r\\nConnection: close\\r\\n"
                 b"X-Worker: %d\\r\\nX-Session-Reused: %s\\r\\n\\r\\n%s"
                 % (len(body), os.getpid(), b"yes" if reused else b"no", body))
    await writer.drain()
    writer.close()

async def serve(port, ctx):
    server = await asyncio.start_server(handle, "127.0.0.1", port, reuse_port=True, ssl=ctx)
    async with server:
        await server.serve_forever()

def worker(port, ctx):
    asyncio.run(serve(port, ctx))
"""

HTTP_SERVER_WORKER = """
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from tlsresume.integrations.http_server import wrap_server

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"worker %d\\n" % os.getpid()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Worker", str(os.getpid()))
        reused = self.connection.session_reused
        self.send_header("X-Session-Reused", "yes" if reused else "no")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

class Server(ThreadingHTTPServer):
    def server_bind(self):
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()

def worker(port, ctx):
    server = Server(("127.0.0.1", port), Handler)
    if tls is not None:
        wrap_server(server, ctx)
    else:  # what a plain http.server over TLS does
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    server.serve_forever()
"""


# The Python-API recipes of docs/integrations.md, on a shared socket (fd in argv[1]).
UVICORN_LAUNCHER = """
import sys
import uvicorn
from tlsresume.integrations.uvicorn import Resumption

if __name__ == "__main__":
    uvicorn.run("asgiapp:app", fd=int(sys.argv[1]), workers=2, log_level="warning",
                ssl_certfile=sys.argv[2], ssl_keyfile=sys.argv[3],
                ssl_context_factory=Resumption(session_cache="1M"))
"""

HYPERCORN_LAUNCHER = """
import sys
from hypercorn.run import run
from tlsresume.integrations.hypercorn import Config, Resumption

if __name__ == "__main__":
    config = Config()
    config.application_path = "asgiapp:app"
    config.bind = [f"fd://{sys.argv[1]}"]
    config.certfile, config.keyfile = sys.argv[2], sys.argv[3]
    config.workers = 2
    config.tlsresume = Resumption(session_cache="1M")
    sys.exit(run(config))
"""

# Sanic, as docs/integrations.md has it: the app module calls setup(app) where it makes
# the app (it runs in the master and in every spawned worker), the master runs it on
# the shared socket. {tlsresume} is the recipe's line, or nothing for stock Sanic.
SANIC_LAUNCHER = """
import os
import socket
import sys
from sanic import Sanic, response

app = Sanic("integrations")
{tlsresume}

@app.get("/")
async def hello(request):
    reused = request.transport.get_extra_info("ssl_object").session_reused
    return response.text(f"worker {os.getpid()}\\n", headers={
        "X-Worker": str(os.getpid()), "X-Session-Reused": "yes" if reused else "no"})

if __name__ == "__main__":
    app.run(sock=socket.socket(fileno=int(sys.argv[1])), workers=2, access_log=False,
            ssl={"cert": sys.argv[2], "key": sys.argv[3]})
"""
SANIC_RECIPE = "from tlsresume.integrations.sanic import setup\nsetup(app)"

# Tornado's fork_processes with ssl_options, the stock dict or the recipe's context.
# Each worker binds the port itself (SO_REUSEPORT, an even spread); the master passes
# SIGTERM on to the workers, which Tornado would otherwise restart.
TORNADO_LAUNCHER = """
import asyncio, os, signal, sys
import tornado.web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.process import fork_processes

class Hello(tornado.web.RequestHandler):
    def get(self):
        reused = self.request.connection.stream.socket.session_reused
        self.set_header("X-Worker", str(os.getpid()))
        self.set_header("X-Session-Reused", "yes" if reused else "no")
        self.write(f"worker {os.getpid()}\\n")

port, mode, certfile, keyfile = int(sys.argv[1]), *sys.argv[2:5]
options = {"certfile": certfile, "keyfile": keyfile}
if mode == "tlsresume":
    from tlsresume.integrations.tornado import Resumption
    tls = Resumption()                       # before the fork


def stop(*_):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.killpg(0, signal.SIGTERM)

signal.signal(signal.SIGTERM, stop)
fork_processes(2)
signal.signal(signal.SIGTERM, signal.SIG_DFL)
sockets = bind_sockets(port, "127.0.0.1", reuse_port=True)

async def main():
    ssl_options = tls.ssl_options(options) if mode == "tlsresume" else options
    server = HTTPServer(tornado.web.Application([("/", Hello)]), ssl_options=ssl_options)
    server.add_sockets(sockets)
    await asyncio.Event().wait()

asyncio.run(main())
"""


# --------------------------------------------------------------------------------------
# Running servers
# --------------------------------------------------------------------------------------


def _ok(r: Response) -> bool:
    """A 200 (hypercorn sends no reason phrase)."""
    return r.status_line.split()[1:2] == ["200"]


@dataclass
class Server:
    """A server subprocess in its own process group, on a socket we made."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: IO[bytes]
    reserve: socket.socket | None = None
    stopped: bool = False

    @classmethod
    def start(
        cls, name: str, argv: list[str], cwd: Path, env: dict[str, str] | None = None
    ) -> Server:
        """Run ``argv`` and wait until it answers HTTPS. ``{fd}`` in ``argv`` becomes a
        listening socket's descriptor, shared by all workers; ``{port}`` a port for
        workers that each bind their own socket with SO_REUSEPORT (the kernel then
        spreads connections evenly, where a shared socket often favours one worker).
        """
        # Bound with SO_REUSEPORT: it reserves the port for the run, and the server's
        # sockets can bind it too. Only listening sockets get connections.
        reserve = socket.socket()
        reserve.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        reserve.bind(("127.0.0.1", 0))
        port = reserve.getsockname()[1]
        shared = any("{fd}" in a for a in argv)
        if shared:
            reserve.listen(128)
            reserve.set_inheritable(True)
        fd = reserve.fileno()
        log = tempfile.TemporaryFile()
        environment = child_env(**(env or {}))
        environment["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(cwd), environment.get("PYTHONPATH", "")) if p
        )
        try:
            proc = subprocess.Popen(
                [a.replace("{fd}", str(fd)).replace("{port}", str(port)) for a in argv],
                cwd=cwd,
                env=environment,
                pass_fds=[fd] if shared else [],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        except BaseException:
            reserve.close()
            raise
        if shared:
            reserve.close()
        server = cls(name, proc, port, log, reserve=None if shared else reserve)
        try:
            server._wait_ready()
        except BaseException:
            server.stop()
            raise
        return server

    def _wait_ready(self) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if _ok(https_get("127.0.0.1", self.port, ctx, timeout=5)):
                    return
            except (OSError, ValueError):
                time.sleep(0.1)
        raise RuntimeError(
            f"{self.name} did not answer (exit {self.proc.poll()}):\n{self.output()}"
        )

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")[-4000:]

    def stop(self) -> list[int]:
        """SIGTERM the master, wait (bounded), SIGKILL the whole group if anything is
        left. Returns the pids that needed SIGKILL."""
        if self.stopped:
            return []
        self.stopped = True
        pgid = self.proc.pid
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 5
        while group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = group_members(pgid)
        if left:
            os.killpg(pgid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait(timeout=5)
        self.log.close()
        if self.reserve is not None:
            self.reserve.close()
        return left


class ServerPool:
    """Servers started on first use and all stopped at the end of the module."""

    def __init__(self, cert: ServerCert, workdir: Path) -> None:
        self.cert = cert
        self.dir = workdir
        self.servers: dict[str, Server] = {}
        for name, text in [
            ("wsgiapp.py", WSGI_APP),
            ("asgiapp.py", ASGI_APP),
            ("aioapp.py", AIOHTTP_APP),
        ]:
            (workdir / name).write_text(textwrap.dedent(text))

    def get(
        self,
        name: str,
        argv: Callable[[], list[str]],
        env: dict[str, str] | None = None,
        settle: Callable[[Server], None] | None = None,
    ) -> Server:
        """The server ``name``, started if need be; ``settle`` runs once after a start."""
        server = self.servers.get(name)
        if server is None or server.stopped:
            server = self.servers[name] = Server.start(name, argv(), self.dir, env)
            if settle is not None:
                settle(server)
        return server

    def gunicorn(
        self, conf: str, worker_class: str, workers: int = WORKERS, app: str = "wsgiapp:app"
    ) -> Server:
        """gunicorn with config ``conf`` (a key of the CONFIGS table)."""

        def argv() -> list[str]:
            path = self.dir / f"gunicorn_{conf}.py"
            path.write_text(
                textwrap.dedent(CONFIGS[conf])
                + textwrap.dedent(f"""
                certfile, keyfile = {self.cert.cert!r}, {self.cert.key!r}
                graceful_timeout = 3
                """)
            )
            # Several workers each bind the port (SO_REUSEPORT) for an even spread.
            bind = (
                ["--bind", "fd://{fd}"]
                if workers == 1
                else ["--reuse-port", "--bind", "127.0.0.1:{port}"]
            )
            return [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                str(path),
                "-w",
                str(workers),
                "-k",
                worker_class,
                *bind,
                app,
            ]

        return self.get(f"gunicorn-{conf}-{worker_class}-{workers}", argv)

    def prefork(self, kind: str, mode: str) -> Server:
        def argv() -> list[str]:
            path = self.dir / f"prefork_{kind}.py"
            path.write_text(PREFORK.replace("{worker}", textwrap.dedent(PREFORK_WORKERS[kind])))
            return [
                sys.executable,
                str(path),
                "{port}",
                str(WORKERS),
                mode,
                self.cert.cert,
                self.cert.key,
            ]

        return self.get(f"prefork-{kind}-{mode}", argv)

    def stop_all(self) -> dict[str, list[int]]:
        return {name: server.stop() for name, server in self.servers.items()}


CONFIGS = {
    "tlsresume": GUNICORN_TLSRESUME,
    "one-line": GUNICORN_ONE_LINE,
    "no-close-notify": GUNICORN_NO_CLOSE_NOTIFY,
    "ring-only": GUNICORN_RING_ONLY,
    "plain": GUNICORN_PLAIN,
}
PREFORK_WORKERS = {
    "aiohttp": AIOHTTP_WORKER,
    "asyncio": ASYNCIO_WORKER,
    "http.server": HTTP_SERVER_WORKER,
}


@pytest.fixture(scope="module")
def pool(server_cert: ServerCert, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPool]:
    servers = ServerPool(server_cert, tmp_path_factory.mktemp("integrations"))
    yield servers
    killed = {name: pids for name, pids in servers.stop_all().items() if pids}
    assert not killed, f"servers that needed SIGKILL to stop: {killed}"


# --------------------------------------------------------------------------------------
# Clients
# --------------------------------------------------------------------------------------


@dataclass
class Walk:
    """A client reconnecting, each time offering the session its previous connection
    ended with; counts by whether the connection reached the worker that made the
    offered session ("same") or another one ("cross")."""

    cross: int = 0
    cross_resumed: int = 0
    same: int = 0
    same_resumed: int = 0
    unclean_closes: int = 0
    workers: set[str] = field(default_factory=set)
    responses: list[Response] = field(default_factory=list)


def walk(
    port: int, cafile: str, version: str, *, cross: int = 5, limit: int = 300, tickets: bool = True
) -> Walk:
    """Reconnect until ``cross`` connections reached another worker than the one that
    made the offered session (or ``limit`` connections). ``tickets=False``: the client
    asks for no ticket (``OP_NO_TICKET``), so in TLS 1.2 it resumes by session ID."""
    ctx = client_context(cafile, version)
    if not tickets:
        ctx.options |= ssl.OP_NO_TICKET
    first = https_get("127.0.0.1", port, ctx)
    out = Walk(workers={first.headers["x-worker"]}, responses=[first])
    origin, session = first.headers["x-worker"], first.session
    for _ in range(limit):
        if out.cross >= cross:
            break
        r = https_get("127.0.0.1", port, ctx, session=session)
        assert _ok(r), r.status_line
        # (the client is pinned to the version; after a bare EOF ssl reports None)
        assert r.version in (f"TLSv{version}", None), r.version
        worker = r.headers["x-worker"]
        if worker == origin:
            out.same += 1
            out.same_resumed += r.resumed
        else:
            out.cross += 1
            out.cross_resumed += r.resumed
        out.unclean_closes += not r.clean_close
        out.workers.add(worker)
        out.responses.append(r)
        origin, session = worker, r.session
    return out


def assert_resumes_across_workers(w: Walk) -> None:
    """Every reconnection resumed, on whichever worker it landed."""
    assert w.cross >= 5 and len(w.workers) >= 2, w
    assert w.cross_resumed == w.cross, w
    assert w.same_resumed == w.same, w


def assert_no_cross_worker_resumption(w: Walk) -> None:
    """The control: enough connections reached another worker, and none resumed."""
    assert w.cross >= 5 and len(w.workers) >= 2, w
    assert w.cross_resumed == 0, w


@dataclass
class Curl:
    fetches: list[tuple[str, bool]]  # (worker, resumed per the server), in order
    offered: int  # times curl offered a cached session
    text: str

    @property
    def resumed(self) -> int:
        return sum(r for _, r in self.fetches)

    @property
    def cross(self) -> int:
        """Fetches that reached another worker than the previous fetch."""
        return sum(a[0] != b[0] for a, b in zip(self.fetches, self.fetches[1:], strict=False))

    @property
    def cross_resumed(self) -> int:
        return sum(
            b[1] for a, b in zip(self.fetches, self.fetches[1:], strict=False) if a[0] != b[0]
        )


def curl(port: int, cafile: str, version: str, fetches: int = 10) -> Curl:
    """curl fetching the same URL ``fetches`` times in one invocation (one session
    cache), each on a new connection."""
    url = f"https://localhost:{port}/"
    proc = subprocess.run(
        [
            "curl",
            "-sS",
            "-v",
            "--cacert",
            cafile,
            f"--tlsv{version}",
            "--tls-max",
            version,
            "-H",
            "Connection: close",
            "--resolve",
            f"localhost:{port}:127.0.0.1",
            "--max-time",
            "20",
            *[url] * fetches,
        ],
        capture_output=True,
        timeout=30,
    )
    text = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 0, text
    workers = re.findall(r"< X-Worker: (\d+)", text, re.I)
    reused = [r == "yes" for r in re.findall(r"< X-Session-Reused: (\w+)", text, re.I)]
    if not reused:
        # An app that cannot say (ASGI has no such field): a resumed handshake is
        # one in which the server sent no certificate. One connection per "Trying".
        chunks = re.split(r"^\*\s+Trying ", text, flags=re.M)[1:]
        reused = ["TLS handshake, Certificate (11)" not in c for c in chunks]
    assert len(workers) == len(reused) == fetches, text
    return Curl(
        list(zip(workers, reused, strict=True)),
        text.count("SSL re-using session ID"),
        text,
    )


# --------------------------------------------------------------------------------------
# gunicorn
# --------------------------------------------------------------------------------------

GUNICORN_WORKERS = ("sync", "gthread")


@pytest.mark.parametrize("version", TLS)
@pytest.mark.parametrize("worker_class", GUNICORN_WORKERS)
def test_gunicorn_resumes_across_workers(pool, server_cert, worker_class, version) -> None:  # type: ignore[no-untyped-def]
    """gunicorn sync/gthread with the ssl_context hook: every reconnection resumes, on
    either worker, each worker built its context once, and every connection ended
    with close_notify."""
    server = pool.gunicorn("tlsresume", worker_class)
    w = walk(server.port, server_cert.cafile, version)
    assert_resumes_across_workers(w)
    assert all(r.headers["x-context-builds"] == "1" for r in w.responses), w
    assert w.unclean_closes == 0, w


@pytest.mark.parametrize("version", TLS)
@pytest.mark.parametrize("worker_class", GUNICORN_WORKERS)
def test_gunicorn_without_tlsresume_resumes_nothing(
    pool, server_cert, worker_class, version
) -> None:  # type: ignore[no-untyped-def]
    """Control: stock gunicorn builds a context per connection, so nothing resumes,
    not even on the same worker, and it closes without close_notify."""
    server = pool.gunicorn("plain", worker_class)
    w = walk(server.port, server_cert.cafile, version)
    assert_no_cross_worker_resumption(w)
    assert w.same_resumed == 0, w
    assert w.unclean_closes == len(w.responses) - 1, w


@pytest.mark.parametrize("version", TLS)
@pytest.mark.parametrize("worker_class", GUNICORN_WORKERS)
def test_gunicorn_curl_resumes_across_workers(pool, server_cert, worker_class, version) -> None:  # type: ignore[no-untyped-def]
    """curl refetching one URL resumes every time across the workers: TLS 1.3 by
    ticket, TLS 1.2 by session ID (curl asks for no tickets) through the store."""
    server = pool.gunicorn("tlsresume", worker_class)
    c = curl(server.port, server_cert.cafile, version)
    assert c.cross >= 1, c.fetches
    assert c.offered == len(c.fetches) - 1, c.text
    assert c.resumed == len(c.fetches) - 1, c.fetches


def _wait_for_workers(port: int, cafile: str, n: int, timeout: float = 15.0) -> None:
    """Until ``n`` workers have answered (each binds the port when it boots)."""
    ctx = client_context(cafile, "1.2")
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < n:
        assert time.monotonic() < deadline, f"only workers {seen} answered"
        seen.add(https_get("127.0.0.1", port, ctx).headers["x-worker"])


def test_gunicorn_curl_tls12_defaults_resume_across_workers(pool, server_cert) -> None:  # type: ignore[no-untyped-def]
    """The one-line recipe (Resumption() defaults) on 4 workers resumes 9 of 9 of
    curl's TLS 1.2 refetches (session IDs only): the default shared store. Control:
    session_cache=False resumes none that cross to another worker."""
    on_server = pool.gunicorn("one-line", "sync", workers=4)
    off_server = pool.gunicorn("ring-only", "sync", workers=4)
    for server in (on_server, off_server):
        _wait_for_workers(server.port, server_cert.cafile, 4)
    for _ in range(3):  # the kernel picks the workers: rerun a run that reached < 3
        on = curl(on_server.port, server_cert.cafile, "1.2")
        assert on.resumed == 9, on.fetches
        if len({w for w, _ in on.fetches}) >= 3:
            break
    off = curl(off_server.port, server_cert.cafile, "1.2")
    print(
        f"curl TLS 1.2, gunicorn 4 workers: Resumption() {on.resumed}/9, "
        f"session_cache=False {off.resumed}/9 ({off.cross_resumed} across workers)"
    )
    assert "Newsession Ticket" not in on.text  # curl asked for no ticket
    assert on.cross >= 2 and on.offered == 9, (on.fetches, on.offered)
    assert on.resumed == 9, on.fetches
    assert len({w for w, _ in on.fetches}) >= 3, on.fetches  # at least 3 workers took part
    assert off.cross >= 2 and off.offered == 9, (off.fetches, off.offered)
    assert off.cross_resumed == 0 and off.resumed < 9, off.fetches


def test_gunicorn_reload_keeps_the_keys(pool, server_cert) -> None:  # type: ignore[no-untyped-def]
    """After kill -HUP (config file re-run, all workers replaced), a session from an
    old worker resumes on the new ones: the master keeps its ring and store."""
    server = pool.gunicorn("tlsresume", "sync", workers=3)
    ctx = client_context(server_cert.cafile, "1.2")
    before = [https_get("127.0.0.1", server.port, ctx) for _ in range(6)]
    old = {r.headers["x-worker"] for r in before}
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while any(os.path.exists(f"/proc/{pid}") and _alive(int(pid)) for pid in old):
        assert time.monotonic() < deadline, "old workers still running"
        time.sleep(0.1)
    after = [https_get("127.0.0.1", server.port, ctx, session=r.session) for r in before]
    assert not {r.headers["x-worker"] for r in after} & old
    assert all(r.resumed for r in after), [r.resumed for r in after]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("version", TLS)
def test_gunicorn_curl_without_tlsresume_resumes_nothing(pool, server_cert, version) -> None:  # type: ignore[no-untyped-def]
    """Control: curl offers its session every time; stock gunicorn never resumes it."""
    server = pool.gunicorn("plain", "sync")
    c = curl(server.port, server_cert.cafile, version)
    assert c.cross >= 1 and c.offered == len(c.fetches) - 1, c.text
    assert c.resumed == 0, c.fetches


@pytest.mark.parametrize("worker_class", GUNICORN_WORKERS)
def test_gunicorn_close_notify_keeps_curl_tls12_sessions(pool, server_cert, worker_class) -> None:  # type: ignore[no-untyped-def]
    """One worker, ring only (session_cache=False): curl's TLS 1.2 session IDs live
    in the worker's OpenSSL cache, which keeps them only because the connections
    end with close_notify. With close_notify off the sync worker resumes none (its
    connection is freed, and the session evicted, before the next accept); gthread
    frees connections a little later, so an eviction can come after a refetch."""
    on = curl(pool.gunicorn("ring-only", worker_class, workers=1).port, server_cert.cafile, "1.2")
    off = curl(
        pool.gunicorn("no-close-notify", worker_class, workers=1).port, server_cert.cafile, "1.2"
    )
    assert on.resumed == len(on.fetches) - 1, on.text
    assert off.offered == len(off.fetches) - 1, off.text
    if worker_class == "sync":
        assert off.resumed == 0, off.fetches
    else:
        assert off.resumed < len(off.fetches) // 2, off.fetches


# --------------------------------------------------------------------------------------
# uvicorn and hypercorn (spawned workers)
# --------------------------------------------------------------------------------------


def _uvicorn(pool: ServerPool, tlsresume_on: bool, defaults: bool = False) -> Server:
    """``defaults``: the wrapper's own defaults (no TLSRESUME_SESSION_CACHE)."""
    cert = pool.cert
    head = (
        [sys.executable, "-m", "tlsresume.integrations.uvicorn"]
        if tlsresume_on
        else [sys.executable, "-m", "uvicorn"]
    )
    return pool.get(
        f"uvicorn-{tlsresume_on}-{defaults}",
        lambda: [
            *head,
            "asgiapp:app",
            "--workers",
            str(WORKERS),
            "--fd",
            "{fd}",
            "--ssl-certfile",
            cert.cert,
            "--ssl-keyfile",
            cert.key,
            "--log-level",
            "warning",
            "--timeout-graceful-shutdown",
            "2",
        ],
        env=None if defaults else {"TLSRESUME_SESSION_CACHE": "1M"},
    )


def test_uvicorn_curl_tls12_defaults_resume_across_workers(pool, server_cert) -> None:  # type: ignore[no-untyped-def]
    """The uvicorn wrapper's defaults (no option, no environment): curl's TLS 1.2
    refetches (session IDs only) resume 9 of 9 across the workers through the
    default shared store. Control: stock uvicorn resumes none across workers."""
    on_server, off_server = _uvicorn(pool, True, defaults=True), _uvicorn(pool, False)
    for server in (on_server, off_server):
        _wait_for_workers(server.port, server_cert.cafile, WORKERS)
    for _ in range(5):  # the kernel picks the workers: rerun a run that never crossed
        on = curl(on_server.port, server_cert.cafile, "1.2")
        if on.cross >= 1:
            break
    for _ in range(5):
        off = curl(off_server.port, server_cert.cafile, "1.2")
        if off.cross >= 1:
            break
    print(
        f"curl TLS 1.2, uvicorn {WORKERS} workers: defaults {on.resumed}/9, "
        f"stock {off.resumed}/9 ({off.cross_resumed} across workers)"
    )
    assert "Newsession Ticket" not in on.text  # curl asked for no ticket
    assert on.cross >= 1 and on.offered == 9, (on.fetches, on.offered)
    assert on.resumed == 9, on.fetches
    assert off.cross >= 1 and off.cross_resumed == 0, off.fetches


@pytest.mark.parametrize("tlsresume_on", [True, False], ids=["tlsresume", "stock"])
def test_uvicorn_connections_get_tcp_nodelay(pool, server_cert, tlsresume_on) -> None:  # type: ignore[no-untyped-def]
    """The uvicorn integration sets TCP_NODELAY on every accepted connection (read
    with getsockopt inside the worker that serves it). Control: stock uvicorn
    --workers leaves it off (asyncio skips sockets of proto 0), the cause of its
    cap of a few dozen TLS connections a second."""
    server = _uvicorn(pool, tlsresume_on)
    _wait_for_workers(server.port, server_cert.cafile, WORKERS)
    ctx = client_context(server_cert.cafile, "1.3")
    seen = [https_get("127.0.0.1", server.port, ctx).headers["x-nodelay"] for _ in range(6)]
    assert seen == (["1"] * 6 if tlsresume_on else ["0"] * 6), seen


def _hypercorn(pool: ServerPool, tlsresume_on: bool) -> Server:
    cert = pool.cert
    head = (
        [sys.executable, "-m", "tlsresume.integrations.hypercorn"]
        if tlsresume_on
        else [sys.executable, "-m", "hypercorn"]
    )
    return pool.get(
        f"hypercorn-{tlsresume_on}",
        lambda: [
            *head,
            "asgiapp:app",
            "--workers",
            str(WORKERS),
            "--bind",
            "fd://{fd}",
            "--certfile",
            cert.cert,
            "--keyfile",
            cert.key,
            "--graceful-timeout",
            "2",
        ],
    )


SPAWNING = {"uvicorn": _uvicorn, "hypercorn": _hypercorn}
LAUNCHERS = {"uvicorn": UVICORN_LAUNCHER, "hypercorn": HYPERCORN_LAUNCHER}


@pytest.mark.parametrize("version", TLS)
@pytest.mark.parametrize("server_name", SPAWNING)
def test_spawned_workers_resume_across_workers(pool, server_cert, server_name, version) -> None:  # type: ignore[no-untyped-def]
    """uvicorn/hypercorn --workers 2 through tlsresume's command-line wrappers: the
    spawned workers attach to the master's named ring and resume every session."""
    server = SPAWNING[server_name](pool, True)
    w = walk(server.port, server_cert.cafile, version)
    assert_resumes_across_workers(w)
    assert w.unclean_closes == 0, w  # asyncio sends close_notify by itself


@pytest.mark.parametrize("version", TLS)
@pytest.mark.parametrize("server_name", SPAWNING)
def test_spawned_workers_without_tlsresume(pool, server_cert, server_name, version) -> None:  # type: ignore[no-untyped-def]
    """Control: the stock command lines resume only on the session's own worker."""
    server = SPAWNING[server_name](pool, False)
    assert_no_cross_worker_resumption(walk(server.port, server_cert.cafile, version))


@pytest.mark.parametrize("server_name", LAUNCHERS)
def test_python_api_recipes_resume_across_workers(pool, server_cert, server_name) -> None:  # type: ignore[no-untyped-def]
    """The launcher recipes (uvicorn.run(ssl_context_factory=Resumption(...)), and
    hypercorn's run() with tlsresume's Config) resume across their two workers."""

    def argv() -> list[str]:
        path = pool.dir / f"launch_{server_name}.py"
        path.write_text(LAUNCHERS[server_name])
        return [sys.executable, str(path), "{fd}", server_cert.cert, server_cert.key]

    server = pool.get(f"launcher-{server_name}", argv)
    assert_resumes_across_workers(walk(server.port, server_cert.cafile, "1.3"))


def _shm_names(master: int) -> list[str]:
    return [
        n
        for n in os.listdir(region_dir())
        if n.startswith("tlsresume.") and re.search(rf"-{master}-[0-9a-f]+$", n)
    ]


@pytest.mark.parametrize("server_name", [*SPAWNING, "sanic"])
def test_spawned_masters_remove_their_regions(pool, server_name) -> None:  # type: ignore[no-untyped-def]
    """The named ring (and uvicorn's and Sanic's store) exist while the master runs and
    are removed when it stops; no worker is left behind."""
    server = {**SPAWNING, "sanic": _sanic}[server_name](pool, True)
    names = _shm_names(server.proc.pid)
    assert any(".ring." in n for n in names), names
    if server_name in ("uvicorn", "sanic"):
        assert any(".store." in n for n in names), names
    assert server.stop() == [], server_name
    assert _shm_names(server.proc.pid) == []


# --------------------------------------------------------------------------------------
# aiohttp, asyncio, http.server
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", TLS)
@pytest.mark.parametrize("kind", ["aiohttp", "asyncio", "http.server"])
def test_prefork_servers_resume_across_workers(pool, server_cert, kind, version) -> None:  # type: ignore[no-untyped-def]
    """A pre-fork of aiohttp run_app / asyncio.start_server / ThreadingHTTPServer
    workers, each with Resumption.server_context(): every reconnection resumes on
    either worker, and connections end with close_notify."""
    server = pool.prefork(kind, "tlsresume")
    w = walk(server.port, server_cert.cafile, version)
    assert_resumes_across_workers(w)
    assert w.unclean_closes == 0, w


@pytest.mark.parametrize("version", TLS)
@pytest.mark.parametrize("kind", ["aiohttp", "asyncio", "http.server"])
def test_prefork_servers_without_tlsresume(pool, server_cert, kind, version) -> None:  # type: ignore[no-untyped-def]
    """Control: the same pre-fork with a plain context per worker."""
    server = pool.prefork(kind, "plain")
    assert_no_cross_worker_resumption(walk(server.port, server_cert.cafile, version))


@pytest.mark.parametrize("version", TLS)
def test_http_server_curl_resumes_across_workers(pool, server_cert, version) -> None:  # type: ignore[no-untyped-def]
    """curl refetching from ThreadingHTTPServer workers resumes every time (TLS 1.2
    by session ID through the store); a plainly wrapped one resumes nothing, not
    even on the session's own worker, as it closes without close_notify."""
    on = curl(pool.prefork("http.server", "tlsresume").port, server_cert.cafile, version)
    assert on.cross >= 1 and on.resumed == len(on.fetches) - 1, on.fetches
    off = curl(pool.prefork("http.server", "plain").port, server_cert.cafile, version)
    assert off.cross >= 1 and off.offered == len(off.fetches) - 1, off.text
    assert off.cross_resumed == 0, off.fetches
    if version == "1.2":  # session IDs: evicted from OpenSSL's cache by the bare close
        assert off.resumed == 0, off.fetches


@pytest.mark.parametrize("version", TLS)
def test_aiohttp_gunicorn_worker_resumes_across_workers(pool, server_cert, version) -> None:  # type: ignore[no-untyped-def]
    """gunicorn -k tlsresume.integrations.aiohttp.GunicornWebWorker with the one-line
    config: the worker takes gunicorn's ssl_context hook, so sessions resume on
    either worker."""
    server = pool.gunicorn(
        "one-line", "tlsresume.integrations.aiohttp.GunicornWebWorker", app="aioapp:app"
    )
    w = walk(server.port, server_cert.cafile, version)
    assert_resumes_across_workers(w)
    assert w.unclean_closes == 0, w


@pytest.mark.parametrize("version", TLS)
def test_aiohttp_own_gunicorn_worker_ignores_the_hook(pool, server_cert, version) -> None:  # type: ignore[no-untyped-def]
    """Control: aiohttp's own GunicornWebWorker with the same config builds its own
    context and never calls the hook: no resumption across workers."""
    server = pool.gunicorn("one-line", "aiohttp.GunicornWebWorker", app="aioapp:app")
    assert_no_cross_worker_resumption(walk(server.port, server_cert.cafile, version))


# --------------------------------------------------------------------------------------
# Sanic (spawned workers) and Tornado (fork_processes)
# --------------------------------------------------------------------------------------


def _sanic(pool: ServerPool, tlsresume_on: bool) -> Server:
    pytest.importorskip("sanic")

    def argv() -> list[str]:
        path = pool.dir / f"sanic_{tlsresume_on}.py"
        path.write_text(SANIC_LAUNCHER.replace("{tlsresume}", SANIC_RECIPE if tlsresume_on else ""))
        return [sys.executable, str(path), "{fd}", pool.cert.cert, pool.cert.key]

    def settle(server: Server) -> None:
        # A Sanic master that gets SIGTERM before it has seen every worker's startup
        # acknowledgement never stops (stock Sanic 25.12 too): wait until both
        # workers answer (each acknowledges before it serves), then for the master's
        # next look (it polls every 0.1 s).
        _wait_for_workers(server.port, pool.cert.cafile, WORKERS)
        time.sleep(SANIC_ACK_POLL)

    return pool.get(f"sanic-{tlsresume_on}", argv, settle=settle)


SANIC_ACK_POLL = 1.0  # ten times the master's poll interval


def _tornado(pool: ServerPool, tlsresume_on: bool) -> Server:
    pytest.importorskip("tornado")

    def argv() -> list[str]:
        path = pool.dir / "tornado_launcher.py"
        path.write_text(TORNADO_LAUNCHER)
        mode = "tlsresume" if tlsresume_on else "plain"
        return [sys.executable, str(path), "{port}", mode, pool.cert.cert, pool.cert.key]

    return pool.get(f"tornado-{tlsresume_on}", argv)


RECIPES = {"sanic": _sanic, "tornado": _tornado}
# Clients that resume by ticket (TLS 1.3, TLS 1.2) and by session ID (TLS 1.2, no ticket).
CLIENTS = {"tls1.3": ("1.3", True), "tls1.2": ("1.2", True), "session-id": ("1.2", False)}
RECONNECTIONS = 20


def _reconnect(server: Server, cafile: str, client: str) -> tuple[Walk, int]:
    """``RECONNECTIONS`` reconnections, each offering the session the previous one
    ended with; returns the walk and how many resumed."""
    version, tickets = CLIENTS[client]
    _wait_for_workers(server.port, cafile, WORKERS)
    for _ in range(5):  # the kernel picks the workers: rerun a walk that never crossed
        w = walk(
            server.port, cafile, version, cross=RECONNECTIONS, limit=RECONNECTIONS, tickets=tickets
        )
        if len(w.workers) >= 2 and w.cross >= 2:
            break
    assert w.same + w.cross == RECONNECTIONS, w
    if not tickets:  # it really resumed by session ID
        assert not any(r.session is not None and r.session.has_ticket for r in w.responses), w
    return w, w.same_resumed + w.cross_resumed


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("server_name", RECIPES)
def test_sanic_tornado_resume_across_workers(pool, server_cert, server_name, client) -> None:  # type: ignore[no-untyped-def]
    """The recipes' defaults with 2 workers (Sanic: setup(app); Tornado:
    Resumption().ssl_options(dict)): at least 19 of 20 reconnections resume, on both
    workers, by ticket and by session ID, and every connection ends with close_notify."""
    w, resumed = _reconnect(RECIPES[server_name](pool, True), server_cert.cafile, client)
    print(
        f"{server_name} + tlsresume, {client}: {resumed}/{RECONNECTIONS} resumed "
        f"({w.cross_resumed}/{w.cross} on the other worker), workers {sorted(w.workers)}"
    )
    assert len(w.workers) >= 2 and w.cross >= 2, w
    assert resumed >= RECONNECTIONS - 1, w
    assert w.cross_resumed >= w.cross - 1, w
    assert w.unclean_closes == 0, w


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("server_name", RECIPES)
def test_sanic_tornado_without_tlsresume(pool, server_cert, server_name, client) -> None:  # type: ignore[no-untyped-def]
    """Control, stock Sanic (each spawned worker builds its own context) and stock
    Tornado (its ssl_options dict builds a context per connection): no reconnection
    resumes on the other worker; Tornado resumes none at all."""
    w, resumed = _reconnect(RECIPES[server_name](pool, False), server_cert.cafile, client)
    print(
        f"{server_name} stock, {client}: {resumed}/{RECONNECTIONS} resumed "
        f"({w.cross_resumed}/{w.cross} on the other worker), workers {sorted(w.workers)}"
    )
    assert len(w.workers) >= 2 and w.cross >= 2, w
    assert w.cross_resumed == 0, w
    if server_name == "tornado":
        assert resumed == 0, w


@pytest.mark.parametrize("version", TLS)
@pytest.mark.parametrize("server_name", RECIPES)
def test_sanic_tornado_curl_resumes_across_workers(pool, server_cert, server_name, version) -> None:  # type: ignore[no-untyped-def]
    """curl refetching resumes 9 of 9 with the recipes' defaults (TLS 1.2 by session
    ID: curl asks for no ticket); stock resumes none that cross to the other worker."""
    results = {}
    for on in (True, False):
        server = RECIPES[server_name](pool, on)
        _wait_for_workers(server.port, server_cert.cafile, WORKERS)
        for _ in range(5):  # the kernel picks the workers: rerun a run that never crossed
            results[on] = curl(server.port, server_cert.cafile, version)
            if results[on].cross >= 1:
                break
    on_run, off_run = results[True], results[False]
    print(
        f"curl TLS {version}, {server_name}: tlsresume {on_run.resumed}/9, "
        f"stock {off_run.resumed}/9 ({off_run.cross_resumed} across workers)"
    )
    assert on_run.cross >= 1 and on_run.offered == 9, (on_run.fetches, on_run.offered)
    assert on_run.resumed == 9, on_run.fetches
    assert off_run.cross >= 1 and off_run.cross_resumed == 0, off_run.fetches


# --------------------------------------------------------------------------------------
# Resumption itself, in this process
# --------------------------------------------------------------------------------------


def _cert_context(server_cert: ServerCert) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(server_cert.cert, server_cert.key)
    return ctx


def test_context_is_built_once_per_process(server_cert) -> None:  # type: ignore[no-untyped-def]
    """context(factory) calls the factory once per process and returns the same
    context, with the ring installed and close_notify sockets."""
    tls = Resumption()
    calls = []

    def factory() -> ssl.SSLContext:
        calls.append(1)
        return _cert_context(server_cert)

    first = tls.context(factory)
    assert tls.context(factory) is first and len(calls) == 1
    assert tlsresume.installed_ring(first)
    assert first.sslsocket_class is CloseNotifySSLSocket
    assert (
        Resumption(close_notify=False)
        .server_context(server_cert.cert, server_cert.key)
        .sslsocket_class
        is ssl.SSLSocket
    )


def test_pickled_resumption_attaches_by_name(server_cert) -> None:  # type: ignore[no-untyped-def]
    """spawn=True makes named regions; the pickled copy (what a spawned worker gets)
    attaches to them and shares the keys and the store."""
    tls = Resumption(session_cache="256K", spawn=True, name="test-integrations")
    copy = pickle.loads(pickle.dumps(tls))
    assert tls.ring is not None and tls.ring.name is not None
    assert tls.session_store is not None and tls.session_store.name is not None
    assert copy.ring is not None and copy.ring.name == tls.ring.name
    assert copy.session_store is not None and copy.session_store.name == tls.session_store.name
    assert [k.name for k in copy.ring.keys()] == [k.name for k in tls.ring.keys()]
    assert pickle.loads(pickle.dumps(copy)).ring.name == tls.ring.name


def test_anonymous_ring_refuses_to_travel() -> None:
    """A ring only forked workers can share cannot be pickled for spawned ones."""
    with tlsresume.TicketKeyRing() as ring:
        with pytest.raises(TypeError, match="forked"):
            pickle.dumps(Resumption(ring))


def test_bad_arguments_fail_before_anything_is_made() -> None:
    """Wrong types and nothing-to-share are refused with a message."""
    with pytest.raises(TypeError, match="keys"):
        Resumption(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="session_cache"):
        Resumption(session_cache=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="nothing to share"):
        Resumption(False, session_cache=False)
    with pytest.raises(ValueError):
        Resumption(session_cache="tiny")


def test_from_environ_reads_the_tlsresume_variables(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """TLSRESUME_KEY_FILE/_FORMAT, _RING and _SESSION_CACHE configure the command-line
    wrappers; a KeyFile ring travels to spawned workers by name."""
    keyfile = tmp_path / "ticket.keys"
    source = tlsresume.TicketKeyRing()
    source.export(keyfile, "openssl80")
    current = next(k.name for k in source.keys() if k.role == "current")
    tls = Resumption.from_environ(
        {"TLSRESUME_KEY_FILE": str(keyfile), "TLSRESUME_SESSION_CACHE": "256K"}
    )
    assert tls.ring is not None and [k.name for k in tls.ring.keys()] == [current]
    assert tls.session_store is not None and tls.session_store.size == 256 * 1024
    named = Resumption.from_environ({"TLSRESUME_RING": f"test-integrations-{os.getpid()}"})
    try:
        assert named.ring is not None and named.ring.name == f"test-integrations-{os.getpid()}"
    finally:
        named.ring.unlink()  # type: ignore[union-attr]
    shared_file = pickle.loads(
        pickle.dumps(Resumption(KeyFile(str(keyfile), "openssl80"), spawn=True))
    )
    assert shared_file.ring is not None and [k.name for k in shared_file.ring.keys()] == [current]
    plain = Resumption.from_environ({})
    assert plain.ring is not None and plain.ring.name is None
    assert plain.session_store is not None  # the default store, as Resumption()
    assert plain.session_store.size == tlsresume.DEFAULT_STORE_SIZE
    off = Resumption.from_environ({"TLSRESUME_SESSION_CACHE": "off"})
    assert off.ring is not None and off.session_store is None


def test_sanic_setup_refuses_bad_input(server_cert) -> None:  # type: ignore[no-untyped-def]
    """setup() checks its app and the Resumption arguments at once (making no region),
    runs once per app, and a worker the master's Resumption did not reach says so."""
    sanic = pytest.importorskip("sanic")
    from tlsresume.integrations.sanic import CertLoader, setup

    with pytest.raises(TypeError, match="Sanic app"):
        setup(object())  # type: ignore[arg-type]
    app = sanic.Sanic(f"test_integrations_{os.getpid()}")
    with pytest.raises(TypeError, match="keys"):
        setup(app, 42)
    with pytest.raises(ValueError):
        setup(app, session_cache="tiny")
    with pytest.raises(TypeError, match="Resumption takes"):
        setup(app, sesion_cache="1M")
    assert app.certloader_class is not CertLoader  # nothing was set by a refused call
    setup(app)
    assert app.certloader_class is CertLoader
    with pytest.raises(tlsresume.StateError, match="already"):
        setup(app)
    loader = CertLoader({"cert": server_cert.cert, "key": server_cert.key})
    with pytest.raises(tlsresume.StateError, match="at import time"):
        loader.load(app)  # main_process_start never ran: no Resumption in shared_ctx


def test_tornado_resumption_contexts_and_refusals(server_cert, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """ssl_options() builds one context per process and per options dict, with the
    ring, the store and close_notify sockets; bad options are refused with the fix,
    and a Resumption made after fork_processes() is refused."""
    process = pytest.importorskip("tornado.process")
    from tlsresume.integrations.tornado import Resumption as TornadoResumption

    tls = TornadoResumption()
    options = {"certfile": server_cert.cert, "keyfile": server_cert.key}
    ctx = tls.ssl_options(options)
    assert tls.ssl_options(dict(options)) is ctx
    assert tls.ssl_options({**options, "ciphers": "ECDHE+AESGCM"}) is not ctx
    assert tlsresume.installed_ring(ctx) and tls.session_store is not None
    assert ctx.sslsocket_class is CloseNotifySSLSocket
    own = _cert_context(server_cert)
    assert tls.ssl_options(own) is own and tlsresume.installed_ring(own)
    with pytest.raises(TypeError, match="certfile"):
        tls.ssl_options("cert.pem")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="takes ca_certs"):
        tls.ssl_options({**options, "cert_file": "x"})
    with pytest.raises(ValueError, match="needs 'certfile'"):
        tls.ssl_options({"keyfile": server_cert.key})
    monkeypatch.setattr(process, "_task_id", 0)  # as in a worker fork_processes started
    with pytest.raises(tlsresume.StateError, match="before fork_processes"):
        TornadoResumption()


def test_close_notify_socket_sends_the_alert_on_close(server_cert) -> None:  # type: ignore[no-untyped-def]
    """A server that just closes its CloseNotifySSLSocket still ends with close_notify
    (the client reads a clean end), where a plain SSLSocket ends with a bare EOF."""
    ctx = _cert_context(server_cert)
    cctx = client_context(server_cert.cafile)
    with InProcessServer(ctx, close_notify=False) as plain:
        assert not https_get("127.0.0.1", plain.port, cctx).clean_close
    ctx.sslsocket_class = CloseNotifySSLSocket
    with InProcessServer(ctx, close_notify=False) as server:
        assert https_get("127.0.0.1", server.port, cctx).clean_close
