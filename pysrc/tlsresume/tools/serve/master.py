"""The ``tlsresume serve`` master process: binds the socket, makes the shared ring
and store, starts and restarts workers, and stops them all; :func:`run` is its entry point.

A little over 500 lines: the master's lifecycle (start, restart, stop) is one
state machine over one object.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import secrets
import select
import signal
import socket
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:  # the core is imported lazily so --no-share works without it
    from tlsresume import SessionStore, TicketKeyRing


from tlsresume.redaction import redact_message, redact_url

from ..launch import child_env
from ..pemfiles import check_cert_and_key
from .balance import AcceptBalance
from .config import _TIER_REPORT, ServeError, ServerConfig, _read_master_key
from .connection import build_server_context
from .supervisor import SlotBackoff, SupervisorCounters
from .worker import (
    _LOG_FORMAT,
    _SPAWN_CODE,
    _key_values,
    _RedisView,
    _sum_tier_reports,
    _worker_main,
)

log = logging.getLogger("tlsresume.tools.serve")


# --------------------------------------------------------------------------------------
# The master process
# --------------------------------------------------------------------------------------


@dataclass
class _WorkerProc:
    pid: int
    slot: int  # which of the --workers places it fills
    started: float  # time.monotonic() at its start
    popen: subprocess.Popen[bytes] | None = None  # set for --spawn workers


def _bind(host: str, port: int, backlog: int) -> socket.socket:
    """Bind the one listening socket every worker accepts on."""
    infos = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE
    )
    family, socktype, proto, _canon, addr = infos[0]
    sock = socket.socket(family, socktype, proto)
    try:
        # Lets a restarted server rebind at once while old connections sit in
        # TIME_WAIT; it does not let two servers share the port (that is SO_REUSEPORT).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(addr)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ServeError(_bind_problem(host, port, exc)) from None
    except BaseException:
        sock.close()
        raise
    return sock


def _bind_problem(host: str, port: int, exc: OSError) -> str:
    """Why binding ``host:port`` failed, and what to give instead."""
    if exc.errno == errno.EADDRINUSE:
        return (
            f"port {port} on {host} is already in use; stop what listens there, give "
            "another --port, or --port 0 for any free one"
        )
    if exc.errno == errno.EACCES:
        return (
            f"not allowed to listen on port {port} on {host} ({exc.strerror}); ports "
            "below 1024 need privileges: give --port 1024 or above, or --port 0"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return (
            f"cannot listen on {host}: no interface of this machine has that address; "
            "give --host 127.0.0.1 or an address of this machine"
        )
    return f"cannot listen on {host} port {port}: {exc.strerror or exc}"


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if sock.family == socket.AF_INET6:
        host = f"[{host}]"
    return f"https://{host}:{port}/"


class _Master:
    """Owns the socket, the ring and store, the worker processes and their lifecycle."""

    def __init__(self, config: ServerConfig, out: TextIO) -> None:
        self.config = config
        self.out = out
        self.workers: dict[int, _WorkerProc] = {}
        self.master_pid = os.getpid()
        self.sock: socket.socket | None = None
        self.ring: TicketKeyRing | None = None
        self.store: SessionStore | None = None
        self.cert_dir: Any = None
        self.link: Any = None  # tlsresume.redis.RedisLink with --redis
        self.redis: _RedisView | None = None
        self.redis_master_key: bytes | None = None
        self.tier_reports: list[dict[str, Any]] = []  # stopped workers' tier counters
        self.stop_signal: int | None = None
        self.backoff = [SlotBackoff() for _ in range(config.workers)]
        self.due: dict[int, float] = {}  # empty slot -> when its next worker starts
        self.counters: SupervisorCounters | None = None
        self.balance: AcceptBalance | None = None  # the workers' accept counts
        self._death_r = self._death_w = self._ready_r = self._ready_w = -1
        self._next_key_poll = time.monotonic() + config.key_poll

    def say(self, message: str) -> None:
        print(f"tlsresume serve: {message}", file=self.out, flush=True)

    # -- start --------------------------------------------------------------------

    def start(self) -> None:
        """Make the certificate, socket, ring, store and workers; wait until all are
        ready.

        Raises:
            ServeError: a worker died before it was ready.
            Exception: whatever binding, loading the core or making the ring raised.
        """
        config = self.config
        if config.key_file is not None:
            from tlsresume import keyfile

            assert config.key_format is not None
            keyfile.read(config.key_file, config.key_format)  # fails before anything is made
        if config.redis_master_key_file is not None:
            self.redis_master_key, made = _read_master_key(
                config.redis_master_key_file, create=config.redis_new_master_key
            )
            if made:
                self.say(
                    f"wrote a new Redis master key to {config.redis_master_key_file} (mode "
                    "0600): give every instance of the fleet this same file"
                )
        # Bind first: a busy port fails before any certificate is made.
        self.sock = _bind(config.host, config.port, config.backlog)
        if config.cert is None:
            from tlsresume.selfsigned import make_self_signed

            self.cert_dir = make_self_signed()
            config = self.config = dataclasses.replace(
                config, cert=str(self.cert_dir.cert), key=str(self.cert_dir.key)
            )
            self.say(
                f"no --cert/--key given; using a throwaway self-signed certificate "
                f"{config.cert} (key {config.key}), removed on exit"
            )
        else:
            # A missing file, a key given as the certificate, a key of another
            # certificate: one line naming the file, instead of OpenSSL's "PEM lib".
            assert config.key is not None
            try:
                check_cert_and_key(config.cert, config.key)
            except ValueError as exc:
                raise ServeError(str(exc)) from None
        # Load the certificate once here so what is left (a cipher string that
        # selects nothing) fails with one clear message instead of N dying workers.
        build_server_context(config, None)
        if config.share and (config.tickets or config.store_size() is not None):
            self._make_regions()
        if config.redis is not None:
            self._connect_redis()

        self._death_r, self._death_w = os.pipe()
        self._ready_r, self._ready_w = os.pipe()
        self.counters = SupervisorCounters.create()
        self.balance = AcceptBalance.create(config.workers)
        for slot in range(config.workers):
            self._start_worker(slot)
        self._wait_ready(timeout=30.0)
        # Respawned workers report on the same pipe; nobody waits for them, so the
        # master only drains it (non-blocking) to keep it from filling up.
        os.set_blocking(self._ready_r, False)

        pids = ",".join(str(pid) for pid in self.workers)
        ring = self.ring.name if self.ring is not None else "none"
        store = self.store.name if self.store is not None else "none"
        self.say(
            f"listening on {_url(self.sock)} workers={len(self.workers)} "
            f"mode={'spawn' if config.spawn else 'fork'} "
            f"sharing={'on' if config.share else 'off'} ring={ring} store={store} "
            f"tickets={'on' if config.tickets else 'off'} "
            f"redis={'on' if self.link is not None else 'off'} pids={pids}"
        )

    def _make_regions(self) -> None:
        """Make the named ring and store, BEFORE any worker exists: forked workers
        inherit the mappings, spawned ones attach by name, ``tlsresume stats``
        attaches from anywhere."""
        import tlsresume
        from tlsresume.regions import KINDS, region_path

        config = self.config
        name = f"serve-{os.getpid()}"
        if any(os.path.exists(region_path(kind, name)) for kind in KINDS):
            # No live process has our pid, so these are an earlier server's, killed
            # before it could remove them. Leave them alone (they may be someone's
            # evidence) and take a fresh name.
            fresh = f"{name}-{secrets.token_hex(3)}"
            where = os.path.dirname(region_path(KINDS[0], name))
            self.say(
                f"{where} holds tlsresume regions named {name} left by an earlier server "
                f"with this pid; using {fresh} (remove the old ones with "
                f"tlsresume stats --cleanup, or rm {where}/tlsresume.*.{name})"
            )
            name = fresh
        if config.key_file is not None:
            assert config.key_format is not None
            # Shared by name: the workers attach and see every reload at once; this
            # process polls the file from its supervision loop, not from a thread, so
            # it never forks workers while a thread of its own runs (a file that stops
            # parsing keeps the old keys).
            self.ring = tlsresume.TicketKeyRing.from_file(
                config.key_file,
                config.key_format,
                name=name,
                poll_interval=None,
                session_cache=False,
            )
        elif config.tickets:
            kwargs: dict[str, Any] = {}
            if config.rotate is not None:
                kwargs["rotation_period"] = config.rotate
            # The store below is made (or not) by --session-cache, not by the ring.
            self.ring = tlsresume.TicketKeyRing(name=name, session_cache=False, **kwargs)
        size = config.store_size()
        if size is not None:
            self.store = tlsresume.SessionStore(size, name=name, single_use=config.single_use)

    def _connect_redis(self) -> None:
        """Link the ring and store to Redis, after making them and BEFORE any worker
        exists: the first key sync is done before a worker can issue a ticket, and
        forked workers inherit the link. The master starts no thread for it (the
        key sync runs from its loop, the session tier's writer only in workers), so
        it never forks while a thread of its own runs.

        Raises:
            ServeError: redis-py cannot use the URL (the message has no password).
            TLSResumeError: refused credentials, a master key that does not match
                the fleet's, something else at the Redis key (see
                :func:`tlsresume.redis.connect_server`).
        """
        from tlsresume.errors import TLSResumeError
        from tlsresume.redis import connect_server

        config = self.config
        assert config.redis is not None
        url = config.redis
        name, refresh, timeout = config.redis_settings()
        try:
            self.link = connect_server(
                url,
                ring=self.ring,
                store=self.store,
                name=name,
                refresh=refresh,
                timeout=timeout,
                master_key=self.redis_master_key,
                insecure_unsealed=config.redis_insecure_unsealed,
                local_rotation=config.redis_local_rotation,
                start=False,
            )
        except TLSResumeError:
            raise  # its message names the URL without the password, and what to do
        except (ValueError, TypeError) as exc:
            # redis-py refusing the URL: an unknown scheme, a bad port or option.
            detail = redact_message(str(exc), url)
            raise ServeError(f"--redis {redact_url(url)}: {detail}") from None
        link = self.link
        self.redis = _RedisView(redact_url(url), name, link.key_sync, link.session_tier)
        shared = " and ".join(
            what
            for what, part in (("ticket keys", link.key_sync), ("sessions", link.session_tier))
            if part is not None
        )
        line = (
            f"sharing {shared} through Redis at {redact_url(url)} name={name} "
            f"refresh={refresh:g}s timeout={timeout * 1000:g}ms "
            f"sealed={'yes' if self.redis_master_key is not None else 'no'}"
        )
        if link.key_sync is not None and not link.key_sync.stats()["redis_up"]:
            line += "; Redis is not reachable yet: serving with this instance's own keys"
        self.say(line)

    def _drain_reports(self) -> None:
        """Read what workers wrote on the ready pipe without waiting: ready lines
        (of respawned workers) are dropped, session tier reports are kept."""
        if self._ready_r < 0:
            return
        os.set_blocking(self._ready_r, False)
        data = b""
        while True:
            try:
                chunk = os.read(self._ready_r, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            data += chunk
        for line in data.split(b"\n"):
            if line.startswith(_TIER_REPORT):
                try:
                    self.tier_reports.append(json.loads(line[len(_TIER_REPORT) :]))
                except ValueError:
                    log.debug("garbled session tier report: %r", line)

    def _stop_redis(self) -> None:
        """Print the link's counters, then stop it: the key sync (it writes into the
        ring, so before the ring goes) and the master's session tier."""
        assert self.redis is not None
        try:
            own = self.redis.stats()
            if own["key_sync"] is not None:
                self.say("redis key_sync stats: " + _key_values(own["key_sync"]))
            if own["session_tier"] is not None:
                reports = [own["session_tier"], *self.tier_reports]
                self.say(
                    f"redis session_tier stats (master and {len(self.tier_reports)} "
                    "workers): " + _key_values(_sum_tier_reports(reports))
                )
        except Exception as exc:  # stats are informative; never block shutdown
            log.debug("could not read the Redis link's stats: %s", exc)
        try:
            self.link.stop()
        except Exception as exc:
            self.say(f"could not stop the Redis link: {exc}")
        self.link = None

    def _start_worker(self, slot: int) -> int:
        pid = self._spawn_worker(slot) if self.config.spawn else self._fork_worker(slot)
        self.workers[pid].slot = slot
        return pid

    def _fork_worker(self, slot: int) -> int:
        assert self.sock is not None
        # Nothing buffered may be written twice (once by the child).
        sys.stdout.flush()
        sys.stderr.flush()
        # Block the stop signals across fork so the child cannot run the master's
        # handler before it installs its own.
        # (With --redis, the library's fork hook waits until its threads are between
        # rounds: no child inherits a lock one of them held; see tlsresume._forkgate.)
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
            raise
        if pid == 0:
            code = 1
            try:
                os.close(self._death_w)
                os.close(self._ready_r)
                code = _worker_main(
                    self.sock,
                    self.config,
                    self.ring,
                    self.store,
                    self.master_pid,
                    self._death_r,
                    self._ready_w,
                    self.redis,
                    self.counters,
                    self.balance,
                    slot,
                )
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        self.workers[pid] = _WorkerProc(pid, -1, time.monotonic())
        return pid

    def _spawn_worker(self, slot: int) -> int:
        assert self.sock is not None and self.counters is not None
        assert self.balance is not None
        spec = {
            "config": dataclasses.asdict(self.config),
            "listen_fd": self.sock.fileno(),
            "death_fd": self._death_r,
            "ready_fd": self._ready_w,
            "master_pid": self.master_pid,
            "supervisor_fd": self.counters.fd,
            "balance_fd": self.balance.fd,
            "slot": slot,
            "ring": self.ring.name if self.ring is not None else None,
            "store": self.store.name if self.store is not None else None,
            "redis_master_key": (
                self.redis_master_key.hex() if self.redis_master_key is not None else None
            ),
        }
        sys.stdout.flush()
        sys.stderr.flush()
        popen = subprocess.Popen(
            [sys.executable, "-c", _SPAWN_CODE],
            pass_fds=(
                self.sock.fileno(),
                self._death_r,
                self._ready_w,
                self.counters.fd,
                self.balance.fd,
            ),
            stdin=subprocess.PIPE,
            env=child_env(),
        )
        self.workers[popen.pid] = _WorkerProc(popen.pid, -1, time.monotonic(), popen)
        # On stdin, not argv: the worker's entry in the process list must show neither
        # the master key nor the Redis URL's password. A few hundred bytes fit the
        # pipe: this never blocks.
        assert popen.stdin is not None
        try:
            popen.stdin.write(json.dumps(spec).encode("utf-8"))
            popen.stdin.close()
        except BrokenPipeError:  # it died at once; _wait_ready or _reap reports that
            pass
        return popen.pid

    def _wait_ready(self, timeout: float) -> None:
        ready: set[int] = set()
        pending = b""
        deadline = time.monotonic() + timeout
        while len(ready) < len(self.workers):
            if self.stop_signal is not None:
                raise ServeError("interrupted while starting workers")
            for proc, status in self._reap():
                raise ServeError(
                    f"worker {proc.pid} exited ({_describe_status(status)}) before it was "
                    "ready; its error is printed above"
                )
            left = deadline - time.monotonic()
            if left <= 0:
                raise ServeError(
                    f"only {len(ready)} of {len(self.workers)} workers were ready after "
                    f"{timeout:.0f} s"
                )
            readable, _, _ = select.select([self._ready_r], [], [], min(left, 0.1))
            if readable:
                pending += os.read(self._ready_r, 4096)
                *lines, pending = pending.split(b"\n")
                ready.update(int(line) for line in lines if line.strip().isdigit())

    # -- run ----------------------------------------------------------------------

    def _reap(self) -> list[tuple[_WorkerProc, int]]:
        """Collect workers that exited: ``[(worker, wait status)]``."""
        gone = []
        for pid, proc in list(self.workers.items()):
            if proc.popen is not None:
                code = proc.popen.poll()
                if code is None:
                    continue
                # Popen already reaped it; rebuild a wait status for the message.
                status = (-code) & 0x7F if code < 0 else (code & 0xFF) << 8
            else:
                try:
                    done, status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done, status = pid, 0
                if done == 0:
                    continue
            del self.workers[pid]
            gone.append((proc, status))
        return gone

    def serve_until_signal(self) -> None:
        """Keep every worker slot filled until SIGTERM or SIGINT arrives.

        Never gives up: a dead worker's slot is restarted after its backoff
        (:class:`SlotBackoff`), and a worker that cannot even be started (fork or
        exec failing) is retried the same way. The listening socket stays open
        throughout; connections wait in its backlog for the next worker.
        """
        assert self.counters is not None
        while self.stop_signal is None:
            now = time.monotonic()
            for proc, status in self._reap():
                lived = now - proc.started
                delay = self.backoff[proc.slot].on_death(lived)
                self.due[proc.slot] = now + delay
                self.counters.death(proc.pid, status)
                if self.balance is not None:
                    self.balance.vacate(proc.slot)
                self.say(
                    f"worker {proc.pid} exited ({_describe_status(status)}) after "
                    f"{lived:.1f} s; restarting its slot in {delay:.1f} s"
                )
            for slot, when in sorted(self.due.items()):
                if when <= now and self.stop_signal is None:
                    self._restart(slot)
            self._drain_reports()
            self._poll_key_file(now)
            if self.link is not None:
                self.link.poll()
            # A signal interrupts nothing here (PEP 475 resumes the sleep), so poll.
            pause = min([0.1, *(when - time.monotonic() for when in self.due.values())])
            time.sleep(max(pause, 0.005))

    def _poll_key_file(self, now: float) -> None:
        """Every --key-poll seconds, load the key file if it changed."""
        if self.config.key_file is None or self.ring is None:
            return
        if now >= self._next_key_poll:
            self._next_key_poll = now + self.config.key_poll
            self.ring.reload(changed_only=True)

    def _restart(self, slot: int) -> None:
        """Start the worker of an empty slot; on failure, try again after its backoff."""
        assert self.counters is not None
        del self.due[slot]
        try:
            new = self._start_worker(slot)
        except Exception as exc:  # EAGAIN/ENOMEM from fork, exec failing: retry later
            delay = self.backoff[slot].on_death(0.0)
            self.due[slot] = time.monotonic() + delay
            self.counters.count("start_failures")
            self.say(f"could not start a worker ({exc}); trying again in {delay:.1f} s")
            return
        self.counters.count("respawns")
        self.say(f"started worker {new}")

    # -- stop ---------------------------------------------------------------------

    def stop(self, grace: float = 5.0) -> None:
        """Stop every worker (SIGTERM, then SIGKILL after ``grace`` s) and clean up."""
        for pid in list(self.workers):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while self.workers and time.monotonic() < deadline:
            self._reap()
            if self.workers:
                time.sleep(0.02)
        for pid in list(self.workers):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        while self.workers:
            for proc in list(self.workers.values()):
                if proc.popen is not None:
                    proc.popen.wait()
                else:
                    try:
                        os.waitpid(proc.pid, 0)
                    except ChildProcessError:
                        pass
                del self.workers[proc.pid]
        self._drain_reports()  # the stopped workers' last words
        if self.counters is not None:
            report = self.counters.report()
            self.say("supervisor stats: " + _key_values(report))
            self.counters.close()
            self.counters = None
        if self.balance is not None:
            self.balance.close()
            self.balance = None
        for fd in (self._death_r, self._death_w, self._ready_r, self._ready_w):
            if fd >= 0:
                os.close(fd)
        self._death_r = self._death_w = self._ready_r = self._ready_w = -1
        if self.sock is not None:
            self.sock.close()
        if self.link is not None:
            self._stop_redis()
        # Counters first (the workers are gone, so they are final), then the names.
        for kind, region in (("ring", self.ring), ("store", self.store)):
            if region is None:
                continue
            try:
                stats = region.stats()
                self.say(f"{kind} stats: " + " ".join(f"{k}={v}" for k, v in stats.items()))
            except Exception as exc:  # stats are informative; never block shutdown
                log.debug("could not read %s stats: %s", kind, exc)
            try:
                region.unlink()
            except Exception as exc:
                self.say(f"could not remove the {kind} named {region.name}: {exc}")
            try:
                region.close()
            except Exception as exc:
                log.debug("could not close the %s: %s", kind, exc)
        self.ring = self.store = None
        if self.cert_dir is not None:
            self.cert_dir.cleanup()


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.WEXITSTATUS(status)}"


def run(config: ServerConfig, *, out: TextIO | None = None) -> int:
    """Run the pre-fork server until SIGTERM or SIGINT; the body of ``tlsresume serve``.

    Must be called from the main thread (it installs signal handlers) of a process
    that has started no other threads yet (it forks).

    Args:
        config: what to serve and how.
        out: where the status lines go (default ``sys.stdout``).

    Returns:
        0 after a clean stop on a signal, 1 if the server could not start. Workers
        that die are restarted (with a backoff per slot), never a reason to exit.

    Raises:
        ValueError: ``config`` is invalid.
    """
    config.validate()
    logging.basicConfig(level=config.log_level, format=_LOG_FORMAT)
    master = _Master(config, out if out is not None else sys.stdout)

    def on_signal(signum: int, frame: object) -> None:
        master.stop_signal = signum

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            master.start()
        except Exception as exc:
            print(f"tlsresume serve: error: {exc}", file=sys.stderr, flush=True)
            return 1
        master.serve_until_signal()
        return 0 if master.stop_signal is not None else 1
    finally:
        master.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if master.stop_signal is not None:
            master.say(f"stopped on {signal.Signals(master.stop_signal).name}")
