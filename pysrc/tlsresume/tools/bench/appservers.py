"""The Python servers people run, under ``tlsresume bench``: gunicorn (gthread
workers), uvicorn and hypercorn, each as shipped and with tlsresume's
integration, the same small app and the same worker count.

Each runs behind a launcher (``python -m tlsresume.tools.bench.appservers``, in
the bench's process group): it binds the listening socket and hands it to the
server by file descriptor (``--bind fd://N``, ``--fd N``, the way socket
activation runs them), waits until every worker has answered a request, prints
the line the bench waits for, and passes SIGTERM on. Its own CPU time is a few
probe requests; the bench counts the whole process tree.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .config import HOST, REQUEST, SERVER_NAME

#: Every real-server configuration, in report order, with what it is.
APP_CONFIGS: dict[str, str] = {
    "gunicorn-stock": "gunicorn -k gthread --threads 2, N workers, as shipped (a new "
    "context per connection, so nothing resumes)",
    "gunicorn-tlsresume": "gunicorn -k gthread --threads 2, N workers, with "
    "tlsresume.integrations.gunicorn's ssl_context hook",
    "uvicorn-stock": "uvicorn --workers N as shipped (accepted sockets without TCP_NODELAY)",
    "uvicorn-tlsresume": "python -m tlsresume.integrations.uvicorn --workers N",
    "hypercorn-stock": "hypercorn --workers N as shipped",
    "hypercorn-tlsresume": "python -m tlsresume.integrations.hypercorn --workers N",
}
#: The module each configuration's server needs.
_NEEDS = {name: name.split("-", 1)[0] for name in APP_CONFIGS}

_READY = re.compile(r"^bench-app (\S+) listening on \S+:(\d+) workers=(\d+)$")

# One app for all three: WSGI for gunicorn, ASGI (with lifespan) for the others.
# The body names the worker, as every server of the bench does.
_APP = """\
import os


def wsgi(environ, start_response):
    body = b"worker %d\\n" % os.getpid()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    body = b"worker %d\\n" % os.getpid()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
"""
_GUNICORN_CONF = "from tlsresume.integrations.gunicorn import ssl_context  # noqa: F401\n"


def app_availability(name: str) -> str | None:
    """Why configuration ``name`` cannot run here, or ``None`` if it can."""
    module = _NEEDS[name]
    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed (pip install {module})"
    return None


def launcher_argv(name: str, workers: int, cert: Path, key: Path, appdir: Path) -> list[str]:
    """The command the bench runs for configuration ``name``."""
    return [
        sys.executable,
        "-m",
        "tlsresume.tools.bench.appservers",
        name,
        "--workers",
        str(workers),
        "--cert",
        str(cert),
        "--key",
        str(key),
        "--appdir",
        str(appdir),
    ]


def ready_port(line: str) -> int | None:
    """The port in the launcher's ready line, or ``None`` for any other line."""
    match = _READY.match(line.strip())
    return int(match.group(2)) if match else None


def server_argv(name: str, fd: int, workers: int, cert: str, key: str, appdir: str) -> list[str]:
    """The server's own command line, listening on inherited descriptor ``fd``."""
    py = [sys.executable, "-m"]
    n = str(workers)
    if name.startswith("gunicorn"):
        argv = [*py, "gunicorn", "-k", "gthread", "--threads", "2", "-w", n]
        argv += ["--bind", f"fd://{fd}", "--certfile", cert, "--keyfile", key]
        argv += ["--chdir", appdir, "--log-level", "warning"]
        if name == "gunicorn-tlsresume":
            argv += ["-c", str(Path(appdir) / "gunicorn_tlsresume.py")]
        return [*argv, "benchapp:wsgi"]
    if name.startswith("uvicorn"):
        module = "uvicorn" if name == "uvicorn-stock" else "tlsresume.integrations.uvicorn"
        argv = [*py, module, "benchapp:asgi", "--workers", n, "--fd", str(fd)]
        argv += ["--ssl-certfile", cert, "--ssl-keyfile", key, "--app-dir", appdir]
        return [*argv, "--log-level", "warning", "--timeout-graceful-shutdown", "1"]
    if name.startswith("hypercorn"):
        module = "hypercorn" if name == "hypercorn-stock" else "tlsresume.integrations.hypercorn"
        argv = [*py, module, "benchapp:asgi", "--workers", n, "--bind", f"fd://{fd}"]
        return [*argv, "--certfile", cert, "--keyfile", key, "--graceful-timeout", "1"]
    raise ValueError(f"unknown app server configuration {name!r}")


def _probe(port: int, timeout: float) -> str | None:
    """One request as the bench sends it; the worker named in the answer, or None."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the bench's own check verifies; this only waits
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname=SERVER_NAME) as tls:
                tls.sendall(REQUEST)
                data = b""
                while chunk := tls.recv(4096):
                    data += chunk
    except (OSError, ssl.SSLError):
        return None
    match = re.search(rb"\r\n\r\n(worker \d+)", data)
    return match.group(1).decode() if match and data.startswith(b"HTTP/1.") else None


def _launch(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tlsresume.tools.bench.appservers")
    p.add_argument("name", choices=tuple(APP_CONFIGS))
    p.add_argument("--workers", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--appdir", required=True)
    p.add_argument("--start-timeout", type=float, default=60.0)
    args = p.parse_args(argv)
    appdir = Path(args.appdir)
    appdir.mkdir(parents=True, exist_ok=True)
    (appdir / "benchapp.py").write_text(_APP, encoding="utf-8")
    (appdir / "gunicorn_tlsresume.py").write_text(_GUNICORN_CONF, encoding="utf-8")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(appdir), env.get("PYTHONPATH"))))
    cmd = server_argv(args.name, sock.fileno(), args.workers, args.cert, args.key, str(appdir))
    child = subprocess.Popen(cmd, pass_fds=(sock.fileno(),), cwd=appdir, env=env)
    sock.close()  # the server holds it now

    def forward(signum: int, _frame: object) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    # Ready once every worker has answered (or, if the kernel keeps picking the
    # same ones, a few seconds after the first answer).
    seen: set[str] = set()
    deadline = time.monotonic() + args.start_timeout
    first = None
    while child.poll() is None and time.monotonic() < deadline:
        worker = _probe(port, timeout=5.0)
        if worker is not None:
            seen.add(worker)
            first = first or time.monotonic()
            if len(seen) >= args.workers or time.monotonic() - first > 5.0:
                print(
                    f"bench-app {args.name} listening on {HOST}:{port} workers={len(seen)}",
                    flush=True,
                )
                break
        else:
            time.sleep(0.1)
    else:
        if child.poll() is None:
            print(f"bench-app {args.name}: no answer in {args.start_timeout:.0f} s", flush=True)
            child.terminate()
    return child.wait()


if __name__ == "__main__":
    sys.exit(_launch())
