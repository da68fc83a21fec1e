"""``tlsresume serve --redis``: real ``serve`` instances sharing one real
``redis-server`` (started on a free loopback port by :mod:`tests.redisutil`).

Each instance has its own process group, shared memory and port: they stand in for
machines behind a load balancer. A client hops between them (connection i goes to
instance i % 3, offering the session the previous connection ended with), so every
reconnection lands on another instance. With Redis nearly every one resumes; the
same instances without ``--redis`` (the negative control) resume none.

One file (over 500 lines): several ``serve --redis`` instances share module-wide
fleets and one redis-server.
"""

from __future__ import annotations

import os
import secrets
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import pytest

from .redisutil import RedisServer, free_port, redis_server_available
from .support import ServeProcess, child_env, client_context, https_get, server_stats, tlsresume_cmd

try:
    import redis  # noqa: F401  (redis-py: the backend's client)
except ModuleNotFoundError:  # pragma: no cover
    if redis_server_available():
        raise  # redis-server is here, so these tests must run: install tlsresume[test]
    pytest.skip("redis-server and redis-py are not installed", allow_module_level=True)
if not redis_server_available():  # pragma: no cover
    pytest.skip("redis-server is not installed", allow_module_level=True)

INSTANCES = 3
RECONNECTIONS = 40
# Session writes to Redis are queued to a writer thread, off the handshake: a client
# that reconnects to another instance within about a millisecond could beat the write
# (docs/redis.md, Limits). The session-ID client waits this long between connections.
WRITER_PAUSE = 0.02
SEALED = b"tlsr-sealed-1:"
UNSEALED = "--redis-insecure-unsealed"  # the tests' Redis is theirs alone


# --------------------------------------------------------------------------------------
# Instances and the hopping client
# --------------------------------------------------------------------------------------


def _name() -> str:
    """A service name of its own, so no two fleets share Redis keys."""
    return f"serve-{uuid.uuid4().hex[:10]}"


StartFleet = Callable[..., list[ServeProcess]]


def _fleet_factory(server_cert, started: list[ServeProcess]) -> StartFleet:  # type: ignore[no-untyped-def]
    def start(*args: str, count: int = INSTANCES, modes: Sequence[str] = ()) -> list[ServeProcess]:
        fleet = []
        cert = ["--cert", server_cert.cert, "--key", server_cert.key]
        seal = [] if "--redis-master-key-file" in args or "--redis" not in args else [UNSEALED]
        for i in range(count):
            spawn = ["--spawn"] if i < len(modes) and modes[i] == "spawn" else []
            server = ServeProcess.start(
                [*cert, "--workers", "2", *spawn, *args, *seal], new_session=True
            )
            started.append(server)
            fleet.append(server)
        return fleet

    return start


@pytest.fixture(scope="module")
def start_fleet_module(server_cert) -> Iterator[StartFleet]:  # type: ignore[no-untyped-def]
    """Start ``count`` instances of ``serve --workers 2 ARGS`` (module-wide)."""
    started: list[ServeProcess] = []
    yield _fleet_factory(server_cert, started)
    for server in started:
        server.stop()


@pytest.fixture
def start_fleet(server_cert) -> Iterator[StartFleet]:  # type: ignore[no-untyped-def]
    """Start ``count`` instances of ``serve --workers 2 ARGS`` for one test."""
    started: list[ServeProcess] = []
    yield _fleet_factory(server_cert, started)
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the module's fleets (each fleet has its own name)."""
    with RedisServer() as server:
        yield server


@dataclass
class Hops:
    """What a hopping client saw."""

    reconnections: int = 0
    resumed: int = 0
    per_instance: list[int] = field(default_factory=list)  # resumed, by instance


def hop(
    fleet: Sequence[ServeProcess],
    ctx: ssl.SSLContext,
    reconnections: int,
    *,
    pause: float = 0.0,
    settle: Callable[[ssl.SSLSession], None] | None = None,
    session: ssl.SSLSession | None = None,
    start: int = 0,
) -> tuple[Hops, ssl.SSLSession | None]:
    """Connection i goes to instance i % len(fleet), offering the session the
    previous connection ended with; ``pause`` seconds between connections, or
    ``settle(session)`` (e.g. wait until Redis holds it) before the next one."""
    hops = Hops(per_instance=[0] * len(fleet))
    for i in range(start, start + reconnections + (session is None)):
        server = fleet[i % len(fleet)]
        r = https_get(server.host, server.port, ctx, session=session)
        assert r.status_line.endswith("200 OK"), r.status_line
        assert int(r.headers["x-worker"]) in server.pids  # this instance answered
        assert r.headers["x-session-reused"] == ("yes" if r.resumed else "no")
        if session is not None:
            hops.reconnections += 1
            hops.resumed += r.resumed
            hops.per_instance[i % len(fleet)] += r.resumed
        session = r.session
        if pause:
            time.sleep(pause)
        if settle is not None and session is not None:
            settle(session)
    return hops, session


def in_redis(
    server: RedisServer, name: str, timeout: float = 2.0
) -> Callable[[ssl.SSLSession], None]:
    """A ``settle`` for :func:`hop`: wait until the session the client now holds is in
    Redis. Session writes are queued off the handshake (a documented limit: a client
    faster than the writer gets a full handshake), so a test of what crosses
    instances waits for the write instead of guessing a pause."""
    import tlsresume

    client = server.client()

    def settle(session: ssl.SSLSession) -> None:
        ids = {session.id.hex()}
        ticket = tlsresume.session_ticket(session)
        if ticket is not None and len(ticket) <= 32:  # a stateful ticket is the ID
            ids.add(ticket.hex())
        keys = [f"tlsresume:session:{name}:{i}" for i in ids]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not client.exists(*keys):
            time.sleep(0.002)

    return settle


def redis_name_of(fleet: Sequence[ServeProcess]) -> str:
    args = list(fleet[0].args)
    return args[args.index("--redis-name") + 1]


def same_instance_resumes(server: ServeProcess, ctx: ssl.SSLContext, n: int = 6) -> int:
    """Reconnections to one instance (its two workers share its ring and store)."""
    resumed, _ = hop([server], ctx, n)
    return resumed.resumed


def session_id_client(cafile: str, version: str) -> ssl.SSLContext:
    """A client that asks for no tickets (TLS 1.2: sessions by ID only)."""
    ctx = client_context(cafile, version)
    ctx.options |= ssl.OP_NO_TICKET
    return ctx


def stats_of(fleet: Sequence[ServeProcess], cafile: str) -> list[dict]:  # type: ignore[type-arg]
    return [server_stats(s.host, s.port, cafile) for s in fleet]


def store_total(stats: Sequence[dict], counter: str) -> int:  # type: ignore[type-arg]
    return sum(s["store"]["stats"][counter] for s in stats)


def ring_total(stats: Sequence[dict], counter: str) -> int:  # type: ignore[type-arg]
    return sum(s["ring"]["stats"][counter] for s in stats)


# --------------------------------------------------------------------------------------
# Three instances, tickets: with Redis, and the same three without
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ticket_fleet(start_fleet_module, redis_server) -> list[ServeProcess]:  # type: ignore[no-untyped-def]
    """Three `serve --workers 2 --redis URL --redis-name N` instances, tickets only."""
    return start_fleet_module(
        "--redis", redis_server.url, "--redis-name", _name(), "--no-session-cache"
    )


@pytest.fixture(scope="module")
def ticket_control(start_fleet_module) -> list[ServeProcess]:  # type: ignore[no-untyped-def]
    """The same three instances without --redis."""
    return start_fleet_module("--no-session-cache")


@pytest.mark.interop
@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_tickets_resume_across_three_instances(ticket_fleet, server_cert, version) -> None:  # type: ignore[no-untyped-def]
    """Tickets from any instance resume on the others: >= 39 of 40 hops resume."""
    fleet = ticket_fleet
    assert len({os.getpgid(s.proc.pid) for s in fleet} | {os.getpgid(0)}) == INSTANCES + 1
    assert len({s.ring_name for s in fleet}) == INSTANCES  # separate shared memory
    assert all(s.fields["redis"] == "on" for s in fleet)
    hops, _ = hop(fleet, client_context(server_cert.cafile, version), RECONNECTIONS)
    print(f"TLS {version} tickets, 3 instances with Redis: {hops}")
    assert hops.reconnections == RECONNECTIONS
    assert hops.resumed >= 39, hops
    assert all(n >= 12 for n in hops.per_instance), hops
    stats = stats_of(fleet, server_cert.cafile)
    assert ring_total(stats, "rejected_unknown") == 0
    syncs = [s["redis"]["key_sync"] for s in stats]
    assert all(k["redis_up"] and k["sync_failures"] == 0 for k in syncs), syncs
    assert sum(k["seeds"] for k in syncs) == 1  # one instance published, two adopted
    assert all(s["redis"]["session_tier"] is None for s in stats)  # no --session-cache


@pytest.mark.interop
@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_tickets_without_redis_control(ticket_control, server_cert, version) -> None:  # type: ignore[no-untyped-def]
    """Negative control: without --redis no hop resumes (every ticket is refused as
    unknown), though each instance resumes its own tickets."""
    fleet = ticket_control
    ctx = client_context(server_cert.cafile, version)
    before = ring_total(stats_of(fleet, server_cert.cafile), "rejected_unknown")
    hops, _ = hop(fleet, ctx, RECONNECTIONS)
    print(f"TLS {version} tickets, 3 instances without Redis: {hops}")
    assert hops.reconnections == RECONNECTIONS and hops.resumed == 0, hops
    after = stats_of(fleet, server_cert.cafile)
    assert ring_total(after, "rejected_unknown") - before >= RECONNECTIONS
    assert all(s["redis"] is None for s in after)
    assert same_instance_resumes(fleet[0], ctx) == 6


# --------------------------------------------------------------------------------------
# Three instances, session IDs with tickets off: with Redis, and without
# --------------------------------------------------------------------------------------

SESSION_ARGS = ("--session-cache", "1M", "--no-tickets")


@pytest.fixture(scope="module")
def session_fleet(start_fleet_module, redis_server) -> list[ServeProcess]:  # type: ignore[no-untyped-def]
    """Three `serve --workers 2 --session-cache 1M --no-tickets --redis URL` instances."""
    return start_fleet_module(*SESSION_ARGS, "--redis", redis_server.url, "--redis-name", _name())


@pytest.fixture(scope="module")
def session_control(start_fleet_module) -> list[ServeProcess]:  # type: ignore[no-untyped-def]
    """The same three instances without --redis."""
    return start_fleet_module(*SESSION_ARGS)


@pytest.mark.interop
def test_session_ids_resume_across_three_instances(  # type: ignore[no-untyped-def]
    session_fleet, redis_server, server_cert
) -> None:
    """Tickets off, TLS 1.2: sessions found by ID cross instances through Redis
    (>= 39 of 40 hops; the client waits for the queued Redis write, see in_redis)."""
    fleet = session_fleet
    assert all(s.ring_name is None and s.store_name is not None for s in fleet)
    before = store_total(stats_of(fleet, server_cert.cafile), "remote_hits")
    ctx = session_id_client(server_cert.cafile, "1.2")
    hops, _ = hop(fleet, ctx, RECONNECTIONS, settle=in_redis(redis_server, redis_name_of(fleet)))
    print(f"TLS 1.2 session IDs, 3 instances with Redis: {hops}")
    assert hops.resumed >= 39, hops
    stats = stats_of(fleet, server_cert.cafile)
    # A TLS 1.2 session keeps its ID: the two instances that did not make it fetch it
    # from Redis once each, then hold it locally.
    assert store_total(stats, "remote_hits") - before >= INSTANCES - 1
    for s in stats:
        assert s["redis"]["key_sync"] is None  # tickets off: no ring to sync
        assert s["redis"]["session_tier"]["redis_up"] is True


@pytest.mark.interop
def test_tls13_stateful_tickets_go_through_redis_on_every_hop(  # type: ignore[no-untyped-def]
    session_fleet, redis_server, server_cert
) -> None:
    """Tickets off, TLS 1.3: every resumption issues a new stateful ticket (a new
    ID), so each of >= 39 of 40 resumed hops is a Redis hit (waiting for the write
    as above)."""
    fleet = session_fleet
    before = store_total(stats_of(fleet, server_cert.cafile), "remote_hits")
    hops, _ = hop(
        fleet,
        session_id_client(server_cert.cafile, "1.3"),
        RECONNECTIONS,
        settle=in_redis(redis_server, redis_name_of(fleet)),
    )
    print(f"TLS 1.3 stateful tickets, 3 instances with Redis: {hops}")
    assert hops.resumed >= 39, hops
    remote = store_total(stats_of(fleet, server_cert.cafile), "remote_hits") - before
    assert remote >= hops.resumed, remote


@pytest.mark.interop
@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_session_ids_without_redis_control(session_control, server_cert, version) -> None:  # type: ignore[no-untyped-def]
    """Negative control: without --redis no hop resumes by session ID, though each
    instance resumes its own sessions."""
    fleet = session_control
    ctx = session_id_client(server_cert.cafile, version)
    hops, _ = hop(fleet, ctx, RECONNECTIONS, pause=WRITER_PAUSE)
    print(f"TLS {version} session IDs, 3 instances without Redis: {hops}")
    assert hops.reconnections == RECONNECTIONS and hops.resumed == 0, hops
    assert same_instance_resumes(fleet[0], ctx) == 6


# --------------------------------------------------------------------------------------
# Password, master key, --spawn; starting without Redis; refusals
# --------------------------------------------------------------------------------------


def _cmdline(pid: int) -> bytes:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read()


def _redis_values(server: RedisServer, name: str) -> dict[bytes, bytes]:
    client = server.client()
    try:
        keys = [k for k in client.scan_iter(match=f"tlsresume:*:{name}*")]
        return {k: client.get(k) for k in keys}
    finally:
        client.close()


@pytest.mark.interop
def test_password_url_master_key_and_spawn(start_fleet, server_cert, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A password URL and a master key file work end to end (a forked and a spawned
    instance resume each other's tickets and sessions); Redis holds only sealed values;
    the master key shows in no argv, neither secret in the output."""
    password = secrets.token_hex(12)
    key_file = tmp_path / "master.key"
    key_file.write_text(secrets.token_hex(32) + "\n")
    key_file.chmod(0o600)
    master_key = key_file.read_text().strip()
    name = _name()
    with RedisServer(password=password) as rs:
        fleet = start_fleet(
            "--session-cache",
            "1M",
            "--redis",
            rs.url,
            "--redis-name",
            name,
            "--redis-master-key-file",
            str(key_file),
            count=2,
            modes=("fork", "spawn"),
        )
        assert [s.fields["mode"] for s in fleet] == ["fork", "spawn"]
        tickets, _ = hop(fleet, client_context(server_cert.cafile, "1.3"), 10)
        ids, _ = hop(
            fleet, session_id_client(server_cert.cafile, "1.2"), 10, settle=in_redis(rs, name)
        )
        assert tickets.resumed == 10 and ids.resumed == 10, (tickets, ids)
        spawned = server_stats(fleet[1].host, fleet[1].port, server_cert.cafile)["redis"]
        assert spawned["url"] == f"redis://:***@127.0.0.1:{rs.port}/0"
        assert spawned["key_sync"] is None and spawned["session_tier"]["redis_up"] is True
        values = _redis_values(rs, name)
        assert f"tlsresume:ring:{name}".encode() in values
        sessions = [k for k in values if k.startswith(f"tlsresume:session:{name}:".encode())]
        assert len(sessions) >= 2  # the check canary and at least one session
        assert all(v.startswith(SEALED) for v in values.values()), values
        for server in fleet:  # forked workers show the master's argv, which has the URL
            assert all(master_key.encode() not in _cmdline(p) for p in server.pids)
        assert all(password.encode() not in _cmdline(p) for p in fleet[1].pids)  # spawned
        for server in fleet:
            assert server.stop() == 0
            out = server.stdout_text + server.stderr_text()
            assert password not in out and master_key not in out
            assert "sealed=yes" in out and "redis key_sync stats: syncs=" in out
            assert "redis session_tier stats (master and 2 workers): gets=" in out


@pytest.mark.interop
def test_redis_down_at_start_then_converges(start_fleet, server_cert) -> None:  # type: ignore[no-untyped-def]
    """Redis down at start: instances start with a warning and their own keys (no hop
    resumes); once Redis is up they converge within two refresh periods."""
    rs = RedisServer()
    try:
        rs.kill()
        refresh = 0.2
        fleet = start_fleet(
            "--redis", rs.url, "--redis-name", _name(), "--redis-refresh", str(refresh), count=2
        )
        for server in fleet:
            assert "Redis is not reachable yet" in server.stdout_text
            assert "cannot sync ticket keys with Redis" in server.stderr_text()
        ctx = client_context(server_cert.cafile, "1.3")
        before, session = hop(fleet, ctx, 4)
        assert before.resumed == 0, before  # each instance has its own keys
        assert same_instance_resumes(fleet[0], ctx) == 6
        rs.restart()
        back = time.monotonic()
        streak, i, since = 0, 5, 0.0
        while streak < 6 and time.monotonic() - back < 5.0:
            tried = time.monotonic()
            r, session = hop(fleet, ctx, 1, session=session, start=i)
            i += 1
            if r.resumed:
                since = since if streak else tried
                streak += 1
            else:
                streak = 0
        assert streak >= 6, "the instances did not converge"
        print(f"hops resume again {(since - back) * 1000:.0f} ms after Redis came up")
        assert since - back <= 2 * refresh + 0.1  # and every hop after it resumed
        stats = stats_of(fleet, server_cert.cafile)
        assert all(s["redis"]["key_sync"]["redis_up"] for s in stats)
    finally:
        rs.stop()


def _serve_exit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        tlsresume_cmd("serve", "--port", "0", "--workers", "1", *args),
        capture_output=True,
        text=True,
        timeout=30,
        env=child_env(),
    )


def test_start_refused_clearly(server_cert, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A wrong or missing password, a URL scheme redis-py does not know, and a master
    key that does not match the fleet's each stop the start: exit 1, a clear message,
    no password in it."""
    cert = ["--cert", server_cert.cert, "--key", server_cert.key]
    password = secrets.token_hex(12)
    with RedisServer(password=password) as rs:
        wrong = rs.url.replace(password, "not-" + password[:6])
        for url in (wrong, rs.url.replace(f":{password}@", "")):
            proc = _serve_exit(*cert, "--redis", url, UNSEALED)
            assert proc.returncode == 1, proc
            assert "refused the credentials" in proc.stderr or "uthentication" in proc.stderr
            assert password[:6] not in proc.stderr + proc.stdout
            assert "listening on" not in proc.stdout
        name = _name()
        keys = []
        for i in range(2):
            keys.append(tmp_path / f"key{i}")
            keys[-1].write_text(secrets.token_hex(32))
            keys[-1].chmod(0o600)
        first = ServeProcess.start(
            [
                *cert,
                "--workers",
                "1",
                "--redis",
                rs.url,
                "--redis-name",
                name,
                "--redis-master-key-file",
                str(keys[0]),
            ]
        )
        assert first.stop() == 0
        proc = _serve_exit(
            *cert, "--redis", rs.url, "--redis-name", name, "--redis-master-key-file", str(keys[1])
        )
        assert proc.returncode == 1 and "master key" in proc.stderr, proc
    proc = _serve_exit(*cert, "--redis", f"http://127.0.0.1:{free_port()}/0", UNSEALED)
    assert proc.returncode == 1 and "--redis http://" in proc.stderr, proc
    assert "scheme" in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--redis", "redis://127.0.0.1:1/0", "--no-share"], "--no-share"),
        (["--redis-name", "shop"], "--redis-name needs --redis"),
        (["--redis-master-key-file", "k"], "--redis-master-key-file needs --redis"),
        (
            ["--redis", "redis://127.0.0.1:1/0", "--no-tickets", "--no-session-cache"],
            "--session-cache",
        ),
        (["--redis", "redis://x/0", "--rotate", "4", "--redis-refresh", "4"], "--redis-refresh"),
        (["--redis", "redis://x/0", "--redis-timeout-ms", "0"], "--redis-timeout-ms"),
        (["--redis", "redis://x/0", "--redis-name", "a b"], "--redis-name"),
        (
            ["--redis", "redis://x/0", "--no-tickets", *SESSION_ARGS[:2], "--redis-local-rotation"],
            "--redis-local-rotation",
        ),
        (["--redis", "redis://x/0"], "--redis-master-key-file FILE"),
        (["--redis", "redis://x/0"], "--redis-insecure-unsealed"),
        (["--redis", "redis://x/0", UNSEALED, "--redis-master-key-file", "k"], "choose one"),
        (["--redis", "redis://x/0", UNSEALED, "--redis-new-master-key"], "needs --redis-master"),
        ([UNSEALED], "--redis-insecure-unsealed needs --redis"),
    ],
)
def test_inconsistent_redis_options_are_usage_errors(args, message, capsys) -> None:  # type: ignore[no-untyped-def]
    """--redis options that contradict or would do nothing exit 2 before anything is
    bound, forked or connected, naming the option."""
    from tlsresume.tools.cli import main

    assert main(["serve", "--port", "0", *args]) == 2
    assert message in capsys.readouterr().err


def test_redis_url_from_environment_keeps_password_off_argv(server_cert) -> None:  # type: ignore[no-untyped-def]
    """`--redis env` reads the URL from TLSRESUME_REDIS_URL: two instances share
    tickets through a password-protected Redis, and the password is on no command line
    of master or workers; without the variable it is a clear error."""
    import sys

    password = secrets.token_hex(12)
    name = _name()
    with RedisServer(password=password) as rs:
        env = child_env(TLSRESUME_REDIS_URL=rs.url)
        args = [
            "--cert",
            server_cert.cert,
            "--key",
            server_cert.key,
            "--workers",
            "2",
            "--redis",
            "env",
            "--redis-name",
            name,
            UNSEALED,
        ]
        fleet = [ServeProcess.start(args, env=env, new_session=True) for _ in range(2)]
        try:
            tickets, _ = hop(fleet, client_context(server_cert.cafile, "1.3"), 10)
            assert tickets.resumed == 10, tickets
            for server in fleet:
                assert all(password.encode() not in _cmdline(p) for p in server.pids)
        finally:
            for server in fleet:
                server.stop()
    env = {k: v for k, v in os.environ.items() if k != "TLSRESUME_REDIS_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "tlsresume", "serve", "--port", "0", "--redis", "env"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode != 0 and "TLSRESUME_REDIS_URL" in result.stderr


# --------------------------------------------------------------------------------------
# The master forks without threads of its own, and still rotates through Redis
# --------------------------------------------------------------------------------------


@pytest.mark.skipif(
    sys.version_info < (3, 12), reason="CPython warns about fork with threads from 3.12"
)
def test_master_syncs_from_its_loop_and_forks_without_threads(  # type: ignore[no-untyped-def]
    redis_server, server_cert
) -> None:
    """serve --redis runs the key sync from the master's loop and leaves the
    session tier's writer to the workers, so starting and restarting workers never
    forks a multi-threaded process (CPython 3.12+ warns: 'This process ... is
    multi-threaded, use of fork() may lead to deadlocks in the child'). The loop
    still rotates the fleet's ring in Redis every period (1 s here). Control: the
    library's threaded sync, in a process that then forks, gets the warning."""
    import json

    from .support import fork_warning_of, kill_one_worker_and_wait_refill

    name = _name()
    env = {**child_env(), "PYTHONWARNINGS": "always::DeprecationWarning"}
    args = ["--cert", server_cert.cert, "--key", server_cert.key, "--workers", "2"]
    args += ["--redis", redis_server.url, "--redis-name", name, "--redis-refresh", "0.2", UNSEALED]
    server = ServeProcess.start([*args, "--rotate", "1"], env=env)
    client = redis_server.client()
    try:
        first = json.loads(client.get(f"tlsresume:ring:{name}"))["generation"]
        ctx = client_context(server_cert.cafile, "1.3")
        assert same_instance_resumes(server, ctx) == 6
        kill_one_worker_and_wait_refill(server)
        time.sleep(2.5)
        later = json.loads(client.get(f"tlsresume:ring:{name}"))["generation"]
    finally:
        server.stop()
    assert later - first >= 2, (first, later)  # rotated from the master's loop
    assert "multi-threaded" not in server.stderr_text(), server.stderr_text()

    control = (
        "import os, tlsresume, tlsresume.redis as r\n"
        "ring = tlsresume.TicketKeyRing(session_cache=False)\n"
        f"link = r.connect_server({redis_server.url!r}, ring=ring, name={name + '-c'!r},\n"
        "                         insecure_unsealed=True)\n"
        "pid = os.fork()\n"
        "os._exit(0) if pid == 0 else os.waitpid(pid, 0)\n"
        "link.stop()\n"
    )
    assert fork_warning_of(control)


# --------------------------------------------------------------------------------------
# Sealed by default
# --------------------------------------------------------------------------------------


def test_new_master_key_for_a_first_try(start_fleet, redis_server, server_cert, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """--redis-new-master-key makes the key file (0600) and says where; a second
    instance given the same file joins the fleet (tickets resume across both), and
    Redis holds only sealed values. The refusal without a key or the opt-out is in
    test_inconsistent_redis_options_are_usage_errors."""
    key_file = tmp_path / "fleet" / "master.key"
    key_file.parent.mkdir()
    name = _name()
    args = ["--redis", redis_server.url, "--redis-name", name]
    args += ["--redis-master-key-file", str(key_file)]
    (first,) = start_fleet(*args, "--redis-new-master-key", count=1)
    assert f"wrote a new Redis master key to {key_file}" in first.stdout_text
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = key_file.read_text()
    (second,) = start_fleet(*args, "--redis-new-master-key", count=1)
    assert "wrote a new Redis master key" not in second.stdout_text  # it exists: used
    assert key_file.read_text() == key
    tickets, _ = hop([first, second], client_context(server_cert.cafile, "1.3"), 6)
    assert tickets.resumed == 6, tickets
    values = _redis_values(redis_server, name)
    assert values and all(v.startswith(SEALED) for v in values.values()), values
