"""What ``tlsresume bench`` runs and how: the configurations, protocols and modes,
:class:`BenchConfig` and its checks, :class:`BenchError`, the constants every part
of the benchmark shares.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TextIO

from tlsresume.errors import TLSResumeError

PROG = "tlsresume bench"

#: Every configuration, in report order, with what it is.
CONFIGS: dict[str, str] = {
    "baseline": "tlsresume serve --no-share: plain CPython, per-worker contexts",
    "tickets": "tlsresume serve --no-session-cache: shared ticket key ring",
    "session-cache": "tlsresume serve --session-cache 16M --no-tickets: shared session store",
    "openssl-s_server": "openssl s_server (one process): s_server -WWW, one C process "
    "whatever --workers says, not an N-worker reference",
    "nginx-tickets": "nginx, N workers, one shared 80-byte ssl_session_ticket_key, no session "
    "cache (the multi-process reference)",
    "nginx-cache": "nginx, N workers, ssl_session_tickets off, ssl_session_cache shared:SSL:10m "
    "(the multi-process reference)",
    "node-cluster-rr": "Node.js cluster, N workers sharing ticket keys, "
    "NODE_CLUSTER_SCHED_POLICY=rr: the primary accepts and hands off (Node's default)",
    "node-cluster-none": "Node.js cluster, N workers sharing ticket keys, "
    "NODE_CLUSTER_SCHED_POLICY=none: the workers accept themselves",
}
#: How the table, Markdown and chart name a configuration where its name alone
#: would mislead (s_server is one process whatever ``--workers`` says).
LABELS: dict[str, str] = {"openssl-s_server": "openssl s_server (one process)"}
#: Configurations that are tlsresume itself.
TLSRESUME_CONFIGS = ("tickets", "session-cache")
#: The nginx references, and what each adds to the shared ``server`` block.
NGINX_CONFIGS: dict[str, tuple[str, ...]] = {
    "nginx-tickets": ("ssl_session_ticket_key {ticket_key};", "ssl_session_cache off;"),
    "nginx-cache": ("ssl_session_tickets off;", "ssl_session_cache shared:SSL:10m;"),
}
#: The Node.js cluster configurations and their NODE_CLUSTER_SCHED_POLICY.
NODE_CONFIGS: dict[str, str] = {"node-cluster-rr": "rr", "node-cluster-none": "none"}


def label(name: str) -> str:
    """The name a report shows for configuration ``name`` (the same in every
    rendering, so a chart's legend matches the table)."""
    return LABELS.get(name, name)


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

_QUICK_DURATION, _QUICK_ROUNDS = 1.0, 1
_FULL_DURATION, _FULL_ROUNDS = 3.0, 3
#: Seconds of unmeasured load per server and cell before the first round. V8 (the
#: Node.js configurations) compiles its TLS and HTTP paths only after thousands of
#: connections; 16 warm-up connections per client left Node's first round 50 %
#: dearer in CPU per connection than its third (measured, docs/bench.md).
_QUICK_WARMUP, _FULL_WARMUP = 0.5, 1.5

#: The warm-up check (:func:`tlsresume.tools.bench.benchmark.warmup_check`): a cell
#: is "cold" when its first round is worse than its third by more than this
#: fraction, after the run's drift (the median change of every configuration in
#: that cell) is taken out.
WARMUP_TOLERANCE = 0.10

# Exit codes, as the rest of the CLI: 0 ok, 1 failed, 2 bad usage, 130 interrupted.
EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class BenchError(TLSResumeError, RuntimeError):
    """The benchmark could not run (no C core, a client process died, ...)."""


@dataclass
class BenchConfig:
    """What :func:`run` measures; the command line only fills this in.

    Attributes:
        configs: configuration names (keys of :data:`CONFIGS`), in any order.
        workers: worker processes of every multi-process server.
        duration: seconds each cell (configuration x protocol x mode) is measured.
        rounds: times every cell is measured; the report takes the median.
        warmup: seconds of unmeasured load every server gets in every cell before
            the first round (JIT compilers, caches); 0: none beyond the load
            generator's one handshake per virtual client.
        clients: load generator processes, each with one connection at a time.
        sessions: virtual clients per load generator process (resumed mode).
        protocols: TLS versions, ``"1.2"`` and/or ``"1.3"``.
        modes: ``"full"`` and/or ``"resumed"`` handshakes.
        quick: recorded in the report (the CLI picks short durations with it).
        io_timeout: seconds any connect, read or write of the load generator may take.
        start_timeout: seconds a server gets to start listening.
        progress: where progress goes (``None``: nowhere).
        target: (host, port) of a server someone else runs: measure only it
            (``configs`` and ``workers`` are then not used).
        target_sni: the server name sent to the target (default: its host).
        target_pid: the target's process, for server CPU time (it and its
            descendants); ``None``: no server CPU figure.
        target_path: the path requested from the target (it must answer 200).
    """

    configs: tuple[str, ...] = tuple(CONFIGS)
    workers: int = 2
    duration: float = _FULL_DURATION
    rounds: int = _FULL_ROUNDS
    warmup: float = _FULL_WARMUP
    clients: int = 2
    sessions: int = 16
    protocols: tuple[str, ...] = PROTOCOLS
    modes: tuple[str, ...] = MODES
    quick: bool = False
    io_timeout: float = 5.0
    start_timeout: float = 30.0
    progress: TextIO | None = None
    target: tuple[str, int] | None = None
    target_sni: str | None = None
    target_pid: int | None = None
    target_path: str = "/"

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
        if not 0 <= self.warmup <= 600:
            raise ValueError(f"--warmup must be between 0 and 600 seconds, not {self.warmup}")
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
        if self.target is not None:
            host, port = self.target
            if not host or not 1 <= port <= 65535:
                raise ValueError(
                    f"--target: HOST:PORT with a port from 1 to 65535, not {host}:{port}"
                )
        if not self.target_path.startswith("/") or any(c in self.target_path for c in " \r\n"):
            raise ValueError(f"--path must start with / and hold no space: {self.target_path!r}")
        if self.target_pid is not None and not os.path.exists(f"/proc/{self.target_pid}"):
            raise ValueError(f"--server-pid {self.target_pid}: no such process")
        if not self.io_timeout > 0 or not self.start_timeout > 0:
            raise ValueError("io_timeout and start_timeout must be positive")
