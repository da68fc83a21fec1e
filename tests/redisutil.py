"""A real ``redis-server`` for tests: on a free loopback port, in a temporary
directory, never persisting (``--save '' --appendonly no``), always stopped.

It can require a password, serve TLS only (certificates from trustme), be paused
(SIGSTOP: connections are accepted by the kernel but never answered, the worst
kind of stall), killed, and restarted on the same port (empty, as a Redis without
persistence comes back).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"

#: Every wait here gives up after this long; no test may hang on Redis.
START_TIMEOUT = 10.0


def redis_server_available() -> bool:
    return os.access(REDIS_SERVER, os.X_OK)


def require_redis() -> None:
    """Skip the calling test module unless both redis-server and redis-py are here.
    With redis-server installed, a missing redis-py is an error: install the test
    extras."""
    import pytest

    try:
        import redis  # noqa: F401
    except ModuleNotFoundError:  # pragma: no cover
        if redis_server_available():
            raise
        pytest.skip("redis-server and redis-py are not installed", allow_module_level=True)
    if not redis_server_available():  # pragma: no cover
        pytest.skip("redis-server is not installed", allow_module_level=True)


def all_answer(clients: list[Any], check: Any) -> bool:
    """Whether ``check(client)`` is true for a client from each factory in
    ``clients`` (each closed after; a Redis error or a refused connection counts as
    false)."""
    import redis

    for make in clients:
        client = make()
        try:
            if not check(client):
                return False
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One ``redis-server`` process.

    Args:
        password: ``--requirepass``.
        tls: a trustme ``CA``: serve TLS only, with a certificate for 127.0.0.1 that
            this CA issued (``url`` then carries ``ssl_ca_certs``).

    Use as a context manager, or call :meth:`stop` (idempotent).
    """

    def __init__(
        self, *, password: str | None = None, tls: Any = None, extra: list[str] | None = None
    ) -> None:
        self.password = password
        self.extra = list(extra or [])
        self.dir = Path(tempfile.mkdtemp(prefix="tlsresume-redis-"))
        self.tls_files: dict[str, str] | None = None
        if tls is not None:
            leaf = tls.issue_cert("127.0.0.1", "localhost")
            files = {
                "cert": self.dir / "redis.crt",
                "key": self.dir / "redis.key",
                "ca": self.dir / "ca.crt",
            }
            leaf.private_key_pem.write_to_path(str(files["key"]))
            with open(files["cert"], "wb") as f:
                for blob in leaf.cert_chain_pems:
                    f.write(blob.bytes())
            tls.cert_pem.write_to_path(str(files["ca"]))
            self.tls_files = {k: str(v) for k, v in files.items()}
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False
        self.start()

    # ---- addresses -----------------------------------------------------------------

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.tls_files is not None:
            return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={self.tls_files['ca']}"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self, **kwargs: Any) -> Any:
        import redis

        kwargs.setdefault("socket_timeout", 2.0)
        kwargs.setdefault("socket_connect_timeout", 2.0)
        return redis.Redis.from_url(self.url, **kwargs)

    # ---- lifetime ------------------------------------------------------------------

    def _args(self) -> list[str]:
        args = [
            REDIS_SERVER,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.dir),
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
            "--logfile",
            str(self.dir / "redis.log"),
        ]
        if self.tls_files is not None:
            args += [
                "--port",
                "0",
                "--tls-port",
                str(self.port),
                "--tls-cert-file",
                self.tls_files["cert"],
                "--tls-key-file",
                self.tls_files["key"],
                "--tls-ca-cert-file",
                self.tls_files["ca"],
                "--tls-auth-clients",
                "no",
            ]
        else:
            args += ["--port", str(self.port)]
        if self.password:
            args += ["--requirepass", self.password]
        return args + self.extra

    def start(self) -> None:
        """Start on ``self.port`` (a free one the first time) and wait until it answers."""
        assert self.proc is None, "already running"
        for _ in range(5):
            self.port = free_port()
            self.proc = subprocess.Popen(
                self._args(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if self._wait_ready():
                return
            self._reap()
        raise RuntimeError(f"redis-server did not start: {self.log()}")

    def restart(self) -> None:
        """Start again on the same port (after :meth:`kill`); Redis comes back empty."""
        assert self.proc is None, "kill() it first"
        self.proc = subprocess.Popen(
            self._args(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not self._wait_ready():
            self._reap()
            raise RuntimeError(f"redis-server did not restart on port {self.port}: {self.log()}")

    def _wait_ready(self) -> bool:
        import redis

        deadline = time.monotonic() + START_TIMEOUT
        client = self.client(socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    return False
                try:
                    if client.ping():
                        return True
                except (redis.ConnectionError, redis.TimeoutError, OSError):
                    time.sleep(0.01)
            return False
        finally:
            client.close()

    def pause(self) -> None:
        """SIGSTOP: the kernel still accepts connections, nothing is ever answered."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        if self.proc is not None and self.paused:
            self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def kill(self) -> None:
        """SIGKILL, as a crash: clients see resets and refused connections."""
        if self.proc is not None:
            self.resume()
            self.proc.kill()
            self._reap()

    def _reap(self) -> None:
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
            self.proc = None

    def stop(self) -> None:
        """Stop it and remove its directory. Idempotent."""
        self.kill()  # nothing to save: it never persists
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        try:
            return (self.dir / "redis.log").read_text()[-2000:]
        except OSError:
            return ""

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SentinelGroup:
    """A master, one replica and three sentinels (``redis-server --sentinel``) on
    loopback, quorum 2, a master judged down after 500 ms: what an operator runs for
    a highly available Redis, small enough for a test. ``kill_master()`` SIGKILLs the
    current master; the sentinels then promote the replica."""

    SERVICE = "tlsresume-test"

    def __init__(self) -> None:
        self.master = RedisServer()
        self.replica = RedisServer(extra=["--replicaof", "127.0.0.1", str(self.master.port)])
        self.dir = Path(tempfile.mkdtemp(prefix="tlsresume-sentinel-"))
        self.ports: list[int] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        try:
            for i in range(3):
                port = free_port()
                conf = self.dir / f"sentinel-{i}.conf"
                conf.write_text(
                    f"port {port}\nbind 127.0.0.1\ndaemonize no\ndir {self.dir}\n"
                    f"logfile {self.dir}/sentinel-{i}.log\n"
                    f"sentinel monitor {self.SERVICE} 127.0.0.1 {self.master.port} 2\n"
                    f"sentinel down-after-milliseconds {self.SERVICE} 500\n"
                    f"sentinel failover-timeout {self.SERVICE} 3000\n"
                    f"sentinel parallel-syncs {self.SERVICE} 1\n"
                )
                self.ports.append(port)
                self.procs.append(
                    subprocess.Popen(
                        [REDIS_SERVER, str(conf), "--sentinel"],
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            self._wait_for(lambda: self._known(replicas=1, sentinels=2), "the group to form")
        except BaseException:
            self.stop()
            raise

    def sentinel(self) -> Any:
        import redis.sentinel

        return redis.sentinel.Sentinel([("127.0.0.1", p) for p in self.ports], socket_timeout=0.5)

    def master_for(self, **kwargs: Any) -> Any:
        kwargs.setdefault("socket_timeout", 0.5)
        return self.sentinel().master_for(self.SERVICE, **kwargs)

    def master_port(self) -> int | None:
        try:
            return int(self.sentinel().discover_master(self.SERVICE)[1])
        except Exception:
            return None

    def _known(self, replicas: int, sentinels: int) -> bool:
        import redis

        return all_answer(
            [lambda p=p: redis.Redis(port=p, socket_timeout=0.5) for p in self.ports],
            lambda c: (
                len(c.sentinel_slaves(self.SERVICE)) >= replicas
                and len(c.sentinel_sentinels(self.SERVICE)) >= sentinels
            ),
        )

    @staticmethod
    def _wait_for(ok: Any, what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not ok():
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            time.sleep(0.1)

    def kill_master(self) -> int:
        """SIGKILL the master; returns its port. Wait with :meth:`wait_failover`."""
        old = self.master_port()
        victim = self.master if old == self.master.port else self.replica
        victim.kill()
        return victim.port

    def wait_failover(self, old_port: int, timeout: float = 30.0) -> float:
        """Seconds until the sentinels name a new master."""
        start = time.monotonic()
        self._wait_for(lambda: self.master_port() not in (None, old_port), "the failover", timeout)
        return time.monotonic() - start

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=5)
        self.procs = []
        self.replica.stop()
        self.master.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> SentinelGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ClusterGroup:
    """A Redis Cluster of three masters on loopback (``--cluster-enabled yes``, made
    one with ``redis-cli --cluster create``), what managed Redis offerings run in
    cluster mode, small enough for a test. ``reshard()`` moves slots, with their
    keys, from one master to another while clients keep talking to the cluster."""

    def __init__(self, masters: int = 3, *, tls: Any = None) -> None:
        """``tls``: a trustme ``CA``; every node then speaks TLS only, to clients and
        on the cluster bus, with a certificate this CA issued."""
        self.nodes: list[RedisServer] = []
        self.tls_args: list[str] = []
        try:
            for _ in range(masters):
                self.nodes.append(
                    RedisServer(
                        tls=tls,
                        extra=[
                            *(["--tls-cluster", "yes"] if tls is not None else []),
                            "--cluster-enabled",
                            "yes",
                            "--cluster-config-file",
                            "nodes.conf",
                            "--cluster-node-timeout",
                            "2000",
                            "--cluster-port",
                            str(free_port()),
                        ],
                    )
                )
            files = self.nodes[0].tls_files
            if files is not None:
                self.tls_args = ["--tls", "--cacert", files["ca"]]
            self._cli(
                "--cluster",
                "create",
                *self.addresses,
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            )
            SentinelGroup._wait_for(self._ok, "the cluster to form")
        except BaseException:
            self.stop()
            raise

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{n.port}" for n in self.nodes]

    @property
    def url(self) -> str:
        """The ``redis+cluster://`` URL tlsresume reads (every node as a seed);
        ``rediss+cluster://...?ssl_ca_certs=CA`` with TLS."""
        files = self.nodes[0].tls_files
        if files is None:
            return "redis+cluster://" + ",".join(self.addresses)
        return f"rediss+cluster://{','.join(self.addresses)}?ssl_ca_certs={files['ca']}"

    def client(self, **kwargs: Any) -> Any:
        from redis.cluster import ClusterNode, RedisCluster

        files = self.nodes[0].tls_files
        if files is not None:
            kwargs.setdefault("ssl", True)
            kwargs.setdefault("ssl_ca_certs", files["ca"])
        kwargs.setdefault("socket_timeout", 2.0)
        kwargs.setdefault("socket_connect_timeout", 2.0)
        return RedisCluster(
            startup_nodes=[ClusterNode("127.0.0.1", n.port) for n in self.nodes], **kwargs
        )

    def _cli(self, *args: str, timeout: float = 60.0) -> str:
        redis_cli = shutil.which("redis-cli") or "/usr/bin/redis-cli"
        done = subprocess.run(
            [redis_cli, *self.tls_args, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli {' '.join(args)} failed: {done.stdout}{done.stderr}")
        return done.stdout

    def _ok(self) -> bool:
        def settled(client: Any) -> bool:
            info = client.execute_command("CLUSTER", "INFO")
            text = info.decode() if isinstance(info, bytes) else str(info)
            return "cluster_state:ok" in text and "cluster_slots_ok:16384" in text

        return all_answer([lambda n=n: n.client(socket_timeout=0.5) for n in self.nodes], settled)

    def node_id(self, index: int) -> str:
        client = self.nodes[index].client()
        try:
            return str(client.execute_command("CLUSTER", "MYID").decode())
        finally:
            client.close()

    def keys_per_node(self, pattern: str) -> list[int]:
        counts = []
        for node in self.nodes:
            client = node.client()
            try:
                counts.append(sum(1 for _ in client.scan_iter(match=pattern, count=1000)))
            finally:
                client.close()
        return counts

    def reshard(self, source: int, target: int, slots: int) -> None:
        """Move ``slots`` slots and their keys from master ``source`` to ``target``
        (``redis-cli --cluster reshard``: MIGRATING/IMPORTING, MIGRATE, SETSLOT)."""
        self._cli(
            "--cluster",
            "reshard",
            self.addresses[0],
            "--cluster-from",
            self.node_id(source),
            "--cluster-to",
            self.node_id(target),
            "--cluster-slots",
            str(slots),
            "--cluster-yes",
        )
        SentinelGroup._wait_for(self._ok, "the cluster to settle after resharding")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self.nodes = []

    def __enter__(self) -> ClusterGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
