"""Reusable pieces for tests that run real servers and real clients.

* :class:`ServeProcess` starts ``python -m tlsresume serve ...`` as a real
  subprocess, parses its listening line, and stops it (always within a bound).
* :func:`resuming_client` reconnects n times offering the previous session and
  returns how many reconnections resumed and which workers answered.
* :func:`https_get` does one request and returns the parsed response;
  :func:`server_stats` reads a serve's counters from its stats URL.

Nothing here uses tlsresume's own client code (``tlsresume.tools.check``), so the server
tests do not depend on the code they are meant to cross-check.

One module (over 500 lines): the helpers every test module shares; splitting it
would only move imports around.
"""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple

from .handshake import read_request

ROOT = Path(__file__).resolve().parent.parent
PYSRC = ROOT / "pysrc"

LISTEN_RE = re.compile(
    r"^tlsresume serve: listening on https://(?P<host>\[[^\]]+\]|[^:/]+):(?P<port>\d+)/"
    r"(?P<rest>.*)$"
)
TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}

#: Every subprocess a test starts gives up after this long; no test may hang.
DEFAULT_TIMEOUT = 30.0


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a tlsresume subprocess: it imports the same tlsresume as
    the tests (the installed one, or the source tree when that is what we use)."""
    import tlsresume

    env = dict(os.environ)
    if Path(tlsresume.__file__).resolve().parent.parent == PYSRC:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PYSRC), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def env_refusing(folder: Path, *modules: str) -> dict[str, str]:
    """:func:`child_env` for a Python that cannot import ``modules``: each raises
    ImportError, as a broken or wrong-architecture build of the C core, or a package
    that is not installed, looks to Python. A ``sitecustomize`` hook written into
    ``folder`` does it, so the library under test needs no switch for it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(
        "import sys\n\n"
        f"_REFUSED = {sorted(modules)!r}\n\n"
        "class _Refuse:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name in _REFUSED or name.split('.')[0] in _REFUSED:\n"
        "            raise ImportError(name + ' refused by the test')\n"
        "        return None\n\n"
        "sys.meta_path.insert(0, _Refuse())\n"
    )
    env = child_env()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(folder), env.get("PYTHONPATH", "")) if p)
    return env


def kill_one_worker_and_wait_refill(server: ServeProcess, timeout: float = 10.0) -> int:
    """SIGKILL the first worker of ``server`` and wait until the master has filled
    its slot again (a new child beside the survivors). Returns the killed pid."""
    victim = server.pids[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while len(set(child_pids(server.proc.pid)) - {victim}) < len(server.pids):
        assert time.monotonic() < deadline, "the slot was never refilled"
        time.sleep(0.05)
    return victim


def fork_warning_of(code: str) -> str:
    """Run ``code`` in a fresh Python with every DeprecationWarning shown, and
    return what it printed about forking a multi-threaded process ('' if nothing):
    the negative control of the tests that prove a process forks without threads."""
    out = subprocess.run(
        [sys.executable, "-W", "always::DeprecationWarning", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
    )
    assert out.returncode == 0, out.stderr
    return "\n".join(line for line in out.stderr.splitlines() if "multi-threaded" in line)


def tlsresume_cmd(*args: str) -> list[str]:
    """``python -m tlsresume ARGS`` with this interpreter."""
    return [sys.executable, "-m", "tlsresume", *args]


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            # The state letter follows the parenthesised command name.
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def _live_pids_where(field: int, value: int) -> list[int]:
    """Live (not zombie) processes whose /proc stat field ``field`` (counted after
    the command name: 1 the parent, 2 the process group) is ``value``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > field and fields[0] != "Z" and int(fields[field]) == value:
            found.append(int(entry))
    return found


def fork_and_report(child: Callable[[], bytes], *, raw: bool = False) -> bytes:
    """Fork; the child writes ``child()`` to a pipe and exits; returns what it wrote.

    ``raw`` forks with libc's ``fork()`` directly, which runs no
    ``os.register_at_fork`` hook: the control for what those hooks do.
    """
    import ctypes

    r, w = os.pipe()
    pid = ctypes.CDLL(None).fork() if raw else os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.write(w, child())
        finally:
            os._exit(0)
    os.close(w)
    try:
        with os.fdopen(r, "rb") as f:
            return f.read()
    finally:
        os.waitpid(pid, 0)


def child_pids(ppid: int) -> list[int]:
    """Live processes whose parent is ``ppid``."""
    return _live_pids_where(1, ppid)


def group_members(pgid: int) -> list[int]:
    """Live processes in process group ``pgid``."""
    return _live_pids_where(2, pgid)


def wait_gone(pids: Sequence[int], timeout: float) -> list[int]:
    """Wait up to ``timeout`` s for ``pids`` to exit; return those still alive."""
    deadline = time.monotonic() + timeout
    alive = [p for p in pids if pid_alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if pid_alive(p)]
    return alive


def pids_with_env_marker(marker: str) -> list[int]:
    """Processes whose environment contains ``marker`` (to find strays of a test)."""
    found = []
    needle = marker.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read() and pid_alive(int(entry)):
                    found.append(int(entry))
        except OSError:
            continue
    return found


@dataclass
class ServeProcess:
    """A running ``tlsresume serve`` subprocess.

    Use :meth:`start`; always :meth:`stop` (the ``serve`` fixture does).
    """

    args: list[str]
    proc: subprocess.Popen[bytes]
    stderr_file: IO[bytes]
    host: str = ""
    port: int = 0
    pids: list[int] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)
    stdout_text: str = ""

    @classmethod
    def start(
        cls,
        args: Sequence[str],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        env: dict[str, str] | None = None,
        new_session: bool = False,
    ) -> ServeProcess:
        """Start ``tlsresume serve --port 0 ARGS`` and wait for its listening line.

        ``new_session`` starts it in a session (and process group) of its own, as a
        server on another machine would be: a signal to the test's group does not
        reach it (:meth:`stop` still does).

        Raises:
            RuntimeError: it exited or printed no listening line within ``timeout``;
                the message holds its output.
        """
        stderr_file = tempfile.TemporaryFile()
        cmd = tlsresume_cmd("serve", "--port", "0", *args)
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=stderr_file,
            stdin=subprocess.DEVNULL,
            env=env or child_env(),
            start_new_session=new_session,
        )
        server = cls(list(args), proc, stderr_file)
        try:
            server._wait_listening(timeout)
        except BaseException:
            server.stop()
            raise
        return server

    def _wait_listening(self, timeout: float) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        buf = b""
        while time.monotonic() < deadline:
            readable, _, _ = select.select([fd], [], [], 0.1)
            if readable:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                buf += chunk
                self.stdout_text = buf.decode("utf-8", "replace")
                for line in self.stdout_text.splitlines():
                    m = LISTEN_RE.match(line)
                    if m:
                        self.host = m["host"].strip("[]")
                        self.port = int(m["port"])
                        self.fields = dict(
                            kv.split("=", 1) for kv in m["rest"].split() if "=" in kv
                        )
                        self.pids = [int(p) for p in self.fields["pids"].split(",")]
                        return
            elif self.proc.poll() is not None:
                break
        raise RuntimeError(
            f"serve {' '.join(self.args)} did not start (exit {self.proc.poll()}):\n"
            f"stdout: {buf.decode('utf-8', 'replace')}\nstderr: {self.stderr_text()}"
        )

    @property
    def ring_name(self) -> str | None:
        """The named key ring from the listening line (``None``: no ring)."""
        value = self.fields.get("ring", "none")
        return None if value == "none" else value

    @property
    def store_name(self) -> str | None:
        """The named session store from the listening line (``None``: no store)."""
        value = self.fields.get("store", "none")
        return None if value == "none" else value

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}/"

    def stderr_text(self) -> str:
        try:
            self.stderr_file.seek(0)
            return self.stderr_file.read().decode("utf-8", "replace")
        except ValueError:  # closed
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        """Signal the master and wait for it; SIGKILL it (and known workers) if stuck.

        Returns:
            The master's exit code (negative: killed by that signal).
        """
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate(timeout=timeout)
        except ValueError:  # already communicated
            out = b""
        self.stdout_text += (out or b"").decode("utf-8", "replace")
        # Never leave a worker behind, whatever happened to the master.
        for pid in wait_gone(self.pids, 5.0):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return self.proc.returncode


def client_context(
    cafile: str | os.PathLike[str], tls_version: str | None = None
) -> ssl.SSLContext:
    """A verifying client context trusting ``cafile``, optionally pinned to a version."""
    ctx = ssl.create_default_context(cafile=os.fspath(cafile))
    if tls_version is not None:
        ctx.minimum_version = ctx.maximum_version = TLS_VERSIONS[tls_version]
    return ctx


@dataclass
class Response:
    """One HTTP response as the client saw it."""

    status_line: str
    headers: dict[str, str]
    body: bytes
    resumed: bool
    version: str | None
    session: ssl.SSLSession | None
    clean_close: bool  # the server ended with close_notify (not a bare TCP close)


def parse_response(data: bytes) -> tuple[str, dict[str, str], bytes]:
    """Split raw response bytes into status line, headers (lower-case keys), body."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return lines[0], headers, body


def https_get(
    host: str,
    port: int,
    ctx: ssl.SSLContext,
    *,
    server_hostname: str = "localhost",
    session: ssl.SSLSession | None = None,
    request: bytes | None = None,
    timeout: float = 10.0,
) -> Response:
    """Connect, send one request (default ``GET / HTTP/1.1``), read to the end.

    The socket does not suppress ragged EOFs, so ``clean_close`` tells whether the
    server sent close_notify before closing.
    """
    if request is None:
        request = (
            f"GET / HTTP/1.1\r\nHost: {server_hostname}\r\nConnection: close\r\n\r\n"
        ).encode()
    with socket.create_connection((host, port), timeout=timeout) as raw:
        with ctx.wrap_socket(
            raw, server_hostname=server_hostname, session=session, suppress_ragged_eofs=False
        ) as tls:
            tls.sendall(request)
            data = bytearray()
            clean = False
            while True:
                try:
                    chunk = tls.recv(65536)
                except ssl.SSLEOFError:
                    break  # TCP closed without close_notify
                except ssl.SSLZeroReturnError:
                    clean = True
                    break
                if not chunk:
                    clean = True  # recv returns b"" on close_notify
                    break
                data += chunk
            status, headers, body = parse_response(bytes(data))
            return Response(
                status, headers, body, tls.session_reused, tls.version(), tls.session, clean
            )


STATS_PATH = "/.well-known/tlsresume/stats"


def resume_streak(host: str, port: int, ctx: ssl.SSLContext, n: int) -> tuple[int, int]:
    """n + 1 connections, each offering the last one's session. Returns (resumed,
    failed): a failed handshake raises inside, so failed counts the exceptions."""
    session, resumed, failed = None, 0, 0
    for _ in range(n + 1):
        try:
            r = https_get(host, port, ctx, session=session, timeout=5.0)
        except (OSError, ssl.SSLError) as exc:  # pragma: no cover - the failure tests look for
            failed += 1
            print("handshake failed:", exc)
            continue
        resumed += session is not None and r.resumed
        session = r.session
    return resumed, failed


def time_to_heal(host: str, port: int, ctx: ssl.SSLContext, within: float) -> tuple[float, int]:
    """Streaks of 20 reconnections until one resumes all 20. Returns (seconds it took,
    handshakes that failed on the way); fails the test after ``within`` seconds."""
    start, failed = time.monotonic(), 0
    while True:
        resumed, bad = resume_streak(host, port, ctx, 20)
        failed += bad
        if resumed == 20:
            return time.monotonic() - start, failed
        assert time.monotonic() - start < within, f"resumption not back after {within} s"
        time.sleep(0.05)


def server_stats(host: str, port: int, cafile: str | os.PathLike[str]) -> dict[str, Any]:
    """GET a serve's stats URL (no session offered) and return the parsed JSON."""
    import json

    request = f"GET {STATS_PATH} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()
    r = https_get(host, port, client_context(cafile), request=request)
    assert r.status_line == "HTTP/1.1 200 OK", r.status_line
    assert r.headers["content-type"] == "application/json", r.headers
    payload: dict[str, Any] = json.loads(r.body)
    return payload


class ResumeStats(NamedTuple):
    """What :func:`resuming_client` saw."""

    resumed: int
    workers: set[str]
    same_worker: int = 0  # reconnections that reached the worker the session came from
    cross_resumed: int = 0  # reconnections resumed on another worker than the session's

    @property
    def only_same_worker_resumed(self) -> bool:
        """The negative control's exact form: nothing resumed across workers, and
        every return to the session's own worker resumed (how often that happens is
        the kernel's accept order: none when round-robin, a quarter at random)."""
        return self.cross_resumed == 0 and self.resumed == self.same_worker


def resuming_client(
    host: str,
    port: int,
    ctx: ssl.SSLContext,
    reconnections: int,
    *,
    server_hostname: str = "localhost",
    timeout: float = 10.0,
) -> ResumeStats:
    """One full handshake, then ``reconnections`` reconnections, each offering the
    session the previous connection ended with.

    Returns:
        How many reconnections resumed, and the distinct ``X-Worker`` values of all
        connections.
    """
    session = None
    resumed = same = cross = 0
    workers: set[str] = set()
    last = None
    for i in range(reconnections + 1):
        r = https_get(
            host, port, ctx, server_hostname=server_hostname, session=session, timeout=timeout
        )
        assert r.status_line.endswith("200 OK"), r.status_line
        worker = r.headers["x-worker"]
        if i > 0:
            resumed += bool(r.resumed)
            same += worker == last
            cross += bool(r.resumed) and worker != last
        workers.add(worker)
        last = worker
        session = r.session
    return ResumeStats(resumed, workers, same, cross)


class InProcessServer:
    """A one-thread HTTPS server in this process, for controls ``serve`` cannot be.

    Args:
        ctx: the server context (e.g. with ``OP_NO_TICKET``, or a fixed version).
        close_notify: end each connection with close_notify (non-blocking
            ``unwrap()``) as ``serve`` does; ``False`` just closes the socket, as most
            Python servers do.

    Each connection gets ``worker 0`` and ``X-Session-Reused``. Use as a context
    manager; every connection is bounded by a timeout.
    """

    def __init__(self, ctx: ssl.SSLContext, *, close_notify: bool = True) -> None:
        import threading

        self.ctx = ctx
        self.close_notify = close_notify
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.host = "127.0.0.1"
        self.port = self.sock.getsockname()[1]
        self.resumed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                conn.settimeout(5)
                with self.ctx.wrap_socket(conn, server_side=True) as tls:
                    read_request(tls)
                    self.resumed += bool(tls.session_reused)
                    body = b"worker 0\n"
                    tls.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n"
                        b"X-Worker: 0\r\nX-Session-Reused: %s\r\n\r\n%s"
                        % (len(body), b"yes" if tls.session_reused else b"no", body)
                    )
                    if self.close_notify:
                        tls.setblocking(False)
                        try:
                            tls.unwrap()
                        except (OSError, ValueError):
                            pass
                # Leaving the with-block closes the socket.
            except OSError:
                conn.close()

    def __enter__(self) -> InProcessServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()
