"""``tlsresume bench``: handshakes per second on loopback, side by side.

One command runs the same load against several servers and reports, per
configuration, TLS version and handshake kind (full or resumed): connections per
second, how many resumed, the server's CPU time per connection, and both figures
as ratios against the plain-CPython baseline of the same run (absolute figures
drift on shared machines, ratios taken in one run do not; DESIGN.md section 6).

Configurations (:data:`CONFIGS`):

* ``baseline``: ``tlsresume serve --no-share``, a pre-fork Python server whose
  workers each build their own context, as every Python server does today;
* ``tickets``: ``tlsresume serve``, the workers share one ticket key ring;
* ``session-cache``: ``tlsresume serve --session-cache 16M --no-tickets``, the
  workers share one session store (session IDs, TLS 1.3 stateful tickets);
* ``openssl-s_server``: ``openssl s_server -WWW``, one process of C, the limit;
* ``node-cluster``: ``node_cluster.js``, Node's cluster module with N workers,
  which share their ticket keys (the peer to match).

The two references run when ``openssl`` and ``node`` are installed; the others
are reported "unavailable" with the reason. All servers use one throwaway
certificate and run for the whole benchmark; their cells are interleaved, so a
change in the machine's load hits every configuration alike.

The load comes from the C load generator (``csrc/loadgen.c``) in separate client
processes (``--clients``), each running connect -> handshake -> ``GET /worker``
-> read to EOF -> close_notify -> close, one connection at a time, without the
GIL. In resumed mode each client process holds ``--sessions`` "virtual clients",
each keeping the newest session its last connection ended with, and every
connection offers the session of one picked at random: the server's accept
order then cannot line a client up with the worker that issued its session, so
a server whose workers do not share resumes about 1/N of them.

Server CPU time is the sum of user and system time of the server's whole process
tree (``/proc/PID/stat``), read before and after each measured window.

:func:`run` does the work and returns the report as a JSON-ready dict;
:func:`main` is the command line (``tlsresume bench``, ``python -m
tlsresume.benchmark``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import select
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TextIO

__all__ = [
    "CONFIGS",
    "PROTOCOLS",
    "MODES",
    "BenchConfig",
    "BenchError",
    "run",
    "main",
    "availability",
    "render_table",
    "render_markdown",
    "plot",
    "parse_proc_stat",
    "tree_cpu_seconds",
]

PROG = "tlsresume bench"

#: Every configuration, in report order, with what it is.
CONFIGS: dict[str, str] = {
    "baseline": "tlsresume serve --no-share: plain CPython, per-worker contexts",
    "tickets": "tlsresume serve: shared ticket key ring",
    "session-cache": "tlsresume serve --session-cache 16M --no-tickets: shared session store",
    "openssl-s_server": "openssl s_server -WWW: one C process (the limit)",
    "node-cluster": "Node.js cluster module, N workers sharing ticket keys (the peer)",
}
#: Configurations that are tlsresume itself.
TLSRESUME_CONFIGS = ("tickets", "session-cache")
PROTOCOLS = ("1.2", "1.3")
MODES = ("full", "resumed")

#: The size of the shared store in the ``session-cache`` configuration.
SESSION_CACHE_SIZE = "16M"
#: Every server answers this with a small 200 response (s_server: a file named
#: ``worker`` in its document root).
REQUEST = b"GET /worker HTTP/1.0\r\nHost: localhost\r\nUser-Agent: tlsresume-bench\r\n\r\n"
SERVER_NAME = "localhost"
HOST = "127.0.0.1"

#: Children carry this variable (value: a token of the run), so strays can be found.
ENV_MARKER = "TLSRESUME_BENCH_RUN"

_QUICK_DURATION, _QUICK_ROUNDS = 1.5, 1
_FULL_DURATION, _FULL_ROUNDS = 3.0, 3
_TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}

# Exit codes, as the rest of the CLI: 0 ok, 1 failed, 2 bad usage, 130 interrupted.
EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class BenchError(RuntimeError):
    """The benchmark could not run (no C core, a client process died, ...)."""


@dataclass
class BenchConfig:
    """What :func:`run` measures; the command line only fills this in.

    Attributes:
        configs: configuration names (keys of :data:`CONFIGS`), in any order.
        workers: worker processes of every multi-process server.
        duration: seconds each cell (configuration x protocol x mode) is measured.
        rounds: times every cell is measured; the report takes the median.
        clients: load generator processes, each with one connection at a time.
        sessions: virtual clients per load generator process (resumed mode).
        protocols: TLS versions, ``"1.2"`` and/or ``"1.3"``.
        modes: ``"full"`` and/or ``"resumed"`` handshakes.
        quick: recorded in the report (the CLI picks short durations with it).
        io_timeout: seconds any connect, read or write of the load generator may take.
        start_timeout: seconds a server gets to start listening.
        progress: where progress goes (``None``: nowhere).
    """

    configs: tuple[str, ...] = tuple(CONFIGS)
    workers: int = 2
    duration: float = _FULL_DURATION
    rounds: int = _FULL_ROUNDS
    clients: int = 2
    sessions: int = 16
    protocols: tuple[str, ...] = PROTOCOLS
    modes: tuple[str, ...] = MODES
    quick: bool = False
    io_timeout: float = 5.0
    start_timeout: float = 30.0
    progress: TextIO | None = None

    def validate(self) -> None:
        """Check every value before anything starts.

        Raises:
            ValueError: naming the option that is wrong.
        """
        unknown = [c for c in self.configs if c not in CONFIGS]
        if unknown or not self.configs:
            raise ValueError(
                f"--configs: unknown configuration {', '.join(unknown) or '(none given)'}; "
                f"choose from {', '.join(CONFIGS)}"
            )
        if not 1 <= self.workers <= 64:
            raise ValueError(f"--workers must be between 1 and 64, not {self.workers}")
        if not 0.1 <= self.duration <= 600:
            raise ValueError(f"--duration must be between 0.1 and 600 seconds, not {self.duration}")
        if not 1 <= self.rounds <= 100:
            raise ValueError(f"--rounds must be between 1 and 100, not {self.rounds}")
        if not 1 <= self.clients <= 32:
            raise ValueError(f"--clients must be between 1 and 32, not {self.clients}")
        if not 1 <= self.sessions <= 1024:
            raise ValueError(f"--sessions must be between 1 and 1024, not {self.sessions}")
        bad = [p for p in self.protocols if p not in PROTOCOLS]
        if bad or not self.protocols:
            raise ValueError(f"--tls: choose from {', '.join(PROTOCOLS)}, not {bad or 'nothing'}")
        bad = [m for m in self.modes if m not in MODES]
        if bad or not self.modes:
            raise ValueError(f"--modes: choose from {', '.join(MODES)}, not {bad or 'nothing'}")
        if not self.io_timeout > 0 or not self.start_timeout > 0:
            raise ValueError("io_timeout and start_timeout must be positive")


# --------------------------------------------------------------------------------------
# CPU accounting: pure parsing, then /proc
# --------------------------------------------------------------------------------------


def parse_proc_stat(text: str) -> tuple[int, int, int]:
    """Parse one ``/proc/PID/stat`` line.

    Returns:
        ``(ppid, pgrp, ticks)`` where ticks is utime + stime + cutime + cstime in
        clock ticks: the time of the process (all its threads) and of the children
        it reaped. Counting reaped children keeps a worker that exited inside a
        measured window in the sum, and no live process is counted twice.

    Raises:
        ValueError: the line is not in the stat format.
    """
    # The command name is in parentheses and may itself hold spaces or ")".
    _, sep, rest = text.rpartition(")")
    fields = rest.split()
    if not sep or len(fields) < 15:
        raise ValueError(f"not a /proc/PID/stat line: {text[:80]!r}")
    # fields[0] is field 3 (state); ppid=4, pgrp=5, utime=14 ... cstime=17.
    ppid, pgrp = int(fields[1]), int(fields[2])
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))
    return ppid, pgrp, ticks


def _read_all_stats() -> dict[int, tuple[int, int, int]]:
    stats = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as f:
                stats[int(entry)] = parse_proc_stat(f.read())
        except (OSError, ValueError):
            continue  # exited meanwhile
    return stats


def tree_pids(root: int, stats: dict[int, tuple[int, int, int]] | None = None) -> list[int]:
    """``root`` and every live descendant of it."""
    stats = _read_all_stats() if stats is None else stats
    children: dict[int, list[int]] = {}
    for pid, (ppid, _pgrp, _ticks) in stats.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            found.append(pid)
            todo.extend(children.get(pid, ()))
    return found


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds of ``root``'s process tree so far (see
    :func:`parse_proc_stat`); 0.0 if ``root`` is gone."""
    stats = _read_all_stats()
    ticks = sum(stats[pid][2] for pid in tree_pids(root, stats))
    return ticks / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------------------
# Availability
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Availability:
    """Whether a configuration can run here, and if not why."""

    available: bool
    reason: str | None = None
    version: str | None = None


def _tool_version(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if done.returncode == 0 and text else None


def node_script() -> Path:
    """Where ``node_cluster.js`` (package data) is."""
    return Path(__file__).with_name("node_cluster.js")


def availability(names: Sequence[str] = tuple(CONFIGS)) -> dict[str, Availability]:
    """Which configurations can run on this machine.

    ``tickets`` and ``session-cache`` need tlsresume's C core (so does the load
    generator, which :func:`run` checks separately); ``session-cache`` also needs
    a ``tlsresume serve`` with ``--session-cache`` and ``--no-tickets``; the
    references need ``openssl`` and ``node`` on ``PATH``.
    """
    result: dict[str, Availability] = {}
    core_error: str | None = None
    if any(n in TLSRESUME_CONFIGS for n in names):
        try:
            import tlsresume._binding  # noqa: F401
        except ImportError as exc:
            core_error = f"tlsresume's C core cannot load: {exc}"
    for name in names:
        if name == "baseline":
            result[name] = Availability(True)
        elif name in TLSRESUME_CONFIGS:
            if core_error:
                result[name] = Availability(False, core_error)
            elif name == "session-cache" and not _serve_has_session_cache():
                result[name] = Availability(
                    False, "this tlsresume serve has no --session-cache/--no-tickets"
                )
            else:
                result[name] = Availability(True)
        elif name == "openssl-s_server":
            exe = shutil.which("openssl")
            version = _tool_version([exe, "version"]) if exe else None
            if exe is None:
                result[name] = Availability(False, "openssl is not on PATH")
            elif version is None:
                result[name] = Availability(False, f"{exe} version failed")
            else:
                result[name] = Availability(True, version=version)
        elif name == "node-cluster":
            exe = shutil.which("node")
            version = _tool_version([exe, "--version"]) if exe else None
            if exe is None:
                result[name] = Availability(False, "node is not on PATH")
            elif not node_script().is_file():
                result[name] = Availability(False, f"{node_script()} is missing")
            elif version is None:
                result[name] = Availability(False, f"{exe} --version failed")
            else:
                result[name] = Availability(True, version=version)
        else:
            raise ValueError(f"unknown configuration {name!r}")
    return result


def _serve_has_session_cache() -> bool:
    import dataclasses

    from tlsresume.serve import ServerConfig

    names = {f.name for f in dataclasses.fields(ServerConfig)}
    return {"session_cache", "tickets"} <= names


# --------------------------------------------------------------------------------------
# Child processes
# --------------------------------------------------------------------------------------


def _child_env(token: str) -> dict[str, str]:
    from tlsresume.serve import child_env

    env = child_env()
    env[ENV_MARKER] = token
    return env


def _preexec() -> Callable[[], None]:
    """What children run between fork and exec: a benchmark killed with SIGKILL
    still takes its servers and clients with it (imported here, in the parent)."""
    from tlsresume.serve import die_with_parent

    return die_with_parent


def _tail(path: Path, limit: int = 1500) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-limit:].decode("utf-8", "replace").strip()


class _Server:
    """One server under test: a process group we started, its port, its CPU time."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        ready: Callable[[str], int | None],
        workers: int,
        *,
        env: dict[str, str],
        cwd: str | None,
        logdir: Path,
        term_root_only: bool,
    ) -> None:
        self.name = name
        self.argv = argv
        self.ready = ready
        self.workers = workers
        self.port = 0
        self.listening_line = ""
        self.log = logdir / f"{name}.log"
        # serve's master stops its own workers and removes its shared-memory names
        # on SIGTERM; the others get SIGTERM on the whole group.
        self.term_root_only = term_root_only
        with open(self.log, "wb") as out:
            # Output goes to a file, not a pipe: nobody has to keep draining it.
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,  # its own group: Ctrl-C reaches only us
                preexec_fn=_preexec(),
            )
        self.pgid = self.proc.pid

    def wait_ready(self, timeout: float) -> None:
        """Wait for the server's ready line.

        Raises:
            BenchError: it exited or printed no ready line in time (with its output).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = _tail(self.log, 1 << 16)
            for line in text.splitlines():
                port = self.ready(line)
                if port:
                    self.port = port
                    self.listening_line = line
                    return
            if self.proc.poll() is not None:
                raise BenchError(
                    f"{self.name} exited (code {self.proc.returncode}) before it listened: "
                    f"{_tail(self.log) or '(no output)'}"
                )
            time.sleep(0.05)
        raise BenchError(
            f"{self.name} printed no ready line in {timeout:.0f} s: "
            f"{_tail(self.log) or '(no output)'}"
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.proc.pid)

    def signal_stop(self) -> None:
        """Ask the server to stop (SIGTERM); see :meth:`finish_stop`."""
        try:
            if self.term_root_only:
                if self.proc.poll() is None:
                    self.proc.send_signal(signal.SIGTERM)
            else:
                os.killpg(self.pgid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass

    def finish_stop(self, deadline: float) -> None:
        """Wait for the server until ``deadline`` (monotonic), then SIGKILL its group;
        remove any shared-memory region a killed ``tlsresume serve`` left."""
        try:
            self.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        # Whatever is left in the group (workers of a killed master, ...) goes now.
        # The group id cannot be reused while any member is alive.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self._remove_regions()

    def _remove_regions(self) -> None:
        from tlsresume.serve import parse_listening_line

        parsed = parse_listening_line(self.listening_line)
        if parsed is None:
            return
        from tlsresume.stats import region_path

        for kind in ("ring", "store"):
            name = parsed.fields.get(kind, "none")
            if name != "none":
                with contextlib.suppress(OSError, ValueError):
                    os.unlink(region_path(kind, name))


def _serve_ready(line: str) -> int | None:
    from tlsresume.serve import parse_listening_line

    parsed = parse_listening_line(line)
    return parsed.port if parsed is not None else None


_S_SERVER_READY = re.compile(r"^ACCEPT \[?[^\]]*\]?:(\d+)\s*$")
_NODE_READY = re.compile(r"^node-cluster: listening on https://\S+:(\d+)/")


def _regex_ready(pattern: re.Pattern[str]) -> Callable[[str], int | None]:
    def ready(line: str) -> int | None:
        m = pattern.match(line)
        return int(m.group(1)) if m else None

    return ready


def _start_server(
    name: str, config: BenchConfig, cert: Path, key: Path, workdir: Path, token: str
) -> _Server:
    env = _child_env(token)
    if name in ("baseline", *TLSRESUME_CONFIGS):
        argv = [
            sys.executable,
            "-m",
            "tlsresume",
            "serve",
            "--host",
            HOST,
            "--port",
            "0",
            "--workers",
            str(config.workers),
            "--cert",
            str(cert),
            "--key",
            str(key),
        ]
        if name == "baseline":
            argv.append("--no-share")
        elif name == "session-cache":
            argv += ["--session-cache", SESSION_CACHE_SIZE, "--no-tickets"]
        return _Server(
            name,
            argv,
            _serve_ready,
            config.workers,
            cwd=None,
            term_root_only=True,
            env=env,
            logdir=workdir,
        )
    if name == "openssl-s_server":
        docroot = workdir / "docroot"
        docroot.mkdir(exist_ok=True)
        (docroot / "worker").write_text("worker s_server\n")
        exe = shutil.which("openssl") or "openssl"
        argv = [
            exe,
            "s_server",
            "-accept",
            f"{HOST}:0",
            "-cert",
            str(cert),
            "-key",
            str(key),
            "-WWW",
        ]
        return _Server(
            name,
            argv,
            _regex_ready(_S_SERVER_READY),
            1,
            cwd=str(docroot),
            term_root_only=False,
            env=env,
            logdir=workdir,
        )
    if name == "node-cluster":
        exe = shutil.which("node") or "node"
        argv = [
            exe,
            str(node_script()),
            "--cert",
            str(cert),
            "--key",
            str(key),
            "--workers",
            str(config.workers),
            "--host",
            HOST,
            "--port",
            "0",
        ]
        return _Server(
            name,
            argv,
            _regex_ready(_NODE_READY),
            config.workers,
            cwd=None,
            term_root_only=False,
            env=env,
            logdir=workdir,
        )
    raise ValueError(f"unknown configuration {name!r}")


def _stop_servers(servers: Sequence[_Server], grace: float = 10.0) -> None:
    for server in servers:
        server.signal_stop()
    deadline = time.monotonic() + grace
    for server in servers:
        server.finish_stop(deadline)


def _check_answers(server: _Server, cafile: Path, timeout: float) -> None:
    """One verifying request (Python's ssl, the certificate as the only trust
    anchor): the server is up, uses our certificate, and answers 200.

    Raises:
        BenchError: it does not.
    """
    ctx = ssl.create_default_context(cafile=str(cafile))
    try:
        with socket.create_connection((HOST, server.port), timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname=SERVER_NAME) as tls:
                tls.sendall(REQUEST)
                data = b""
                while len(data) < 65536:
                    chunk = tls.recv(4096)
                    if not chunk:
                        break
                    data += chunk
    except (OSError, ssl.SSLError) as exc:
        raise BenchError(f"{server.name} did not answer a verifying client: {exc}") from None
    status = data.split(b"\r\n", 1)[0]
    if not re.match(rb"HTTP/1\.[01] 200", status):
        raise BenchError(f"{server.name} answered {status[:60]!r} instead of a 200")


# --------------------------------------------------------------------------------------
# Load generator processes
# --------------------------------------------------------------------------------------

_CLIENT_CODE = (
    "import sys\nfrom tlsresume.benchmark import _client_main\nsys.exit(_client_main())\n"
)


class _LoadClient:
    """One load generator process, driven with JSON lines on its stdin/stdout."""

    def __init__(self, index: int, env: dict[str, str], logdir: Path) -> None:
        self.index = index
        self.log = logdir / f"client-{index}.log"
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _CLIENT_CODE],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                env=env,
                start_new_session=True,
                preexec_fn=_preexec(),
            )
        self._buf = b""

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(message).encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise BenchError(self._died()) from None

    def receive(self, timeout: float) -> dict[str, Any]:
        """The next reply; raises BenchError if the process dies, reports an
        error, or says nothing for ``timeout`` seconds."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"load generator {self.index} did not answer in {timeout:.0f} s")
            readable, _, _ = select.select([fd], [], [], min(left, 0.5))
            if readable:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise BenchError(self._died())
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        reply: dict[str, Any] = json.loads(line)
        if reply.get("op") == "error":
            raise BenchError(f"load generator {self.index}: {reply.get('message')}")
        return reply

    def _died(self) -> str:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=2)
        return (
            f"load generator {self.index} exited (code {self.proc.returncode}): "
            f"{_tail(self.log) or '(no output)'}"
        )

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


_RESULT_FIELDS = (
    "connections",
    "completed",
    "offered",
    "resumed",
    "failed_connect",
    "failed_handshake",
    "failed_io",
    "bad_response",
    "bytes_read",
    "wall_ns",
    "handshake_ns",
    "version",
    "aborted",
)


def _client_main() -> int:
    """Body of a load generator process: JSON requests on stdin, replies on stdout.

    ``{"op": "prepare", ...}`` makes a generator for one server, protocol and mode
    and runs its warm-up connections; ``{"op": "go", "duration_ms", "max"}`` runs
    the measured loop (in C, without the GIL) and replies with the counters and
    this process's CPU time; EOF on stdin ends the process.
    """
    import resource

    # A server closing first must not kill us while we send close_notify; the
    # orchestrator, not the terminal, decides when we stop.
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out = sys.stdout
    sys.stdout = sys.stderr  # nothing else may write to the reply channel

    def reply(message: dict[str, Any]) -> None:
        out.write(json.dumps(message) + "\n")
        out.flush()

    try:
        from tlsresume._binding import ffi, lib, ssl_ctx_pointer
    except ImportError as exc:
        reply({"op": "error", "message": f"tlsresume's C core cannot load: {exc}"})
        return 1
    reply({"op": "hello", "pid": os.getpid(), "openssl": ssl.OPENSSL_VERSION})

    gen: Any = None
    ctx: ssl.SSLContext | None = None  # must outlive gen (the generator borrows it)
    result = ffi.new("tlsr_loadgen_result *")

    def counters() -> dict[str, Any]:
        d: dict[str, Any] = {name: int(getattr(result, name)) for name in _RESULT_FIELDS}
        d["first_error"] = ffi.string(result.first_error).decode("utf-8", "replace")
        return d

    for line in sys.stdin:
        msg = json.loads(line)
        op = msg.get("op")
        try:
            if op == "prepare":
                if gen is not None:
                    lib.tlsr_loadgen_free(gen)
                    gen = None
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                # Like openssl s_time: the generator measures the server, so it does
                # not verify (the orchestrator checked the certificate once).
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                ctx.minimum_version = ctx.maximum_version = _TLS_VERSIONS[msg["protocol"]]
                request = msg["request"].encode("latin-1")
                gen = lib.tlsr_loadgen_new(
                    ssl_ctx_pointer(ctx),
                    msg["ip"].encode(),
                    int(msg["port"]),
                    msg["sni"].encode(),
                    request,
                    len(request),
                    int(msg["sessions"]),
                    int(bool(msg["resume"])),
                    int(msg["io_timeout_ms"]),
                    int(msg["seed"]),
                )
                if gen == ffi.NULL:
                    gen = None
                    reply({"op": "error", "message": f"tlsr_loadgen_new refused {msg!r}"})
                    continue
                lib.tlsr_loadgen_warm(gen, result)
                reply(
                    {
                        "op": "ready",
                        "warm": counters(),
                        "held": int(lib.tlsr_loadgen_sessions_held(gen)),
                    }
                )
            elif op == "go":
                if gen is None:
                    reply({"op": "error", "message": "go before prepare"})
                    continue
                before = resource.getrusage(resource.RUSAGE_SELF)
                lib.tlsr_loadgen_run(gen, int(msg.get("max", 0)), int(msg["duration_ms"]), result)
                after = resource.getrusage(resource.RUSAGE_SELF)
                cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
                reply({"op": "done", "result": counters(), "cpu": cpu})
            else:
                reply({"op": "error", "message": f"unknown request {op!r}"})
        except (KeyError, ValueError, TypeError) as exc:
            reply({"op": "error", "message": f"bad request {msg!r}: {exc}"})
    if gen is not None:
        lib.tlsr_loadgen_free(gen)
    return 0


# --------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------


@dataclass
class Sample:
    """One measured window of one cell (all client processes together)."""

    completed: int
    resumed: int
    failed: int
    seconds: float
    rate: float  # connections per second, summed over client processes
    server_cpu: float  # seconds
    client_cpu: float  # seconds
    errors: list[str] = field(default_factory=list)

    @property
    def resumed_pct(self) -> float:
        return 100.0 * self.resumed / self.completed if self.completed else 0.0

    @property
    def server_us(self) -> float | None:
        return 1e6 * self.server_cpu / self.completed if self.completed else None

    @property
    def client_us(self) -> float | None:
        return 1e6 * self.client_cpu / self.completed if self.completed else None


def summarize(samples: Sequence[Sample]) -> dict[str, Any]:
    """One cell's figures over its rounds: the median rate and CPU per connection,
    the resumption rate over all connections of all rounds.

    Pure: testable without sockets.
    """
    completed = sum(s.completed for s in samples)
    resumed = sum(s.resumed for s in samples)
    server_us = [s.server_us for s in samples if s.server_us is not None]
    client_us = [s.client_us for s in samples if s.client_us is not None]
    errors = sorted({e for s in samples for e in s.errors})
    return {
        "conn_per_s": round(statistics.median(s.rate for s in samples), 1) if samples else 0.0,
        "resumed_pct": round(100.0 * resumed / completed, 2) if completed else 0.0,
        "server_cpu_us_per_conn": round(statistics.median(server_us), 1) if server_us else None,
        "client_cpu_us_per_conn": round(statistics.median(client_us), 1) if client_us else None,
        "completed": completed,
        "resumed": resumed,
        "failed": sum(s.failed for s in samples),
        "seconds": round(sum(s.seconds for s in samples), 3),
        "rounds": [
            {
                "conn_per_s": round(s.rate, 1),
                "resumed_pct": round(s.resumed_pct, 2),
                "server_cpu_us_per_conn": None if s.server_us is None else round(s.server_us, 1),
            }
            for s in samples
        ],
        "errors": errors[:5],
    }


def add_ratios(results: list[dict[str, Any]], baseline: str = "baseline") -> None:
    """Set ``ratio`` (connections/s over the baseline's) and ``server_cpu_ratio``
    (server CPU per connection over the baseline's) on every result of the same
    protocol and mode as a baseline result; ``None`` where there is none."""
    base = {(r["protocol"], r["mode"]): r for r in results if r["config"] == baseline}
    for r in results:
        b = base.get((r["protocol"], r["mode"]))
        r["ratio"] = round(r["conn_per_s"] / b["conn_per_s"], 3) if b and b["conn_per_s"] else None
        cpu, bcpu = r.get("server_cpu_us_per_conn"), b.get("server_cpu_us_per_conn") if b else None
        r["server_cpu_ratio"] = round(cpu / bcpu, 3) if cpu and bcpu else None


def _measure(
    server: _Server,
    clients: Sequence[_LoadClient],
    protocol: str,
    mode: str,
    config: BenchConfig,
    round_index: int,
) -> Sample:
    """One window: prepare (warm-up) every client, then run them together."""
    io_ms = int(config.io_timeout * 1000)
    for c in clients:
        seed = zlib.crc32(f"{server.name}/{protocol}/{mode}/{round_index}/{c.index}".encode())
        c.send(
            {
                "op": "prepare",
                "ip": HOST,
                "port": server.port,
                "sni": SERVER_NAME,
                "protocol": protocol,
                "resume": mode == "resumed",
                "sessions": config.sessions,
                "request": REQUEST.decode("latin-1"),
                "io_timeout_ms": io_ms,
                "seed": seed + 1,
            }
        )
    # Warm-up: sessions x (one full handshake + up to 4 I/O timeouts each, worst case).
    warm_timeout = 30.0 + config.sessions * 0.5
    errors = []
    for c in clients:
        warm = c.receive(warm_timeout)["warm"]
        if warm["completed"] < warm["connections"] and warm["first_error"]:
            errors.append(f"warm-up: {warm['first_error']}")
    cpu0 = server.cpu_seconds()
    for c in clients:
        c.send({"op": "go", "duration_ms": int(config.duration * 1000), "max": 0})
    replies = [c.receive(config.duration + 4 * config.io_timeout + 30) for c in clients]
    cpu1 = server.cpu_seconds()
    completed = resumed = failed = 0
    rate = seconds = client_cpu = 0.0
    for reply in replies:
        r = reply["result"]
        wall = r["wall_ns"] / 1e9
        completed += r["completed"]
        resumed += r["resumed"]
        failed += r["connections"] - r["completed"]
        rate += r["completed"] / wall if wall > 0 else 0.0
        seconds = max(seconds, wall)
        client_cpu += reply["cpu"]
        if r["first_error"]:
            errors.append(r["first_error"])
        if r["aborted"]:
            errors.append(f"stopped after {r['connections']} connections: too many failures")
    return Sample(completed, resumed, failed, seconds, rate, cpu1 - cpu0, client_cpu, errors)


class _Progress:
    """Progress on a stream: one line rewritten in place on a terminal, one line
    per finished cell otherwise."""

    def __init__(self, stream: TextIO | None, total: int) -> None:
        self.stream = stream
        self.total = total
        self.done = 0
        self.tty = bool(stream is not None and stream.isatty())

    def note(self, text: str) -> None:
        if self.stream is None:
            return
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(f"{PROG}: {text}\n")
        self.stream.flush()

    def start(self, label: str) -> None:
        if self.stream is not None and self.tty:
            self.stream.write(f"\r\033[K[{self.done + 1}/{self.total}] {label} ...")
            self.stream.flush()

    def finish(self, label: str, sample: Sample | None, error: str | None = None) -> None:
        self.done += 1
        if self.stream is None:
            return
        if sample is not None:
            text = (
                f"{_num(sample.rate)} conn/s, {sample.resumed_pct:.1f}% resumed, "
                f"server {_num(sample.server_us)} us/conn"
                + (f", {sample.failed} failed" if sample.failed else "")
            )
        else:
            text = f"failed: {error}"
        line = f"[{self.done}/{self.total}] {label}: {text}"
        if self.tty:
            self.stream.write(f"\r\033[K{line}" + ("\n" if self.done == self.total else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.stream is not None and self.tty and self.done != self.total:
            self.stream.write("\n")
            self.stream.flush()


def _machine() -> dict[str, Any]:
    import platform

    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "openssl": ssl.OPENSSL_VERSION,
    }
    with contextlib.suppress(OSError):
        info["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    return info


def _package_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tlsresume")
    except PackageNotFoundError:
        return None


def run(config: BenchConfig) -> dict[str, Any]:
    """Run the benchmark and return the report.

    Starts every available configuration's server (same throwaway certificate),
    then the load generator processes, then measures every cell ``rounds`` times,
    interleaving configurations; stops everything on the way out, whatever
    happened (KeyboardInterrupt included).

    Args:
        config: what to measure.

    Returns:
        A JSON-ready dict: ``settings``, ``machine``, ``configurations`` (per name:
        ``available``, ``status`` = ``"ok"``, ``"unavailable"`` or ``"failed"``,
        ``reason``, ``command``, ``workers``, ``pid``, ``version``) and ``results``, one
        entry per configuration x protocol x mode that ran, with ``conn_per_s``,
        ``resumed_pct``, ``server_cpu_us_per_conn``, ``client_cpu_us_per_conn``,
        ``ratio`` and ``server_cpu_ratio`` against the baseline, counts, errors and
        the per-round figures.

    Raises:
        ValueError: ``config`` is invalid.
        BenchError: the load generator cannot run (no C core, ...).
    """
    config.validate()
    try:
        import tlsresume._binding  # noqa: F401  (the load generator is in the core)
    except ImportError as exc:
        raise BenchError(
            f"the load generator is part of tlsresume's C core, which cannot load: {exc}"
        ) from None
    from tlsresume.selfsigned import make_self_signed

    names = [n for n in CONFIGS if n in config.configs]
    avail = availability(names)
    report: dict[str, Any] = {
        "tool": PROG,
        "version": _package_version(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings": {
            "workers": config.workers,
            "duration": config.duration,
            "rounds": config.rounds,
            "clients": config.clients,
            "sessions": config.sessions,
            "protocols": list(config.protocols),
            "modes": list(config.modes),
            "quick": config.quick,
            "request": REQUEST.decode("latin-1"),
        },
        "machine": _machine(),
        "configurations": {},
        "results": [],
    }
    confs: dict[str, dict[str, Any]] = report["configurations"]
    for name in names:
        a = avail[name]
        confs[name] = {
            "description": CONFIGS[name],
            "available": a.available,
            "status": "ok" if a.available else "unavailable",
            "reason": a.reason,
            "version": a.version,
        }
    runnable = [n for n in names if avail[n].available]
    progress = _Progress(
        config.progress,
        len(runnable) * len(config.protocols) * len(config.modes) * config.rounds,
    )
    for name in names:
        if not avail[name].available:
            progress.note(f"{name}: unavailable ({avail[name].reason})")

    token = f"{os.getpid()}-{time.monotonic_ns()}"
    workdir = Path(tempfile.mkdtemp(prefix="tlsresume-bench-"))
    servers: dict[str, _Server] = {}
    clients: list[_LoadClient] = []
    samples: dict[tuple[str, str, str], list[Sample]] = {}
    try:
        (workdir / "cert").mkdir(mode=0o700)
        cert = make_self_signed(directory=workdir / "cert")
        for name in runnable:
            try:
                servers[name] = _start_server(name, config, cert.cert, cert.key, workdir, token)
            except OSError as exc:
                confs[name].update(status="failed", reason=f"could not start: {exc}")
        env = _child_env(token)
        clients = [_LoadClient(i, env, workdir) for i in range(config.clients)]
        for name, server in list(servers.items()):
            confs[name].update(command=server.argv, workers=server.workers, pid=server.proc.pid)
            try:
                server.wait_ready(config.start_timeout)
                _check_answers(server, cert.cert, config.io_timeout + 5)
            except BenchError as exc:
                confs[name].update(status="failed", reason=str(exc))
                _stop_servers([servers.pop(name)])
        for c in clients:
            c.receive(60.0)  # hello: the core loaded
        cells = [(p, m) for p in config.protocols for m in config.modes]
        est = len(servers) * len(cells) * config.rounds * (config.duration + 0.3)
        progress.note(
            f"{len(servers)} servers x {len(cells)} cells x {config.rounds} round(s) x "
            f"{config.duration:g} s, {config.clients} client process(es) x "
            f"{config.sessions} sessions: about {_duration_text(est)}"
        )
        for round_index in range(config.rounds):
            for protocol, mode in cells:
                for name in list(servers):
                    server = servers[name]
                    label = f"round {round_index + 1}/{config.rounds} TLS {protocol} {mode} {name}"
                    progress.start(label)
                    if not server.alive():
                        reason = f"exited (code {server.proc.returncode}): {_tail(server.log)}"
                        confs[name].update(status="failed", reason=reason)
                        progress.finish(label, None, reason)
                        servers.pop(name).finish_stop(time.monotonic())
                        continue
                    sample = _measure(server, clients, protocol, mode, config, round_index)
                    samples.setdefault((name, protocol, mode), []).append(sample)
                    progress.finish(label, sample)
    finally:
        progress.close()
        for c in clients:
            c.kill()
        _stop_servers(list(servers.values()))
        shutil.rmtree(workdir, ignore_errors=True)  # the certificate and key too

    results = report["results"]
    for name in names:
        for protocol in config.protocols:
            for mode in config.modes:
                got = samples.get((name, protocol, mode))
                if got:
                    results.append(
                        {"config": name, "protocol": protocol, "mode": mode, **summarize(got)}
                    )
    add_ratios(results)
    return report


# --------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _duration_text(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _header_lines(report: dict[str, Any]) -> list[str]:
    s, m = report["settings"], report["machine"]
    lines = [
        f"{PROG}: {s['workers']} workers, {s['clients']} client process(es) x "
        f"{s['sessions']} sessions, {s['rounds']} round(s) x {s['duration']:g} s per cell"
        + (" (--quick)" if s.get("quick") else ""),
        f"Python {m['python']}, {m['openssl']}, {m['cpus']} CPUs",
    ]
    for name, c in report["configurations"].items():
        if c["status"] != "ok":
            lines.append(f"{name}: {c['status']}: {c['reason']}")
        elif c.get("version"):
            lines.append(f"{name}: {c['version']}")
    return lines


def render_table(report: dict[str, Any]) -> str:
    """The report as text tables, one per protocol and mode."""
    lines = _header_lines(report)
    head = (
        f"  {'configuration':<18} {'conn/s':>9} {'vs base':>8} {'resumed':>8} "
        f"{'server CPU/conn':>16} {'vs base':>8} {'failed':>7}"
    )
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in report["results"]:
        groups.setdefault((r["protocol"], r["mode"]), []).append(r)
    for (protocol, mode), rows in groups.items():
        lines += ["", f"TLS {protocol}, {mode} handshakes", head]
        for r in rows:
            cpu = r["server_cpu_us_per_conn"]
            lines.append(
                f"  {r['config']:<18} {_num(r['conn_per_s']):>9} {_ratio(r['ratio']):>8} "
                f"{r['resumed_pct']:>7.1f}% {_num(cpu) + ' us':>16} "
                f"{_ratio(r['server_cpu_ratio']):>8} {r['failed']:>7}"
            )
            for e in r.get("errors", []):
                lines.append(f"      {e}")
    return "\n".join(lines) + "\n"


def render_markdown(report: dict[str, Any]) -> str:
    """The report as one Markdown table (for bench/RESULTS.md)."""
    lines = [
        "| TLS | handshake | configuration | conn/s | x baseline | resumed | "
        "server CPU µs/conn | CPU x baseline |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    # Cell by cell (stable: configurations keep their order within a cell).
    rows = sorted(report["results"], key=lambda r: (r["protocol"], MODES.index(r["mode"])))
    for r in rows:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        cpu_ratio = "-" if r["server_cpu_ratio"] is None else f"{r['server_cpu_ratio']:.2f}"
        lines.append(
            f"| {r['protocol']} | {r['mode']} | {r['config']} | {_num(r['conn_per_s'])} | "
            f"{ratio} | {r['resumed_pct']:.1f}% | {_num(r['server_cpu_us_per_conn'])} | "
            f"{cpu_ratio} |"
        )
    return "\n".join(lines) + "\n"


def _load_pyplot() -> Any:
    import importlib

    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError:
        raise BenchError(
            "--plot needs matplotlib, which is not installed: "
            "pip install 'tlsresume[plot]' (or pip install matplotlib)"
        ) from None
    matplotlib.use("Agg")  # files only, no display needed
    return importlib.import_module("matplotlib.pyplot")


def plot(report: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Draw the report as a PNG: connections per second (annotated with the
    resumption rate) and server CPU per connection, per cell and configuration.

    Raises:
        BenchError: matplotlib is not installed.
    """
    plt = _load_pyplot()
    results = report["results"]
    cells = list(dict.fromkeys((r["protocol"], r["mode"]) for r in results))
    configs = list(dict.fromkeys(r["config"] for r in results))
    by_key = {(r["config"], r["protocol"], r["mode"]): r for r in results}
    fig, (ax_rate, ax_cpu) = plt.subplots(2, 1, figsize=(10, 8), sharex=True)
    width = 0.8 / max(1, len(configs))
    for i, name in enumerate(configs):
        xs = [j + (i - (len(configs) - 1) / 2) * width for j in range(len(cells))]
        rows = [by_key.get((name, p, m)) for p, m in cells]
        rates = [r["conn_per_s"] if r else 0 for r in rows]
        cpus = [(r["server_cpu_us_per_conn"] or 0) if r else 0 for r in rows]
        bars = ax_rate.bar(xs, rates, width, label=name)
        for bar, r in zip(bars, rows, strict=True):
            if r and r["mode"] == "resumed":
                ax_rate.annotate(
                    f"{r['resumed_pct']:.0f}%",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
        ax_cpu.bar(xs, cpus, width, label=name)
    s = report["settings"]
    ax_rate.set_ylabel("connections / s")
    ax_rate.set_title(
        f"tlsresume bench: {s['workers']} workers, {s['clients']} client processes "
        f"(labels: % resumed)"
    )
    ax_rate.legend(fontsize=8)
    ax_cpu.set_ylabel("server CPU µs / connection")
    ax_cpu.set_xticks(range(len(cells)))
    ax_cpu.set_xticklabels([f"TLS {p} {m}" for p, m in cells])
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def _csv(choices: Sequence[str], option: str) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        items = tuple(dict.fromkeys(x.strip() for x in text.split(",") if x.strip()))
        bad = [x for x in items if x not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(
                f"{option}: unknown {', '.join(bad) or 'empty list'}; choose from "
                f"{', '.join(choices)} (comma-separated)"
            )
        return items

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Measure TLS handshakes per second on loopback, side by side: plain CPython "
            "pre-fork workers (baseline), tlsresume's shared tickets and session cache, "
            "and as references openssl s_server and a Node.js cluster when installed. "
            "For each: TLS 1.2 and 1.3, full and resumed handshakes, from a C load "
            "generator in separate processes. Reports connections/s, resumption %%, "
            "server CPU time per connection, and ratios against the baseline of the "
            "same run."
        ),
    )
    p.add_argument(
        "--configs",
        type=_csv(tuple(CONFIGS), "--configs"),
        default=tuple(CONFIGS),
        metavar="LIST",
        help=f"configurations to run, comma-separated (default all: {','.join(CONFIGS)})",
    )
    p.add_argument("--workers", type=int, default=2, metavar="N", help="server workers (2)")
    p.add_argument(
        "--duration",
        type=float,
        metavar="S",
        help=f"seconds per cell and round ({_FULL_DURATION:g}; --quick {_QUICK_DURATION:g})",
    )
    p.add_argument(
        "--rounds",
        type=int,
        metavar="R",
        help=f"rounds, the median is reported ({_FULL_ROUNDS}; --quick {_QUICK_ROUNDS})",
    )
    p.add_argument("--quick", action="store_true", help="short run, under a minute on 2 cores")
    p.add_argument(
        "--clients", type=int, default=2, metavar="N", help="load generator processes (2)"
    )
    p.add_argument(
        "--sessions",
        type=int,
        default=16,
        metavar="N",
        help="virtual clients per load generator process, each with its own session (16)",
    )
    p.add_argument(
        "--tls",
        type=_csv(PROTOCOLS, "--tls"),
        default=PROTOCOLS,
        metavar="LIST",
        help="TLS versions (1.2,1.3)",
    )
    p.add_argument(
        "--modes",
        type=_csv(MODES, "--modes"),
        default=MODES,
        metavar="LIST",
        help="handshake kinds (full,resumed)",
    )
    p.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="PATH",
        help="write the report as JSON to PATH, or to standard output without PATH "
        "(the table then goes to standard error)",
    )
    p.add_argument(
        "--plot", metavar="PNG", help="draw a chart to PNG (needs matplotlib: tlsresume[plot])"
    )
    p.add_argument(
        "--markdown", action="store_true", help="print the table as Markdown (for RESULTS.md)"
    )
    p.add_argument(
        "--list", action="store_true", help="list the configurations and whether they can run"
    )
    p.add_argument(
        "--from",
        dest="from_json",
        metavar="JSON",
        help="do not measure: render a report written earlier by --json (table, --plot)",
    )
    p.add_argument("-q", "--no-progress", action="store_true", help="no progress on stderr")
    return p


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt, so that ``kill`` cleans up like Ctrl-C."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _write_text(path: str, text: str) -> None:
    if path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        Path(path).write_text(text, encoding="utf-8")


def _load_report(path: str) -> dict[str, Any]:
    """A report written by ``--json``.

    Raises:
        BenchError: the file cannot be read or is not such a report.
    """
    try:
        with open(path, encoding="utf-8") as f:
            report = json.load(f)
    except (OSError, ValueError) as exc:
        raise BenchError(f"--from {path}: {exc}") from None
    if not isinstance(report, dict) or report.get("tool") != PROG or "results" not in report:
        raise BenchError(f"--from {path}: not a report written by {PROG} --json")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``tlsresume bench``.

    Args:
        argv: arguments without the program name (default ``sys.argv[1:]``).

    Returns:
        0 when every available configuration ran, 1 when one failed to start or
        a cell completed no connection (the report is still written), 2 on bad
        usage, 130 when interrupted (Ctrl-C or SIGTERM; everything started is
        stopped first).
    """
    args = build_parser().parse_args(argv)
    if args.list:
        for name, a in availability().items():
            state = "available" if a.available else f"unavailable: {a.reason}"
            extra = f" ({a.version})" if a.version else ""
            print(f"{name:<18} {state}{extra}\n{'':<18} {CONFIGS[name]}")
        return EXIT_OK
    config = BenchConfig(
        configs=args.configs,
        workers=args.workers,
        duration=args.duration or (_QUICK_DURATION if args.quick else _FULL_DURATION),
        rounds=args.rounds or (_QUICK_ROUNDS if args.quick else _FULL_ROUNDS),
        clients=args.clients,
        sessions=args.sessions,
        protocols=args.tls,
        modes=args.modes,
        quick=args.quick,
        progress=None if args.no_progress else sys.stderr,
    )
    try:
        config.validate()
        if args.plot:
            _load_pyplot()  # fail before a long run, not after it
        if args.from_json:
            report = _load_report(args.from_json)
    except (ValueError, BenchError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not args.from_json:
        try:
            with _sigterm_as_interrupt():
                report = run(config)
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted; every server and client was stopped", file=sys.stderr)
            return EXIT_INTERRUPTED
        except BenchError as exc:
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return EXIT_FAIL

    table_out: IO[str] = sys.stderr if args.json == "-" else sys.stdout
    table = render_markdown(report) if args.markdown else render_table(report)
    print(table, file=table_out, end="", flush=True)
    if args.json:
        _write_text(args.json, json.dumps(report, indent=2) + "\n")
    if args.plot:
        plot(report, args.plot)
        print(f"{PROG}: chart written to {args.plot}", file=sys.stderr)
    failed = [n for n, c in report["configurations"].items() if c["status"] == "failed"]
    empty = [r for r in report["results"] if r["completed"] == 0]
    if failed or empty:
        for n in failed:
            print(f"{PROG}: {n} failed: {report['configurations'][n]['reason']}", file=sys.stderr)
        for r in empty:
            print(
                f"{PROG}: {r['config']} TLS {r['protocol']} {r['mode']}: no connection "
                f"completed ({'; '.join(r['errors']) or 'no error recorded'})",
                file=sys.stderr,
            )
        return EXIT_FAIL
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
