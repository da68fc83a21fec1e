"""The servers under test: which can run here (:func:`availability`), starting and
stopping them (``tlsresume serve`` through :mod:`tlsresume.tools.launch`, openssl
s_server, nginx, the Node.js cluster) and their CPU time from /proc.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..launch import child_env, die_with_parent, serve_argv, start_serve

# --------------------------------------------------------------------------------------
# CPU accounting: pure parsing, then /proc
# --------------------------------------------------------------------------------------
from .config import (
    CONFIGS,
    ENV_MARKER,
    HOST,
    NGINX_CONFIGS,
    NODE_CONFIGS,
    REQUEST,
    SERVER_NAME,
    SESSION_CACHE_SIZE,
    TLSRESUME_CONFIGS,
    BenchConfig,
    BenchError,
)


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


def nginx_executable() -> str | None:
    """``nginx`` on ``PATH``, else in the sbin directories a distribution puts it in
    (often not on an ordinary user's ``PATH``, though any user may run it)."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
    return shutil.which("nginx", path=path)


def _tool_availability(exe: str | None, missing: str, version_argv: list[str]) -> Availability:
    """A reference that needs one executable, known by its version line."""
    if exe is None:
        return Availability(False, missing)
    version = _tool_version([exe, *version_argv])
    if version is None:
        return Availability(False, f"{exe} {' '.join(version_argv)} failed")
    return Availability(True, version=version)


def _nginx_availability() -> Availability:
    exe = nginx_executable()
    found = _tool_availability(exe, "nginx is not installed (not on PATH nor in /usr/sbin)", ["-v"])
    if not found.available or exe is None:
        return found
    try:
        built = subprocess.run(
            [exe, "-V"], capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Availability(False, f"{exe} -V failed: {exc}")
    if "--with-http_ssl_module" not in built.stdout + built.stderr:
        return Availability(False, f"{exe} is built without http_ssl_module")
    return found


def availability(names: Sequence[str] = tuple(CONFIGS)) -> dict[str, Availability]:
    """Which configurations can run on this machine.

    ``tickets`` and ``session-cache`` need tlsresume's C core (so does the load
    generator, which :func:`run` checks separately); ``session-cache`` also needs
    a ``tlsresume serve`` with ``--session-cache`` and ``--no-tickets``; the
    references need ``openssl``, ``nginx`` (with its SSL module) and ``node``.
    """
    result: dict[str, Availability] = {}
    core_error: str | None = None
    if any(n in TLSRESUME_CONFIGS for n in names):
        try:
            import tlsresume._binding  # noqa: F401
        except ImportError as exc:
            core_error = f"tlsresume's C core cannot load: {exc}"
    tools: dict[str, Availability] = {}  # one look per tool, whatever the configurations
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
            result[name] = _tool_availability(exe, "openssl is not on PATH", ["version"])
        elif name in NGINX_CONFIGS:
            if "nginx" not in tools:
                tools["nginx"] = _nginx_availability()
            result[name] = tools["nginx"]
        elif name in NODE_CONFIGS:
            if "node" not in tools:
                exe = shutil.which("node")
                tools["node"] = _tool_availability(exe, "node is not on PATH", ["--version"])
                if tools["node"].available and not node_script().is_file():
                    tools["node"] = Availability(False, f"{node_script()} is missing")
            result[name] = tools["node"]
        else:
            raise ValueError(f"unknown configuration {name!r}")
    return result


def _serve_has_session_cache() -> bool:
    import dataclasses

    from tlsresume.tools.serve import ServerConfig

    names = {f.name for f in dataclasses.fields(ServerConfig)}
    return {"session_cache", "tickets"} <= names


# --------------------------------------------------------------------------------------
# Child processes
# --------------------------------------------------------------------------------------


def _child_env(token: str) -> dict[str, str]:
    env = child_env()
    env[ENV_MARKER] = token
    return env


def _preexec() -> Callable[[], None]:
    """What children run between fork and exec: a benchmark killed with SIGKILL
    still takes its servers and clients with it (imported here, in the parent)."""
    return die_with_parent


def _tail(path: Path, limit: int = 1500) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-limit:].decode("utf-8", "replace").strip()


class _Server:
    """One server under test: a process group we started, its port, its CPU time."""

    ip = HOST
    sni = SERVER_NAME
    request = REQUEST

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
        serve_args: list[str] | None = None,
        ready_log: Path | None = None,
        ready_must_contain: str | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.ready = ready
        self.workers = workers
        self.port = 0
        self.listening_line = ""
        self.log = logdir / f"{name}.log"
        # nginx says it is ready in its error log, not on its output.
        self.ready_log = ready_log or self.log
        # The ready line must confirm a setting the server could silently ignore.
        self.ready_must_contain = ready_must_contain
        # serve's master stops its own workers and removes its shared-memory names
        # on SIGTERM; the others get SIGTERM on the whole group.
        self.term_root_only = term_root_only
        with open(self.log, "wb") as out:
            # Output goes to a file, not a pipe: nobody has to keep draining it.
            # Its own group (new session): Ctrl-C reaches only us.
            if serve_args is not None:
                self.proc = start_serve(
                    serve_args,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=cwd,
                    new_session=True,
                )
            else:
                self.proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=cwd,
                    start_new_session=True,
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
            text = _tail(self.ready_log, 1 << 16)
            for line in text.splitlines():
                port = self.ready(line)
                if port:
                    if self.ready_must_contain and self.ready_must_contain not in line:
                        raise BenchError(
                            f"{self.name} started without {self.ready_must_contain}: {line}"
                        )
                    self.port = port
                    self.listening_line = line
                    return
            if self.proc.poll() is not None:
                raise BenchError(
                    f"{self.name} exited (code {self.proc.returncode}) before it listened: "
                    f"{self.output() or '(no output)'}"
                )
            time.sleep(0.05)
        raise BenchError(
            f"{self.name} printed no ready line in {timeout:.0f} s: "
            f"{self.output() or '(no output)'}"
        )

    def output(self) -> str:
        """The end of what the server wrote (its output, and its own log if apart)."""
        parts = [_tail(self.log)]
        if self.ready_log != self.log:
            parts.append(_tail(self.ready_log))
        return " / ".join(p for p in parts if p)

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
        from tlsresume.tools.serve import parse_listening_line

        parsed = parse_listening_line(self.listening_line)
        if parsed is None:
            return
        from tlsresume.regions import region_path

        for kind in ("ring", "store"):
            name = parsed.fields.get(kind, "none")
            if name != "none":
                with contextlib.suppress(OSError, ValueError):
                    os.unlink(region_path(kind, name))


def _serve_ready(line: str) -> int | None:
    from tlsresume.tools.serve import parse_listening_line

    parsed = parse_listening_line(line)
    return parsed.port if parsed is not None else None


_S_SERVER_READY = re.compile(r"^ACCEPT \[?[^\]]*\]?:(\d+)\s*$")
_NODE_READY = re.compile(r"^node-cluster: listening on https://\S+:(\d+)/")
# The master logs this (level notice) after it has bound every listening socket.
_NGINX_READY = re.compile(r"\[notice\] \d+#\d+: start worker processes\s*$")


def _regex_ready(pattern: re.Pattern[str]) -> Callable[[str], int | None]:
    def ready(line: str) -> int | None:
        m = pattern.match(line)
        return int(m.group(1)) if m else None

    return ready


def _nginx_quote(value: str | Path) -> str:
    """A value for an nginx configuration file, in double quotes (the run's temp
    directory may hold spaces)."""
    text = str(value)
    if any(c in text for c in '"\\\n$'):
        raise BenchError(f"nginx cannot be given the path {text!r}")
    return f'"{text}"'


def nginx_conf(name: str, prefix: Path, port: int, workers: int, cert: Path, key: Path) -> str:
    """The configuration file of nginx reference ``name`` (:data:`NGINX_CONFIGS`).

    Everything it writes stays under ``prefix`` (pid, lock, logs, temp paths, whose
    built-in defaults are root's directories), so any user can run it. It listens
    on the benchmark's address, with the run's certificate and TLS 1.2-1.3 like
    the other servers, and answers ``GET /worker`` with a short 200, as they do.
    """
    q = _nginx_quote
    ticket_key = q(prefix / "ticket.key")
    session = "\n".join(
        f"        {line.format(ticket_key=ticket_key)}" for line in NGINX_CONFIGS[name]
    )
    temp = "\n".join(
        f"    {kind}_temp_path {q(prefix / 'temp' / kind)};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    path = REQUEST.split(b" ", 2)[1].decode("ascii")
    return f"""# {name}: written by tlsresume bench for one run
daemon off;
master_process on;
worker_processes {workers};
pid {q(prefix / "nginx.pid")};
lock_file {q(prefix / "nginx.lock")};
error_log {q(prefix / "error.log")} notice;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
{temp}
    server {{
        listen {HOST}:{port} ssl;
        server_name {SERVER_NAME};
        ssl_certificate {q(cert)};
        ssl_certificate_key {q(key)};
        ssl_protocols TLSv1.2 TLSv1.3;
{session}
        location = {path} {{
            default_type text/plain;
            return 200 "worker nginx\n";
        }}
    }}
}}
"""


def _free_port() -> int:
    """A loopback port free a moment ago (nginx needs its port in its configuration;
    another process taking it in between makes nginx fail to start, loudly)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _start_nginx(
    name: str, workers: int, cert: Path, key: Path, workdir: Path, env: dict[str, str]
) -> _Server:
    """nginx reference ``name`` as the current user: its own prefix directory in the
    run's directory, a fresh ticket key file (80 bytes: name, HMAC and AES keys, as
    nginx reads it), master and ``workers`` workers in the foreground."""
    prefix = workdir / name
    (prefix / "temp").mkdir(parents=True)
    ticket = prefix / "ticket.key"
    fd = os.open(ticket, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(os.urandom(80))
    port = _free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(nginx_conf(name, prefix, port, workers, cert, key), encoding="utf-8")
    exe = nginx_executable() or "nginx"
    argv = [exe, "-p", str(prefix), "-c", str(conf)]

    def ready(line: str) -> int | None:
        return port if _NGINX_READY.search(line) else None

    return _Server(
        name,
        argv,
        ready,
        workers,
        cwd=str(prefix),
        term_root_only=False,
        env=env,
        logdir=workdir,
        ready_log=prefix / "error.log",
    )


def _start_server(
    name: str, config: BenchConfig, cert: Path, key: Path, workdir: Path, token: str
) -> _Server:
    env = _child_env(token)
    if name in ("baseline", *TLSRESUME_CONFIGS):
        serve_args = [
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
            serve_args.append("--no-share")
        elif name == "session-cache":
            serve_args += ["--session-cache", SESSION_CACHE_SIZE, "--no-tickets"]
        elif name == "tickets":
            serve_args.append("--no-session-cache")  # the ring alone (serve adds a store)
        return _Server(
            name,
            serve_argv(serve_args),
            _serve_ready,
            config.workers,
            cwd=None,
            term_root_only=True,
            env=env,
            logdir=workdir,
            serve_args=serve_args,
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
    if name in NGINX_CONFIGS:
        return _start_nginx(name, config.workers, cert, key, workdir, env)
    if name in NODE_CONFIGS:
        # Read by the cluster module of the primary when it loads.
        env["NODE_CLUSTER_SCHED_POLICY"] = NODE_CONFIGS[name]
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
            ready_must_contain=f" sched={NODE_CONFIGS[name]} ",
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
