"""A ``tlsresume serve`` worker process: forked or spawned, it accepts on the
master's socket until told to stop and reports its Redis tier's counters.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the core is imported lazily so --no-share works without it
    from tlsresume import SessionStore, TicketKeyRing


from tlsresume.redaction import redact_url

from .balance import AcceptBalance
from .config import _TIER_REPORT, _TRANSIENT_ACCEPT_ERRNOS, ServerConfig
from .connection import ConnectionServer, build_server_context
from .protocol import stats_payload
from .supervisor import SupervisorCounters

log = logging.getLogger("tlsresume.tools.serve")


# --------------------------------------------------------------------------------------
# The worker process
# --------------------------------------------------------------------------------------


class _RedisView:
    """What one process knows of the Redis link (``--redis``): for the stats URL and
    the master's shutdown lines.

    ``key_sync`` is the master's sync, whose counters live in memory that forked
    workers share; a ``--spawn`` worker has none (only the master syncs). The session
    tier is this process's own: each worker has one.
    """

    def __init__(self, url: str, name: str, key_sync: Any, session_tier: Any) -> None:
        self.url = url  # without its password
        self.name = name
        self.key_sync = key_sync
        self.session_tier = session_tier

    def stats(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "name": self.name,
            "key_sync": self.key_sync.stats() if self.key_sync is not None else None,
            "session_tier": self.session_tier.stats() if self.session_tier is not None else None,
        }

    def stop_tier(self, report_fd: int) -> None:
        """In a stopping worker: flush and stop this process's session tier, and send
        its final counters to the master on ``report_fd`` (one line, an atomic pipe
        write). Never raises: the worker is exiting either way."""
        tier = self.session_tier
        if tier is None:
            return
        try:
            tier.stop(flush=0.5)  # queued writes reach Redis before the worker exits
            line = _TIER_REPORT + json.dumps(tier.stats(), separators=(",", ":")).encode()
            os.write(report_fd, line + b"\n")  # well under PIPE_BUF: one atomic write
        except Exception as exc:
            log.debug("could not stop or report the Redis session tier: %s", exc)


def _sum_tier_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals of several processes' session tier counters (gauges are left out,
    ``max_get_ms`` is the largest)."""
    gauges = {"queued", "connections", "idle", "redis_up", "timeout_ms"}
    total: dict[str, Any] = {}
    for report in reports:
        for key, value in report.items():
            if key == "max_get_ms":
                total[key] = max(total.get(key, 0.0), value)
            elif key not in gauges and isinstance(value, int) and not isinstance(value, bool):
                total[key] = total.get(key, 0) + value
    return total


def _key_values(stats: dict[str, Any]) -> str:
    return " ".join(f"{k}={round(v, 3) if isinstance(v, float) else v}" for k, v in stats.items())


class _Stop(BaseException):
    """Raised in a worker's main thread by SIGTERM; not an Exception, so no
    connection handler can swallow it."""


class _StopSignal:
    """SIGTERM's handler in a worker: stop accepting, but finish the connection the
    main thread is serving.

    The main thread serves connections itself, so a handler that raised wherever
    it interrupts would cut a response short; it raises :class:`_Stop` only while
    the thread waits in ``accept()``, and otherwise leaves a flag the accept loop
    checks before its next ``accept()``.
    """

    def __init__(self) -> None:
        self.accepting = False
        self.requested = False

    def __call__(self, signum: int, frame: object) -> None:
        self.requested = True
        if self.accepting:
            raise _Stop()


def _watch_master(death_fd: int) -> None:
    """Exit the worker when the master dies: the master holds the only write end of
    this pipe and never writes, so EOF means it is gone (even after SIGKILL)."""
    try:
        while os.read(death_fd, 1):
            pass
    except OSError:
        pass
    os._exit(0)


def _worker_main(
    sock: socket.socket,
    config: ServerConfig,
    ring: TicketKeyRing | None,
    store: SessionStore | None,
    master_pid: int,
    death_fd: int,
    ready_fd: int,
    redis: _RedisView | None = None,
    supervisor: SupervisorCounters | None = None,
    balance: AcceptBalance | None = None,
    slot: int = 0,
) -> int:
    """Body of every worker, forked or spawned.

    ``redis`` is this worker's view of the Redis link; with a session tier, the
    worker keeps ``ready_fd`` open to report the tier's final counters when it stops.
    ``supervisor`` is the master's restart counters, for the stats URL.
    ``balance`` is the workers' accept counts and ``slot`` this worker's place in
    them: a worker well ahead of the others steps back from ``accept()``.

    Returns:
        The exit status (0 after SIGTERM).
    """
    # The master turns Ctrl-C into SIGTERM for every worker, so a terminal's SIGINT
    # to the whole process group must not interrupt workers mid-response.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = _StopSignal()
    signal.signal(signal.SIGTERM, stop)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    server: ConnectionServer | None = None
    try:
        ctx = build_server_context(config, ring, store)

        def stats() -> dict[str, Any]:
            return stats_payload(
                ring,
                store,
                master_pid=master_pid,
                workers=config.workers,
                tickets=config.tickets,
                redis=redis.stats() if redis is not None else None,
                supervisor=supervisor.report() if supervisor is not None else None,
            )

        threading.Thread(
            target=_watch_master, args=(death_fd,), name="watch-master", daemon=True
        ).start()
        server = ConnectionServer(ctx, config, stats)
        # Tell the master we are ready; one short line is an atomic pipe write.
        try:
            os.write(ready_fd, f"{os.getpid()}\n".encode("ascii"))
        except BrokenPipeError:  # the master is gone; the watchdog ends us
            pass
        if redis is None or redis.session_tier is None:
            os.close(ready_fd)  # else kept for the tier's last report (stop_tier)
        if balance is not None:
            balance.join(slot)
        while not stop.requested:
            # A plain blocking accept on one thread per worker: Linux queues blocked
            # acceptors FIFO and wakes one per connection. A worker that serves on
            # this thread and comes straight back would, under load, take the next
            # connection from the backlog before a woken peer can, so a worker
            # ahead of the others steps back first (see balance.py). Clients then
            # land on every worker, which is what makes "each worker has its own
            # keys" visible.
            if balance is not None:
                balance.step_back()
            stop.accepting = True
            try:
                conn, _peer = sock.accept()
            except OSError as exc:
                if exc.errno in _TRANSIENT_ACCEPT_ERRNOS:
                    log.debug("accept failed, backing off: %s", exc)
                    time.sleep(0.05)
                    continue
                raise
            finally:
                stop.accepting = False
            if balance is not None:
                balance.accepted()
            server.serve(conn)
        raise _Stop()
    except _Stop:
        sock.close()
        if server is not None:
            server.pool.drain(timeout=2.0)
        if redis is not None:
            redis.stop_tier(ready_fd)
        return 0


def _spawned_worker(spec_json: str) -> int:
    """Entry point of a ``--spawn`` worker (a fresh interpreter).

    Args:
        spec_json: JSON with the config, the inherited fds, the master's pid, the
            names of the ring and store, and the Redis master key (hex) if any. It
            arrives on stdin, not argv, so that no worker's entry in the process
            list shows the master key or the Redis URL with its password.

    Returns:
        The exit status.
    """
    spec = json.loads(spec_json)
    config = ServerConfig(**spec["config"])
    logging.basicConfig(level=config.log_level, format=_LOG_FORMAT)
    ring: TicketKeyRing | None = None
    store: SessionStore | None = None
    if spec["ring"] is not None or spec["store"] is not None:
        import tlsresume

        if spec["ring"] is not None:
            ring = tlsresume.TicketKeyRing.attach(spec["ring"])
        if spec["store"] is not None:
            store = tlsresume.SessionStore.attach(spec["store"])
    redis = None
    if config.redis is not None:
        # The ring needs nothing here: the master's key sync writes into its memory.
        # The session tier is per process, so this worker attaches its own.
        from tlsresume.redis import connect_worker

        name, refresh, timeout = config.redis_settings()
        tier = None
        if store is not None:
            key = spec.get("redis_master_key")
            tier = connect_worker(
                config.redis,
                store=store,
                name=name,
                timeout=timeout,
                master_key=bytes.fromhex(key) if key else None,
                insecure_unsealed=config.redis_insecure_unsealed,
                retry=min(refresh, 1.0),  # as connect_server does for the master's tier
            )
        redis = _RedisView(redact_url(config.redis), name, None, tier)
    sock = socket.socket(fileno=spec["listen_fd"])
    supervisor = SupervisorCounters.from_fd(spec["supervisor_fd"])
    balance = AcceptBalance(spec["balance_fd"], config.workers)
    return _worker_main(
        sock,
        config,
        ring,
        store,
        spec["master_pid"],
        spec["death_fd"],
        spec["ready_fd"],
        redis,
        supervisor,
        balance,
        spec["slot"],
    )


_LOG_FORMAT = "%(asctime)s tlsresume[%(process)d] %(levelname)s %(message)s"

# What a --spawn worker runs; its spec comes on stdin (see _spawned_worker). os._exit
# skips joining the daemon connection threads.
_SPAWN_CODE = (
    "import os, sys\n"
    "from tlsresume.tools.serve.worker import _spawned_worker\n"
    "code = _spawned_worker(sys.stdin.read())\n"
    "sys.stdout.flush(); sys.stderr.flush()\n"
    "os._exit(code)\n"
)
