"""``tlsresume bench``: handshakes per second on loopback, side by side.

One command runs the same load against several servers and reports, per
configuration, TLS version and handshake kind (full or resumed): connections per
second, how many resumed, the server's CPU time per connection, and both figures
as ratios against the plain-CPython baseline of the same run (absolute figures
drift on shared machines, ratios taken in one run do not; docs/design.md, "How we measure").

Configurations (:data:`CONFIGS`):

* ``baseline``: ``tlsresume serve --no-share``, a pre-fork Python server whose
  workers each build their own context, as every Python server does today;
* ``tickets``: ``tlsresume serve --no-session-cache``, the workers share one ticket
  key ring;
* ``session-cache``: ``tlsresume serve --session-cache 16M --no-tickets``, the
  workers share one session store (session IDs, TLS 1.3 stateful tickets);
* ``openssl-s_server``: ``openssl s_server -WWW``, one process of C whatever
  ``--workers`` says: how cheap one OpenSSL process is, not the limit of a pool;
* ``nginx-tickets``, ``nginx-cache``: nginx with the run's worker count, sharing a
  ticket key file or a shared session cache: the multi-process reference;
* ``node-cluster-rr``, ``node-cluster-none``: ``node_cluster.js``, Node's cluster
  module with N workers sharing their ticket keys, with the primary handing
  connections out (``rr``) or the workers accepting themselves (``none``).

The references run when ``openssl``, ``nginx`` and ``node`` are installed; the
others are reported "unavailable" with the reason. All servers use one throwaway
certificate and run for the whole benchmark; every server first gets
``warmup`` seconds of unmeasured load per cell (V8 compiles Node's hot paths only
after thousands of connections), then the measured cells are interleaved, so a
change in the machine's load hits every configuration alike. The report checks
the warm-up: :func:`warmup_check` flags a configuration whose first round is
slower than its third.

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
tlsresume.tools.bench``).

One module (about 600 lines) because measuring, the rounds and the report head
are one run; the servers, load generator and report live in their own modules.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import statistics
import tempfile
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

__all__ = ["run", "Sample", "summarize", "add_ratios", "warmup_check"]
from .config import (
    CONFIGS,
    PROG,
    REQUEST,
    SERVER_NAME,
    WARMUP_TOLERANCE,
    BenchConfig,
    BenchError,
    label,
)
from .loadgen import _LoadClient
from .report import _duration_text, _num
from .servers import (
    _check_answers,
    _child_env,
    _Server,
    _start_server,
    _stop_servers,
    _tail,
    availability,
    tree_cpu_seconds,
)

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
    server_cpu: float | None  # seconds; None: the server's process is not known
    client_cpu: float  # seconds
    errors: list[str] = field(default_factory=list)

    @property
    def resumed_pct(self) -> float:
        return 100.0 * self.resumed / self.completed if self.completed else 0.0

    @property
    def server_us(self) -> float | None:
        if self.server_cpu is None or not self.completed:
            return None
        return 1e6 * self.server_cpu / self.completed

    @property
    def client_us(self) -> float | None:
        return 1e6 * self.client_cpu / self.completed if self.completed else None


def _spread(values: Sequence[float], digits: int = 1) -> list[float] | None:
    """``[min, max]`` over the rounds: how far one round's figure may be off."""
    return [round(min(values), digits), round(max(values), digits)] if values else None


def summarize(samples: Sequence[Sample]) -> dict[str, Any]:
    """One cell's figures over its rounds: the median rate and CPU per connection,
    the resumption rate over all connections of all rounds, and each figure's
    ``[min, max]`` over the rounds (``*_range``), which says how much one round
    can be trusted: rates swing more between rounds than CPU per connection.

    Pure: testable without sockets.
    """
    completed = sum(s.completed for s in samples)
    resumed = sum(s.resumed for s in samples)
    server_us = [s.server_us for s in samples if s.server_us is not None]
    client_us = [s.client_us for s in samples if s.client_us is not None]
    errors = sorted({e for s in samples for e in s.errors})
    return {
        "conn_per_s": round(statistics.median(s.rate for s in samples), 1) if samples else 0.0,
        "conn_per_s_range": _spread([s.rate for s in samples]),
        "resumed_pct": round(100.0 * resumed / completed, 2) if completed else 0.0,
        "resumed_pct_range": _spread([s.resumed_pct for s in samples if s.completed], 2),
        "server_cpu_us_per_conn": round(statistics.median(server_us), 1) if server_us else None,
        "server_cpu_us_per_conn_range": _spread(server_us),
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


def warmup_check(
    results: list[dict[str, Any]], tolerance: float = WARMUP_TOLERANCE
) -> dict[str, Any]:
    """Flag cells whose first round ran colder than their third.

    For every result with at least three rounds, ``first_vs_third`` is the first
    round's figure over the third's: below 1 for connections/s, or above 1 for
    server CPU per connection, means the first round was slower. Rounds are
    interleaved, so a change of the machine's load between round 1 and round 3
    moves every configuration of a cell alike; that drift (the median
    ``first_vs_third`` of all configurations in the cell) is divided out. A cell
    is *cold* when what is left is worse than ``tolerance`` (10 %): connections/s
    lower, or CPU per connection higher, by more than that. Sets ``warmup`` on
    every checked result.

    Pure: testable without sockets.

    Returns:
        ``{"rule", "tolerance", "checked", "cold": [{"config", "protocol", "mode",
        "conn_per_s", "server_cpu"}]}`` where the last two are the drift-corrected
        first-over-third figures; ``checked`` is false with fewer than 3 rounds.
    """
    rule = (
        f"first round vs third, after dividing out the median change of all "
        f"configurations in the same cell: cold if conn/s is more than "
        f"{tolerance:.0%} lower or server CPU/conn more than {tolerance:.0%} higher"
    )

    def change(r: dict[str, Any], key: str) -> float | None:
        first, third = r["rounds"][0].get(key), r["rounds"][2].get(key)
        return first / third if first and third else None

    checked = [r for r in results if len(r.get("rounds", ())) >= 3]
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in checked:
        cells.setdefault((r["protocol"], r["mode"]), []).append(r)
    cold = []
    for rows in cells.values():
        drift: dict[str, float] = {}
        for key in ("conn_per_s", "server_cpu_us_per_conn"):
            known = [c for c in (change(r, key) for r in rows) if c is not None]
            drift[key] = statistics.median(known) if known else 1.0
        for r in rows:
            rate, cpu = change(r, "conn_per_s"), change(r, "server_cpu_us_per_conn")
            rate_fixed = None if rate is None else rate / drift["conn_per_s"]
            cpu_fixed = None if cpu is None else cpu / drift["server_cpu_us_per_conn"]
            is_cold = (rate_fixed is not None and rate_fixed < 1 - tolerance) or (
                cpu_fixed is not None and cpu_fixed > 1 + tolerance
            )
            r["warmup"] = {
                "conn_per_s_first_vs_third": None if rate is None else round(rate, 3),
                "server_cpu_first_vs_third": None if cpu is None else round(cpu, 3),
                "drift_conn_per_s": round(drift["conn_per_s"], 3),
                "drift_server_cpu": round(drift["server_cpu_us_per_conn"], 3),
                "cold": is_cold,
            }
            if is_cold:
                cold.append(
                    {
                        "config": r["config"],
                        "protocol": r["protocol"],
                        "mode": r["mode"],
                        "conn_per_s": None if rate_fixed is None else round(rate_fixed, 3),
                        "server_cpu": None if cpu_fixed is None else round(cpu_fixed, 3),
                    }
                )
    return {"rule": rule, "tolerance": tolerance, "checked": bool(checked), "cold": cold}


class _Target:
    """A server someone else runs (``--target``): its address and, when given, its
    process (CPU time of it and its descendants)."""

    name = "target"
    workers = None

    def __init__(
        self, host: str, port: int, sni: str | None, pid: int | None, path: str = "/"
    ) -> None:
        try:
            self.ip = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
        except OSError as exc:
            raise BenchError(f"--target {host}:{port}: {exc}") from None
        self.host, self.port, self.pid = host, port, pid
        self.sni = sni or (host if not _is_ip(host) else SERVER_NAME)
        self.request = (
            f"GET {path} HTTP/1.0\r\nHost: {self.sni}\r\nUser-Agent: tlsresume-bench\r\n\r\n"
        ).encode("latin-1")

    def cpu_seconds(self) -> float | None:
        return None if self.pid is None else tree_cpu_seconds(self.pid)

    def alive(self) -> bool:
        return self.pid is None or os.path.exists(f"/proc/{self.pid}")


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True


def _measure(
    server: _Server | _Target,
    clients: Sequence[_LoadClient],
    protocol: str,
    mode: str,
    config: BenchConfig,
    round_index: int,
    duration: float | None = None,
) -> Sample:
    """One window of ``duration`` seconds (default ``config.duration``): prepare
    (warm-up) every client, then run them together."""
    duration = config.duration if duration is None else duration
    io_ms = int(config.io_timeout * 1000)
    for c in clients:
        seed = zlib.crc32(f"{server.name}/{protocol}/{mode}/{round_index}/{c.index}".encode())
        c.send(
            {
                "op": "prepare",
                "ip": server.ip,
                "port": server.port,
                "sni": server.sni,
                "protocol": protocol,
                "resume": mode == "resumed",
                "sessions": config.sessions,
                "request": server.request.decode("latin-1"),
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
        c.send({"op": "go", "duration_ms": int(duration * 1000), "max": 0})
    replies = [c.receive(duration + 4 * config.io_timeout + 30) for c in clients]
    cpu1 = server.cpu_seconds()
    server_cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
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
    return Sample(completed, resumed, failed, seconds, rate, server_cpu, client_cpu, errors)


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
    if config.target is not None:
        return _run_target(config)
    from tlsresume.selfsigned import make_self_signed

    names = [n for n in CONFIGS if n in config.configs]
    avail = availability(names)
    report = _report_head(config)
    confs: dict[str, dict[str, Any]] = report["configurations"]
    for name in names:
        a = avail[name]
        confs[name] = {
            "label": label(name),
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
        est = len(servers) * len(cells) * _seconds_per_cell(config)
        progress.note(
            f"{len(servers)} servers x {len(cells)} cells x ({config.warmup:g} s warm-up + "
            f"{config.rounds} round(s) x {config.duration:g} s), {config.clients} client "
            f"process(es) x {config.sessions} sessions: about {_duration_text(est)}"
        )
        for name, warmed in _warm_up(servers, clients, cells, config, progress).items():
            confs[name]["warmup_connections"] = warmed
        for round_index in range(config.rounds):
            for protocol, mode in cells:
                for name in list(servers):
                    server = servers[name]
                    cell = f"round {round_index + 1}/{config.rounds} TLS {protocol} {mode} {name}"
                    progress.start(cell)
                    if not server.alive():
                        reason = f"exited (code {server.proc.returncode}): {_tail(server.log)}"
                        confs[name].update(status="failed", reason=reason)
                        progress.finish(cell, None, reason)
                        servers.pop(name).finish_stop(time.monotonic())
                        continue
                    sample = _measure(server, clients, protocol, mode, config, round_index)
                    samples.setdefault((name, protocol, mode), []).append(sample)
                    progress.finish(cell, sample)
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
    report["warmup_check"] = warmup_check(results)
    return report


def _seconds_per_cell(config: BenchConfig) -> float:
    """About how long one server takes in one cell (warm-up and every round)."""
    warm = config.warmup + 0.3 if config.warmup > 0 else 0.0
    return warm + config.rounds * (config.duration + 0.3)


def _warm_up(
    servers: dict[str, _Server] | dict[str, _Target],
    clients: Sequence[_LoadClient],
    cells: Sequence[tuple[str, str]],
    config: BenchConfig,
    progress: _Progress,
) -> dict[str, int]:
    """``config.warmup`` seconds of unmeasured load on every server in every cell,
    before the first round, so that no configuration's first round pays for its
    JIT or caches (checked afterwards by :func:`warmup_check`). A server that dies
    here is caught by the rounds' liveness check.

    Returns:
        the connections each server completed while warming up.
    """
    warmed: dict[str, int] = {}
    if config.warmup <= 0:
        return warmed
    for protocol, mode in cells:
        for name, server in servers.items():
            if server.alive():
                progress.start(f"warm-up TLS {protocol} {mode} {name}")
                sample = _measure(server, clients, protocol, mode, config, -1, config.warmup)
                warmed[name] = warmed.get(name, 0) + sample.completed
    return warmed


def _report_head(config: BenchConfig) -> dict[str, Any]:
    return {
        "tool": PROG,
        "version": _package_version(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings": {
            "workers": config.workers,
            "duration": config.duration,
            "rounds": config.rounds,
            "warmup": config.warmup,
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


def _run_target(config: BenchConfig) -> dict[str, Any]:
    """``--target``: the same load and rounds against one server someone else runs.
    The load generator does not verify the target's certificate (it measures
    handshakes, not trust)."""
    assert config.target is not None
    host, port = config.target
    target = _Target(host, port, config.target_sni, config.target_pid, config.target_path)
    report = _report_head(config)
    report["settings"]["workers"] = None
    report["settings"]["request"] = target.request.decode("latin-1")
    report["configurations"]["target"] = {
        "description": f"{host}:{port} (sni {target.sni})"
        + (f", server pid {target.pid}" if target.pid else ", server CPU not measured"),
        "available": True,
        "status": "ok",
        "reason": None,
        "version": None,
        "pid": target.pid,
    }
    cells = [(p, m) for p in config.protocols for m in config.modes]
    progress = _Progress(config.progress, len(cells) * config.rounds)
    progress.note(
        f"{len(cells)} cells x ({config.warmup:g} s warm-up + {config.rounds} round(s) x "
        f"{config.duration:g} s): about {_duration_text(len(cells) * _seconds_per_cell(config))}"
    )
    workdir = Path(tempfile.mkdtemp(prefix="tlsresume-bench-"))
    samples: dict[tuple[str, str], list[Sample]] = {}
    clients: list[_LoadClient] = []
    try:
        env = _child_env(f"{os.getpid()}-{time.monotonic_ns()}")
        clients = [_LoadClient(i, env, workdir) for i in range(config.clients)]
        for c in clients:
            c.receive(60.0)  # hello: the core loaded
        warmed = _warm_up({"target": target}, clients, cells, config, progress)
        report["configurations"]["target"]["warmup_connections"] = warmed.get("target", 0)
        for round_index in range(config.rounds):
            for protocol, mode in cells:
                cell = f"round {round_index + 1}/{config.rounds} TLS {protocol} {mode} target"
                progress.start(cell)
                if not target.alive():
                    raise BenchError(f"--server-pid {target.pid} exited during the run")
                sample = _measure(target, clients, protocol, mode, config, round_index)
                samples.setdefault((protocol, mode), []).append(sample)
                progress.finish(cell, sample)
    finally:
        progress.close()
        for c in clients:
            c.kill()
        shutil.rmtree(workdir, ignore_errors=True)
    for (protocol, mode), got in samples.items():
        report["results"].append(
            {"config": "target", "protocol": protocol, "mode": mode, **summarize(got)}
        )
    add_ratios(report["results"])
    report["warmup_check"] = warmup_check(report["results"])
    return report
