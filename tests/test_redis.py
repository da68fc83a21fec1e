"""Redis across machines: the fleet's ticket keys (KeySync) and sessions
(SessionTier), against a real ``redis-server`` started per test on a free loopback
port. Separate rings and stores, each with its own sync and tier, stand in for
machines; the main tests put each behind its own pre-fork server.

One file (over 500 lines): the fleet API against one real redis-server per
test, sharing the machines and hopping helpers; Sentinel lives in its own file.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import os
import ssl
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import trustme

from .redisutil import RedisServer, free_port, redis_server_available

try:
    import redis  # noqa: F401  (redis-py: the backend's client)
except ModuleNotFoundError:  # pragma: no cover
    if redis_server_available():
        raise  # redis-server is here, so these tests must run: install tlsresume[test]
    pytest.skip("redis-server and redis-py are not installed", allow_module_level=True)
if not redis_server_available():  # pragma: no cover
    pytest.skip("redis-server is not installed", allow_module_level=True)

import tlsresume  # noqa: E402
from tlsresume import KeyRecord, SessionStore, TicketKey, TicketKeyRing  # noqa: E402
from tlsresume.redis import (  # noqa: E402
    DEFAULT_REFRESH,
    KeySync,
    MasterKeyError,
    RedisBackendError,
    RingState,
    SessionTier,
    _Sealer,
    connect_server,
    decode_state,
    encode_state,
    generate_master_key,
    rotate_state,
    seed_state,
)

from .handshake import fetch, memory_pair, prefork, server_context, wait_until  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    # Machines run their sync threads in this process, then fork pre-fork workers,
    # as a pre-fork master does; the children never use those threads.
    "ignore:This process .* is multi-threaded:DeprecationWarning"
)

TLS12, TLS13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3
REFRESH = 0.2


# ======================================================================================
# Fixtures and helpers
# ======================================================================================


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh redis-server for one test; stopped (even if paused) at teardown."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def cert(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("localhost")


@pytest.fixture
def name() -> str:
    """A service name of its own, so no two tests share Redis keys."""
    return f"t-{uuid.uuid4().hex[:10]}"


def client_ctx(
    ca: trustme.CA, version: ssl.TLSVersion | None = None, tickets: bool = True
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(ctx)
    if version is not None:
        ctx.maximum_version = version
    if not tickets:
        ctx.options |= ssl.OP_NO_TICKET
    return ctx


def make_server_ctx(
    cert: trustme.LeafCert,
    ring: TicketKeyRing | None,
    store: SessionStore | None,
    tickets: bool = True,
    version: ssl.TLSVersion | None = None,
) -> ssl.SSLContext:
    ctx = server_context(cert, None, version)
    if not tickets:
        ctx.options |= ssl.OP_NO_TICKET
        ring = None
    if ring is not None or store is not None:
        tlsresume.install(ctx, ring, session_cache=store)
    return ctx


@dataclass
class Machine:
    """One "machine": its own ring, store, Redis link and pre-fork server."""

    ring: TicketKeyRing
    store: SessionStore
    link: tlsresume.redis.RedisLink | None
    port: int = 0


@contextmanager
def fleet(
    cert: trustme.LeafCert,
    url: str | None,
    name: str,
    *,
    tickets: bool = True,
    machines: int = 3,
    workers: int = 2,
    version: ssl.TLSVersion | None = None,
    rotation_period: float = 3600.0,
    **link: object,
) -> Iterator[list[Machine]]:
    """``machines`` separate rings and stores, each linked to Redis at ``url``
    (``None``: not linked, the negative control) before its pre-fork server forks
    its workers, as ``serve --redis`` does."""
    out = []
    with ExitStack() as stack:
        for _ in range(machines):
            ring = TicketKeyRing(rotation_period=rotation_period)
            store = SessionStore("1M")
            stack.callback(ring.close)
            stack.callback(store.close)
            handle = None
            if url is not None:
                link.setdefault("refresh", REFRESH)
                if "master_key" not in link:
                    link.setdefault("insecure_unsealed", True)
                handle = connect_server(
                    url, ring=ring if tickets else None, store=store, name=name, **link
                )  # type: ignore[arg-type]
                stack.callback(handle.stop)
            m = Machine(ring, store, handle)

            def make(m: Machine = m) -> ssl.SSLContext:
                return make_server_ctx(cert, m.ring, m.store, tickets, version)

            m.port = stack.enter_context(prefork(make, workers=workers)).port
            out.append(m)
        yield out


@dataclass
class Run:
    reconnections: int = 0
    resumed: int = 0
    failed: int = 0
    cross: int = 0  # reconnections that reached another machine


def across(
    machines: list[Machine],
    client: ssl.SSLContext,
    n: int,
    session: ssl.SSLSession | None = None,
    run: Run | None = None,
    start: int = 0,
) -> tuple[Run, ssl.SSLSession | None]:
    """n reconnections, each to the next machine, each offering the session the
    previous connection ended with. A failed handshake is counted, not raised."""
    run = run or Run()
    for i in range(start, start + n + (session is None)):
        m = machines[i % len(machines)]
        try:
            new, resumed, _pid = fetch(m.port, client, session)
        except (OSError, ssl.SSLError, ValueError):
            run.failed += 1
            continue
        if session is not None:
            run.reconnections += 1
            run.resumed += resumed
            run.cross += 1
        session = new
    return run, session


def ring_totals(machines: list[Machine]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for m in machines:
        for k, v in m.ring.stats().items():
            totals[k] = totals.get(k, 0) + v
    return totals


def fleet_state(server: RedisServer, name: str) -> RingState:
    client = server.client()
    try:
        raw = client.get(f"tlsresume:ring:{name}")
    finally:
        client.close()
    assert raw is not None
    return decode_state(raw)


# ======================================================================================
# The ring's encoding in Redis (the rules themselves: tests/test_policy.py)
# ======================================================================================


def _state(now: float, period: float = 10.0, window: float = 20.0) -> RingState:
    return seed_state([KeyRecord(TicketKey.generate(), "current", now, now)], period, window, now)


def test_state_round_trips_and_garbage_is_refused() -> None:
    """The Redis encoding keeps every key, role and time; other data is refused with
    the backend's error, naming where it was read (the rules: tests/test_policy.py)."""
    state = rotate_state(_state(100.0), 110.0, TicketKey.generate(48), "n1")
    assert decode_state(encode_state(state)) == state
    for junk in (b"hello", b"{}", b'{"format":"tlsresume-ring","version":9}'):
        with pytest.raises(RedisBackendError, match="not a tlsresume key ring"):
            decode_state(junk)


def test_master_key_formats() -> None:
    """A master key is 32 bytes, given raw, as 64 hex digits or base64; nothing else."""
    raw = os.urandom(32)
    sealers = [
        tlsresume.redis._Sealer(k, b"ring")
        for k in (raw, raw.hex(), base64.b64encode(raw).decode(), raw.hex().encode() + b"\n")
    ]
    assert len({s.kid for s in sealers}) == 1
    assert len(generate_master_key()) == 64
    for bad in ("short", os.urandom(31), "zz" * 32):
        with pytest.raises(ValueError, match="32 random bytes"):
            tlsresume.redis._Sealer(bad, b"ring")


def test_seal_binds_key_and_place() -> None:
    """Sealed values open only with the same master key and at the same Redis key."""
    a = tlsresume.redis._Sealer(generate_master_key(), b"session")
    b = tlsresume.redis._Sealer(generate_master_key(), b"session")
    blob = a.seal(b"secret", b"k1")
    assert a.open(blob, b"k1") == b"secret"
    with pytest.raises(MasterKeyError, match="master key id"):
        b.open(blob, b"k1")
    with pytest.raises(RedisBackendError, match="failed authentication"):
        a.open(blob, b"k2")


# ======================================================================================
# Key sync against a real Redis (in-memory handshakes)
# ======================================================================================


def test_first_node_publishes_and_the_others_adopt(redis_server: RedisServer, name: str) -> None:
    """The first node's keys become the fleet's; every later node mirrors them."""
    rings = [TicketKeyRing() for _ in range(3)]
    syncs = [
        KeySync(
            r, redis_server.url, name=name, refresh=REFRESH, start=False, insecure_unsealed=True
        )
        for r in rings
    ]
    try:
        assert [s.stats()["seeds"] for s in syncs] == [1, 0, 0]
        keys = [[(k.name, k.role) for k in r.keys()] for r in rings]
        assert keys[0] == keys[1] == keys[2]
        assert [role for _, role in keys[0]] == ["current", "next"]
        assert not rings[0].auto_rotate  # Redis decides rotation now
    finally:
        for s in syncs:
            s.stop()
        for r in rings:
            r.close()


def test_exactly_one_node_rotates_per_period(redis_server: RedisServer, name: str) -> None:
    """Nodes racing at the same instant past the period: the transaction lets one
    rotate, the others adopt its keys."""
    rings = [TicketKeyRing(rotation_period=60) for _ in range(6)]
    syncs = [
        KeySync(r, redis_server.url, name=name, refresh=1, start=False, insecure_unsealed=True)
        for r in rings
    ]
    try:
        start = fleet_state(redis_server, name).current.activated or 0.0
        for period in range(1, 4):
            at = start + 60 * period + 0.5
            barrier = threading.Barrier(len(syncs))

            def go(s: KeySync, at: float = at, barrier: threading.Barrier = barrier) -> None:
                barrier.wait()
                s.sync(now=at)

            threads = [threading.Thread(target=go, args=(s,)) for s in syncs]
            for t in threads:
                t.start()
            for t in threads:
                t.join(10)
            assert sum(s.stats()["rotations"] for s in syncs) == period
            assert len({r.keys()[-2].name for r in rings}) == 1  # one current everywhere
        assert fleet_state(redis_server, name).generation == 4
    finally:
        for s in syncs:
            s.stop()
        for r in rings:
            r.close()


def test_forked_workers_see_the_masters_sync_stats(redis_server: RedisServer, name: str) -> None:
    """The syncer's counters live in shared memory: a worker forked before a sync
    reports it (a pre-fork server's stats URL is answered by workers); a worker
    cannot sync itself."""
    ring = TicketKeyRing()
    sync = KeySync(
        ring, redis_server.url, name=name, refresh=1, start=False, insecure_unsealed=True
    )
    try:
        go_r, go_w = os.pipe()
        out_r, out_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # a worker
            code = 1
            try:
                os.read(go_r, 1)
                try:
                    sync.sync()
                except tlsresume.TLSResumeError:
                    code = 0 if sync.stats()["syncs"] == 3 else 2
                sync.stop()  # harmless in a child
            finally:
                os.write(out_w, bytes([code]))
                os._exit(code)
        sync.sync()
        sync.sync()
        os.write(go_w, b"x")
        assert os.read(out_r, 1) == b"\x00"
        assert os.waitpid(pid, 0)[1] == 0
        for fd in (go_r, go_w, out_r, out_w):
            os.close(fd)
        assert sync.stats()["syncs"] == 3
    finally:
        sync.stop()
        ring.close()


def test_a_late_node_accepts_fresh_tickets(
    redis_server: RedisServer, name: str, cert: trustme.LeafCert, ca: trustme.CA
) -> None:
    """After a rotation only one node has seen, tickets cross both ways: the late node
    holds the new current key as its next, the other the old one as retired."""
    ra, rb = TicketKeyRing(rotation_period=60), TicketKeyRing(rotation_period=60)
    a = KeySync(ra, redis_server.url, name=name, refresh=1, start=False, insecure_unsealed=True)
    b = KeySync(rb, redis_server.url, name=name, refresh=1, start=False, insecure_unsealed=True)
    try:
        a.sync(now=time.time() + 61)  # A rotates; B has not polled
        assert a.stats()["rotations"] == 1
        assert ra.keys()[-2].name == rb.keys()[-1].name  # A's current is B's next
        client = client_ctx(ca)
        ctx_a, ctx_b = make_server_ctx(cert, ra, None), make_server_ctx(cert, rb, None)
        s_a, _ = memory_pair(ctx_a, client)
        assert memory_pair(ctx_b, client, s_a)[1]
        s_b, _ = memory_pair(ctx_b, client)
        assert memory_pair(ctx_a, client, s_b)[1]
        for ring in (ra, rb):
            assert ring.stats()["rejected_unknown"] == 0
    finally:
        a.stop()
        b.stop()
        ra.close()
        rb.close()


def test_keys_sealed_in_redis_are_not_plaintext(redis_server: RedisServer, name: str) -> None:
    """With a master key, no secret of any key appears in Redis, raw or encoded, and
    a node with the same master key mirrors the keys."""
    master = generate_master_key()
    ra, rb = TicketKeyRing(), TicketKeyRing()
    with (
        KeySync(ra, redis_server.url, name=name, master_key=master, start=False),
        KeySync(rb, redis_server.url, name=name, master_key=master, start=False),
    ):
        raw = redis_server.client().get(f"tlsresume:ring:{name}")
        assert raw.startswith(b"tlsr-sealed-1:")
        for record in ra.records():
            for secret in (record.key.hmac_key, record.key.aes_key):
                for form in (
                    secret,
                    secret.hex().encode(),
                    base64.b64encode(secret),
                    base64.b64encode(secret)[:20],
                ):
                    assert form not in raw
        assert [k.name for k in ra.keys()] == [k.name for k in rb.keys()]
    ra.close()
    rb.close()


def test_wrong_or_missing_master_key_is_refused_clearly(
    redis_server: RedisServer, name: str
) -> None:
    """A node with another master key, none, or one where the fleet has none, refuses
    to start with a message that says so; a later mismatch is a logged warning."""
    ring = TicketKeyRing()
    with KeySync(ring, redis_server.url, name=name, master_key=generate_master_key(), start=False):
        with pytest.raises(MasterKeyError, match="master key id .* every node needs the same"):
            KeySync(TicketKeyRing(), redis_server.url, name=name, master_key=generate_master_key())
        with pytest.raises(MasterKeyError, match="sealed under a master key"):
            KeySync(TicketKeyRing(), redis_server.url, name=name, insecure_unsealed=True)
    with KeySync(ring, redis_server.url, name=name + "-plain", start=False, insecure_unsealed=True):
        with pytest.raises(MasterKeyError, match="not sealed, but this node has a master key"):
            KeySync(
                TicketKeyRing(),
                redis_server.url,
                name=name + "-plain",
                master_key=generate_master_key(),
            )
    ring.close()


def test_wrong_master_key_later_keeps_keys_and_warns(
    redis_server: RedisServer, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """If the ring in Redis turns out sealed under another key later, the node keeps
    serving with its keys and logs a warning (never raising into the server)."""
    ring = TicketKeyRing()
    sync = KeySync(ring, redis_server.url, name=name, master_key=generate_master_key(), start=False)
    before = [k.name for k in ring.keys()]
    client = redis_server.client()
    client.delete(f"tlsresume:ring:{name}")
    KeySync(
        TicketKeyRing(), redis_server.url, name=name, master_key=generate_master_key(), start=False
    ).stop()
    with caplog.at_level(logging.WARNING, "tlsresume"):
        sync._attempt(time.time(), raise_errors=False)
    assert "master key id" in caplog.text
    assert [k.name for k in ring.keys()] == before
    assert sync.stats()["sync_failures"] == 1
    sync.stop()
    ring.close()


def test_password_and_tls_urls(ca: trustme.CA, name: str, cert: trustme.LeafCert) -> None:
    """redis://:password@... and rediss://...?ssl_ca_certs=... work for keys and
    sessions; a wrong password is refused clearly at start."""
    with RedisServer(password="s3cret") as plain, RedisServer(password="s3cret", tls=ca) as tls:
        for server in (plain, tls):
            assert server.url.startswith("rediss://" if server is tls else "redis://:s3cret@")
            rings = [TicketKeyRing(), TicketKeyRing()]
            stores = [SessionStore("1M"), SessionStore("1M")]
            links = [
                connect_server(
                    server.url, ring=r, store=s, name=name, refresh=REFRESH, insecure_unsealed=True
                )
                for r, s in zip(rings, stores, strict=True)
            ]
            try:
                assert rings[0].keys()[-2].name == rings[1].keys()[-2].name
                client = client_ctx(ca, TLS12, tickets=False)
                ctxs = [
                    make_server_ctx(cert, None, s, tickets=False, version=TLS12) for s in stores
                ]
                session, _ = memory_pair(ctxs[0], client)
                first, second = (link.session_tier for link in links)
                assert first is not None and second is not None
                assert first.flush(2)
                assert wait_until(lambda t=second: t.stats()["idle"] > 0, 2)  # type: ignore[misc]
                assert memory_pair(ctxs[1], client, session)[1]
            finally:
                for link in links:
                    link.stop()
            bad = server.url.replace("s3cret", "wrong")
            with pytest.raises(RedisBackendError, match="refused the credentials"):
                connect_server(bad, ring=rings[0], name=name, insecure_unsealed=True)
            with pytest.raises(RedisBackendError, match="refused the credentials"):
                connect_server(bad, store=stores[0], name=name, insecure_unsealed=True)
            for region in (*rings, *stores):
                region.close()


def test_redis_down_at_start(name: str, caplog: pytest.LogCaptureFixture) -> None:
    """No Redis at start: the node serves with its own keys and says so; with
    require_redis=True it refuses to start."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    ring = TicketKeyRing()
    with caplog.at_level(logging.WARNING, "tlsresume"):
        sync = KeySync(ring, url, name=name, refresh=REFRESH, timeout=0.2, insecure_unsealed=True)
    assert "cannot sync ticket keys" in caplog.text
    assert sync.stats()["redis_up"] is False and sync.stats()["sync_failures"] == 1
    assert "serving with the keys this node has" in caplog.text
    sync.stop()
    caplog.clear()
    with caplog.at_level(logging.WARNING, "tlsresume"):
        with pytest.raises(RedisBackendError, match="cannot reach Redis.*drop require_redis"):
            KeySync(
                ring,
                url,
                name=name,
                refresh=REFRESH,
                timeout=0.2,
                require_redis=True,
                insecure_unsealed=True,
            )
        with pytest.raises(RedisBackendError, match="cannot reach Redis"):
            connect_server(
                url,
                ring=ring,
                name=name,
                refresh=REFRESH,
                require_redis=True,
                insecure_unsealed=True,
            )
    # It does not serve on, so it must not say it does.
    assert "serving with the keys" not in caplog.text, caplog.text
    ring.close()


def test_garbage_answers_at_start_are_an_unreachable_redis(name: str, caplog) -> None:  # type: ignore[no-untyped-def]
    """Something that is not Redis answers on the port (protocol garbage): the node
    starts and serves with its own keys, as with Redis down; require_redis refuses."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def answer_garbage() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1.0)
                try:
                    conn.recv(4096)
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                except OSError:
                    pass

    thread = threading.Thread(target=answer_garbage, daemon=True)
    thread.start()
    url = f"redis://127.0.0.1:{port}/0"
    ring = TicketKeyRing()
    try:
        with caplog.at_level(logging.WARNING, "tlsresume"):
            sync = KeySync(
                ring, url, name=name, refresh=REFRESH, timeout=0.5, insecure_unsealed=True
            )
        assert sync.stats()["redis_up"] is False and sync.stats()["sync_failures"] == 1
        assert "serving with the keys this node has" in caplog.text
        sync.stop()
        with pytest.raises(RedisBackendError, match="cannot reach Redis"):
            KeySync(
                ring,
                url,
                name=name,
                refresh=REFRESH,
                timeout=0.5,
                require_redis=True,
                insecure_unsealed=True,
            )
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
        ring.close()


def test_bad_arguments() -> None:
    """Refresh must be shorter than the period; a link needs a ring or a store."""
    with pytest.raises(ValueError, match="shorter than the rotation period"):
        KeySync(
            TicketKeyRing(rotation_period=1),
            "redis://127.0.0.1:1/0",
            refresh=1,
            insecure_unsealed=True,
        )
    with pytest.raises(ValueError, match="a ring, a store or both"):
        connect_server("redis://127.0.0.1:1/0", insecure_unsealed=True)
    with pytest.raises(ValueError, match="timeout"):
        SessionTier("redis://127.0.0.1:1/0", timeout=0, insecure_unsealed=True)


def test_outage_with_local_rotation_then_convergence(
    redis_server: RedisServer, name: str, cert: trustme.LeafCert, ca: trustme.CA
) -> None:
    """Redis down with local_rotation: rings rotate by themselves; when Redis is back
    (empty) they converge on one ring within two refresh periods, and each node keeps
    the keys it encrypted with, so its outage tickets still resume there."""
    period = 0.6
    rings = [TicketKeyRing(rotation_period=period) for _ in range(2)]
    syncs = [
        KeySync(
            r,
            redis_server.url,
            name=name,
            refresh=0.1,
            timeout=0.1,
            local_rotation=True,
            insecure_unsealed=True,
        )
        for r in rings
    ]
    client = client_ctx(ca)
    ctxs = [make_server_ctx(cert, r, None) for r in rings]
    try:
        redis_server.kill()
        assert wait_until(lambda: all(s.stats()["local_rotation_active"] for s in syncs), 2)
        for rotation in range(2):
            time.sleep(1.1 * period)
            for ctx in ctxs:  # a handshake rotates its ring when due
                memory_pair(ctx, client)
            currents = {r.keys()[-2].name for r in rings}
            # The first local rotation promotes the pre-published next key on every
            # node alike; only the keys drawn locally after it differ.
            assert len(currents) == (1 if rotation == 0 else 2)
        outage_session, _ = memory_pair(ctxs[0], client)
        redis_server.restart()
        restarted = time.monotonic()
        assert wait_until(
            lambda: (
                len({r.keys()[-2].name for r in rings}) == 1
                and not any(r.auto_rotate for r in rings)
            ),
            2 * 0.1 + 0.3,
        )
        converged = time.monotonic() - restarted
        assert converged <= 2 * 0.1 + 0.3
        assert memory_pair(ctxs[0], client, outage_session)[1]
        assert rings[0].stats()["rejected_unknown"] == 0
        assert not any(s.stats()["local_rotation_active"] for s in syncs)
    finally:
        for s in syncs:
            s.stop()
        for r in rings:
            r.close()


def test_outage_without_local_rotation_keeps_the_current_key(
    redis_server: RedisServer, name: str
) -> None:
    """By default a node whose Redis is down keeps encrypting with the fleet's
    current key (no divergence), and rotation resumes through Redis afterwards."""
    ring = TicketKeyRing(rotation_period=0.5)
    sync = KeySync(
        ring, redis_server.url, name=name, refresh=0.1, timeout=0.1, insecure_unsealed=True
    )
    try:
        current = ring.keys()[-2].name
        redis_server.kill()
        time.sleep(1.2)
        assert ring.maybe_rotate() is False or ring.keys()[-2].name == current
        assert ring.keys()[-2].name == current and not ring.auto_rotate
        redis_server.restart()
        assert wait_until(lambda: sync.stats()["rotations"] >= 1, 2)
    finally:
        sync.stop()
        ring.close()


# ======================================================================================
# Session tier against a real Redis
# ======================================================================================


def test_tier_entries_carry_the_session_expiry(redis_server: RedisServer, name: str) -> None:
    """A stored session's Redis TTL is its own remaining lifetime; removals delete."""
    with SessionTier(redis_server.url, name=name, insecure_unsealed=True) as tier:
        tier.put(b"\x01" * 32, b"der", time.time() + 5)
        tier.put(b"\x02" * 32, b"der", time.time() - 1)  # already expired: not written
        assert tier.flush(2)
        client = redis_server.client()
        key = f"tlsresume:session:{name}:" + "01" * 32
        assert 4000 < client.pttl(key) <= 5000
        assert client.get(f"tlsresume:session:{name}:" + "02" * 32) is None
        assert tier.stats()["expired_before_write"] == 1
        assert tier.get(b"\x01" * 32) == b"der"
        tier.remove(b"\x01" * 32)
        assert tier.flush(2) and client.get(key) is None


def test_sessions_sealed_under_the_master_key(redis_server: RedisServer, name: str) -> None:
    """Sealed sessions are not plaintext in Redis, open with the same key, and a node
    with another key is refused at check (and would only ever see misses)."""
    master = generate_master_key()
    der = os.urandom(300)
    with (
        SessionTier(redis_server.url, name=name, master_key=master) as a,
        SessionTier(redis_server.url, name=name, master_key=master) as b,
    ):
        assert a.check()
        a.put(b"\x07" * 32, der, time.time() + 60)
        assert a.flush(2)
        raw = redis_server.client().get(f"tlsresume:session:{name}:" + "07" * 32)
        assert raw.startswith(b"tlsr-sealed-1:") and der[:32] not in raw
        assert wait_until(lambda: b.stats()["idle"] > 0, 2)
        assert b.get(b"\x07" * 32) == der
    with SessionTier(redis_server.url, name=name, master_key=generate_master_key()) as c:
        with pytest.raises(MasterKeyError, match="master key id"):
            c.check()
        assert wait_until(lambda: c.stats()["idle"] > 0, 2)
        assert c.get(b"\x07" * 32) is None and c.stats()["undecryptable"] == 1
    with (
        SessionTier(redis_server.url, name=name, insecure_unsealed=True) as d,
        pytest.raises(MasterKeyError, match="sealed under a master key"),
    ):
        d.check()


def test_namespaces_do_not_mix(redis_server: RedisServer, name: str) -> None:
    """Two service names share nothing: keys differ, sessions stay apart."""
    r1, r2 = TicketKeyRing(), TicketKeyRing()
    with (
        KeySync(r1, redis_server.url, name=name + "a", start=False, insecure_unsealed=True),
        KeySync(r2, redis_server.url, name=name + "b", start=False, insecure_unsealed=True),
        SessionTier(redis_server.url, name=name + "a", insecure_unsealed=True) as t1,
        SessionTier(redis_server.url, name=name + "b", insecure_unsealed=True) as t2,
    ):
        assert {k.name for k in r1.keys()}.isdisjoint({k.name for k in r2.keys()})
        t1.put(b"\x03" * 32, b"der", time.time() + 60)
        assert t1.flush(2)
        assert wait_until(lambda: t2.stats()["idle"] > 0, 2)
        assert t2.get(b"\x03" * 32) is None and t1.get(b"\x03" * 32) == b"der"
    r1.close()
    r2.close()


def test_writes_never_block_and_overflow_is_counted(redis_server: RedisServer, name: str) -> None:
    """With Redis stalled, put() returns at once; beyond max_queue it drops and counts."""
    with SessionTier(
        redis_server.url, name=name, max_queue=8, write_timeout=0.3, insecure_unsealed=True
    ) as tier:
        assert wait_until(lambda: tier.stats()["idle"] > 0, 2)
        redis_server.pause()
        slowest = 0.0
        for i in range(100):
            t0 = time.perf_counter()
            tier.put(i.to_bytes(32, "big"), b"der", time.time() + 60)
            slowest = max(slowest, time.perf_counter() - t0)
        assert slowest < 0.005
        assert tier.stats()["dropped"] >= 100 - 8 - 1
        redis_server.resume()
        tier.stop(flush=0)


def test_handshake_never_waits_past_the_bound_when_redis_stalls(
    redis_server: RedisServer, name: str, cert: trustme.LeafCert, ca: trustme.CA
) -> None:
    """Redis paused with SIGSTOP (connections accepted, nothing answered): a handshake
    whose session is missing locally waits the tier's bound for Redis, no longer, then
    completes as a full handshake; later lookups skip Redis during the back-off.

    Unloaded, the stalled lookups take the bound plus ~0.5 ms. The lookups' median
    is held to the bound plus 10 ms (whole handshakes, whose own CPU time varies
    under load, plus 20 ms) and every sample to the bound plus 100 ms: slack for a
    loaded CI machine, while a wait that is not bounded lasts until SIGCONT."""
    bound = 0.005
    client = client_ctx(ca, TLS12, tickets=False)
    origin = SessionStore("1M")
    session, _ = memory_pair(
        make_server_ctx(cert, None, origin, tickets=False, version=TLS12), client
    )
    # Baseline: the same full handshake with no remote tier at all.
    with SessionStore("1M") as plain:
        ctx = make_server_ctx(cert, None, plain, tickets=False, version=TLS12)
        samples = []
        for _ in range(15):
            t0 = time.perf_counter()
            memory_pair(ctx, client, session)
            samples.append(time.perf_counter() - t0)
        baseline = statistics.median(samples)
    machines = []
    for _ in range(7):  # seven machines, each with a connection ready before the stall
        store = SessionStore("1M")
        tier = SessionTier(
            redis_server.url, name=name, timeout=bound, retry=5.0, insecure_unsealed=True
        )
        store.set_remote(tier)
        machines.append(
            (store, tier, make_server_ctx(cert, None, store, tickets=False, version=TLS12))
        )
    try:
        assert wait_until(lambda: all(t.stats()["idle"] > 0 for _, t, _ in machines), 3)
        redis_server.pause()
        first, later = [], []
        for _store, _tier, ctx in machines:
            for i in range(3):
                t0 = time.perf_counter()
                assert not memory_pair(ctx, client, session)[1]
                (later if i else first).append(time.perf_counter() - t0 - baseline)
        stats = [t.stats() for _, t, _ in machines]
        assert all(s["timeouts"] == 1 for s in stats), stats  # one wait per machine...
        assert all(s["skipped_down"] >= 2 for s in stats), stats  # ...then no more
        lookups = [s["max_get_ms"] / 1000 for s in stats]
        print(
            f"stalled lookups: median {statistics.median(lookups) * 1000:.1f} ms, max "
            f"{max(lookups) * 1000:.1f} ms; handshake extra wait: median "
            f"{statistics.median(first) * 1000:.1f} ms (bound {bound * 1000:g} ms)"
        )
        assert statistics.median(lookups) < bound + 0.010, lookups
        assert statistics.median(first) < bound + 0.020, (first, baseline)
        assert statistics.median(later) < 0.010, (later, baseline)
        assert max(lookups + first + later) < bound + 0.100, (lookups, first, later)
    finally:
        redis_server.resume()
        for store, tier, _ in machines:
            store.set_remote(None)
            tier.stop(flush=0)
            store.close()
        origin.close()


def test_tier_restarts_in_a_forked_child(redis_server: RedisServer, name: str) -> None:
    """A tier made before fork works in the child (new writer, new connections) and
    still in the parent afterwards."""
    with SessionTier(redis_server.url, name=name, insecure_unsealed=True) as tier:
        assert wait_until(lambda: tier.stats()["idle"] > 0, 2)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            code = 1
            try:
                tier.put(b"\x05" * 32, b"from-child", time.time() + 60)
                ok = tier.flush(2) and wait_until(lambda: tier.stats()["idle"] > 0, 2)
                code = 0 if ok and tier.get(b"\x05" * 32) == b"from-child" else 2
            finally:
                os.write(w, bytes([code]))
                os._exit(code)
        os.close(w)
        assert os.read(r, 1) == b"\x00"
        os.close(r)
        assert os.waitpid(pid, 0)[1] == 0
        assert tier.get(b"\x05" * 32) == b"from-child"
        tier.put(b"\x06" * 32, b"from-parent", time.time() + 60)
        assert tier.flush(2) and tier.get(b"\x06" * 32) == b"from-parent"


# ======================================================================================
# Three machines behind pre-fork servers sharing one Redis
# ======================================================================================


@pytest.mark.parametrize("version", [TLS12, TLS13], ids=["tls12", "tls13"])
def test_three_machines_resume_across_with_tickets(
    redis_server: RedisServer,
    name: str,
    cert: trustme.LeafCert,
    ca: trustme.CA,
    version: ssl.TLSVersion,
) -> None:
    """Tickets from any machine resume on every other one (>= 39 of 40)."""
    with fleet(cert, redis_server.url, name, version=version) as machines:
        run, _ = across(machines, client_ctx(ca, version), 40)
        assert run.failed == 0 and run.reconnections == 40
        assert run.resumed >= 39, run
        assert ring_totals(machines)["rejected_unknown"] == 0


@pytest.mark.parametrize("version", [TLS12, TLS13], ids=["tls12", "tls13"])
def test_three_machines_resume_across_by_session_id(
    redis_server: RedisServer,
    name: str,
    cert: trustme.LeafCert,
    ca: trustme.CA,
    version: ssl.TLSVersion,
) -> None:
    """Tickets off on both sides: sessions found by ID cross machines through Redis
    (>= 39 of 40)."""
    with fleet(cert, redis_server.url, name, tickets=False, version=version) as machines:
        for m in machines:
            assert m.link is not None and m.link.key_sync is None
        run, _ = across(machines, client_ctx(ca, version, tickets=False), 40)
        assert run.failed == 0 and run.reconnections == 40
        assert run.resumed >= 39, run
        # Each machine fetches a session from Redis once, then has it locally (a
        # TLS 1.2 session keeps its ID; TLS 1.3 stateful tickets are new each time).
        hits = [m.store.stats()["remote_hits"] for m in machines]
        assert sum(hits) >= 2 and sum(h > 0 for h in hits) >= 2, hits


@pytest.mark.parametrize("tickets", [True, False], ids=["tickets", "session-ids"])
def test_without_redis_machines_do_not_share(
    name: str, cert: trustme.LeafCert, ca: trustme.CA, tickets: bool
) -> None:
    """Negative control: the same three machines without Redis never resume across."""
    with fleet(cert, None, name, tickets=tickets) as machines:
        run, _ = across(machines, client_ctx(ca, tickets=tickets), 12)
        assert run.failed == 0 and run.reconnections == 12
        assert run.resumed == 0
        if tickets:
            assert ring_totals(machines)["rejected_unknown"] >= 12


def test_rotation_through_redis_while_clients_reconnect(
    redis_server: RedisServer, name: str, cert: trustme.LeafCert, ca: trustme.CA
) -> None:
    """Keys rotate every 0.8 s through Redis while a client hops machines: no
    handshake fails, every reconnection resumes, no ticket is refused, and exactly
    one rotation happens per period across the fleet."""
    period = 0.8
    with fleet(cert, redis_server.url, name, rotation_period=period) as machines:
        client = client_ctx(ca)
        run, session = across(machines, client, 1)
        deadline = time.monotonic() + 4 * period
        i = 1
        while time.monotonic() < deadline:
            run, session = across(machines, client, 3, session, run, start=i)
            i += 3
        totals = ring_totals(machines)
        assert run.failed == 0
        assert run.resumed == run.reconnections, run
        assert totals["rejected_unknown"] == 0 and totals["rejected_expired"] == 0, totals
        rotations = sum(m.link.key_sync.stats()["rotations"] for m in machines)  # type: ignore[union-attr]
        state = fleet_state(redis_server, name)
        assert 3 <= rotations == state.generation - 1
        activations = sorted(r.activated for r in state.keys if r.activated)
        gaps = [b - a for a, b in zip(activations, activations[1:], strict=False)]
        assert all(gap >= period - 0.01 for gap in gaps), gaps  # never two per period


@pytest.mark.parametrize("tickets", [True, False], ids=["tickets", "session-ids"])
def test_redis_killed_mid_run(
    redis_server: RedisServer, name: str, cert: trustme.LeafCert, ca: trustme.CA, tickets: bool
) -> None:
    """Redis killed while a client hops machines: no handshake fails; once Redis is
    back (empty) resumption across machines returns within two refresh periods."""
    with fleet(cert, redis_server.url, name, tickets=tickets) as machines:
        client = client_ctx(ca, tickets=tickets)
        run, session = across(machines, client, 12)
        assert run.resumed >= 11
        keys_before = [k.name for k in machines[0].ring.keys()]
        redis_server.kill()
        during, session = across(machines, client, 12, session)
        assert during.failed == 0
        if tickets:  # the keys did not change: tickets still cross machines
            assert during.resumed == during.reconnections
        redis_server.restart()
        back = time.monotonic()
        streak = 0
        recovered_at = None
        i = 0
        while time.monotonic() - back < 3.0 and streak < 6:
            r, session = across(machines, client, 1, session, start=i)
            i += 1
            assert r.failed == 0
            if r.resumed:
                recovered_at = recovered_at or time.monotonic()
                streak += 1
            else:
                recovered_at, streak = None, 0
        assert streak >= 6 and recovered_at is not None, "resumption did not come back"
        recovery = recovered_at - back
        print(f"resumption across machines back {recovery * 1000:.0f} ms after restart")
        assert recovery <= 2 * REFRESH + 0.05, recovery
        if tickets:
            assert wait_until(
                lambda: redis_server.client().exists(f"tlsresume:ring:{name}"), 2 * REFRESH + 0.1
            )
            assert [k.name for k in machines[0].ring.keys()] == keys_before
            assert ring_totals(machines)["rejected_unknown"] == 0


# ======================================================================================
# Forward-only generations: an older copy in Redis is repaired, never applied
# ======================================================================================


def _sync(redis_server: RedisServer, ring: TicketKeyRing, name: str, master: str | None) -> KeySync:
    return KeySync(
        ring,
        redis_server.url,
        name=name,
        refresh=1,
        rotation_period=10,
        acceptance_window=20,
        master_key=master,
        insecure_unsealed=master is None,
        start=False,
    )


@pytest.mark.parametrize("sealed", [False, True], ids=["plain", "sealed"])
def test_older_ring_in_redis_is_put_back(
    redis_server: RedisServer, name: str, sealed: bool
) -> None:
    """Redis goes back to an older (validly sealed) copy of the fleet's ring after a
    rotation, as when a failover promotes a replica that missed the last write, or
    someone writes an old copy back: the node that had accepted the newer generation
    never applies the older one, keeps its keys, and puts its generation back (only
    over the copy it read). Negative control: a fresh node, which never saw the newer
    generation, takes the older copy (it is a well-formed ring) and repairs nothing,
    so keeping the newer keys is the check's doing; after the repair it follows."""
    master = generate_master_key() if sealed else None
    ring, fresh_ring = TicketKeyRing(), TicketKeyRing()
    key = f"tlsresume:ring:{name}"
    client = redis_server.client()
    sync = _sync(redis_server, ring, name, master)
    fresh: KeySync | None = None
    try:
        old_blob = client.get(key)
        assert sync.stats()["generation"] == 1
        sync.sync(now=time.time() + 11)  # due: this node rotates the fleet's ring
        assert sync.stats()["generation"] == 2
        newer = [(k.name, k.role) for k in ring.keys()]
        client.set(key, old_blob)  # Redis lost the rotation
        fresh = _sync(redis_server, fresh_ring, name, master)  # control, before the repair
        assert fresh.stats()["generation"] == 1 and fresh.stats()["repairs"] == 0
        assert [k.name for k in fresh_ring.keys()] != [name for name, _ in newer]
        sync.sync()
        assert [(k.name, k.role) for k in ring.keys()] == newer
        stats = sync.stats()
        assert stats["repairs"] == 1 and stats["generation"] == 2 and stats["sync_failures"] == 0
        assert client.get(key) != old_blob
        fresh.sync()
        assert fresh.stats()["generation"] == 2
        assert [(k.name, k.role) for k in fresh_ring.keys()] == newer
    finally:
        for s in (sync, fresh):
            if s is not None:
                s.stop()
        client.close()
        ring.close()
        fresh_ring.close()


def test_lost_rotation_redone_elsewhere_is_taken(redis_server: RedisServer, name: str) -> None:
    """The lost rotation is re-done by a node that never saw it, before the node
    that saw it could put it back: both generations 2 have the same current key (it
    was generation 1's next), so the node that saw the first takes the second, with
    no failure and no ticket lost; the fleet never has two current keys. Control: a
    generation 2 with another current key (a forged fork) is refused."""
    master = generate_master_key()
    ring_a, ring_b = TicketKeyRing(), TicketKeyRing()
    key = f"tlsresume:ring:{name}"
    client = redis_server.client()
    a = _sync(redis_server, ring_a, name, master)
    b = _sync(redis_server, ring_b, name, master)
    try:
        gen1 = client.get(key)
        later = time.time() + 11
        a.sync(now=later)  # a rotates: generation 2 (current = generation 1's next)
        current_a = next(k.name for k in ring_a.keys() if k.role == "current")
        client.set(key, gen1)  # lost
        b.sync(now=later)  # b rotates again from generation 1
        assert b.stats()["rotations"] == 1 and b.stats()["generation"] == 2
        current_b = next(k.name for k in ring_b.keys() if k.role == "current")
        assert current_a == current_b
        redone = client.get(key)
        a.sync(now=later)
        assert a.stats()["sync_failures"] == 0 and a.stats()["repairs"] == 0
        assert client.get(key) == redone  # a took b's, did not overwrite it
        assert [(k.name, k.role) for k in ring_a.keys()] == [
            (k.name, k.role) for k in ring_b.keys()
        ]
        # Control: generation 2 with a current key nobody had as next.
        forged_ring = TicketKeyRing()
        try:
            client.delete(key)
            forger = _sync(redis_server, forged_ring, name, master)
            forger.stop()
            state = decode_state(_Sealer(master, b"ring").open(client.get(key), key.encode()), key)
            client.set(
                key,
                _Sealer(master, b"ring").seal(
                    encode_state(dataclasses.replace(state, generation=2)), key.encode()
                ),
            )
        finally:
            forged_ring.close()
        with pytest.raises(RedisBackendError, match="holds other keys"):
            a.sync(now=later)
    finally:
        a.stop()
        b.stop()
        client.close()
        ring_a.close()
        ring_b.close()


# ======================================================================================
# Without threads: a loop of the caller's own drives the sync; the writer starts late
# ======================================================================================


def _library_threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("tlsresume-")}


def test_link_without_threads_polls_and_writes_on_first_use(
    redis_server: RedisServer, name: str
) -> None:
    """connect_server(start=False) starts no thread: poll() runs the key sync's rounds
    when due (and rotates in Redis), and the session tier's writer starts at the
    first store. Control: the default link runs both threads at once."""
    before = _library_threads()
    ring = TicketKeyRing(rotation_period=10, session_cache=False)
    store = SessionStore("1M")
    link = connect_server(
        redis_server.url, ring=ring, store=store, name=name, start=False, insecure_unsealed=True
    )
    try:
        assert _library_threads() == before  # nothing started
        now = time.time()
        assert 0 < link.poll(now) <= DEFAULT_REFRESH * 1.1  # not due yet: nothing ran
        syncs = link.stats()["key_sync"]["syncs"]
        link.poll(now + DEFAULT_REFRESH * 1.2)
        assert link.stats()["key_sync"]["syncs"] == syncs + 1
        current = ring.records()[-2].key
        link.poll(now + 11 + DEFAULT_REFRESH * 1.2)  # past the period: rotated in Redis
        assert fleet_state(redis_server, name).current.key != current
        assert ring.records()[-2].key != current
        assert link.session_tier is not None
        link.session_tier.put(b"\x01" * 32, b"der", time.time() + 60)
        assert "tlsresume-redis-writer" in _library_threads() - before
        assert link.session_tier.flush(2.0)
        assert redis_server.client().exists(f"tlsresume:session:{name}:{'01' * 32}")
        with pytest.raises(tlsresume.errors.StateError, match="poll"):
            control = connect_server(
                redis_server.url, ring=ring, name=name + "-c", insecure_unsealed=True
            )
            try:
                assert {"tlsresume-keysync"} <= _library_threads() - before
                control.poll()
            finally:
                control.stop()
    finally:
        link.stop()
        ring.close()
        store.close()


def test_the_fleet_is_sealed_unless_told_otherwise(redis_server: RedisServer, name: str) -> None:
    """No master key and no insecure_unsealed: every entry point refuses before it
    touches Redis, naming both ways out; both at once is a usage error."""
    ring, store = TicketKeyRing(session_cache=False), SessionStore("1M")
    try:
        for make in (
            lambda: KeySync(ring, redis_server.url, name=name),
            lambda: SessionTier(redis_server.url, name=name),
            lambda: connect_server(redis_server.url, ring=ring, store=store, name=name),
            lambda: tlsresume.redis.connect_worker(redis_server.url, store=store, name=name),
        ):
            with pytest.raises(MasterKeyError, match="insecure_unsealed=True") as exc:
                make()
            assert "master_key=" in str(exc.value)
        assert redis_server.client().keys("*") == []  # nothing was written
        with pytest.raises(ValueError, match="not both"):
            KeySync(
                ring, redis_server.url, master_key=generate_master_key(), insecure_unsealed=True
            )
    finally:
        ring.close()
        store.close()


def _new_session_key(client: Any, name: str, seen: set[bytes]) -> bytes:
    """One session key in Redis that ``seen`` does not hold yet (a TLS 1.3 server
    issues two stateful tickets per handshake: each is a session); adds them all."""
    new = set(client.keys(f"tlsresume:session:{name}:*")) - seen
    new.discard(f"tlsresume:session:{name}:check".encode())
    assert new, "the store handed its tier no session"
    seen.update(new)
    return sorted(new)[0]


@pytest.mark.parametrize("sealed", [False, True], ids=["plain", "sealed"])
def test_single_use_sessions_are_taken_once_across_machines(
    redis_server: RedisServer, name: str, ca: trustme.CA, cert: trustme.LeafCert, sealed: bool
) -> None:
    """A TLS 1.3 session (a stateful ticket, which resumes once) that one machine
    stored is taken by the first machine that looks it up: read and deleted in one
    step in Redis, so a second machine finds nothing. Control: a TLS 1.2 session
    (reusable) is found by both. The sessions are the real DERs a server's store
    handed its tier; stripping the single-use mark makes a sealed one undecryptable."""
    kw: dict[str, Any] = (
        {"master_key": generate_master_key()} if sealed else {"insecure_unsealed": True}
    )
    store = SessionStore("1M")
    client = redis_server.client()
    tier = tlsresume.redis.connect_worker(redis_server.url, store=store, name=name, **kw)
    try:
        with (
            SessionTier(redis_server.url, name=name, **kw) as b,
            SessionTier(redis_server.url, name=name, **kw) as c,
        ):
            assert wait_until(lambda: b.stats()["idle"] > 0 and c.stats()["idle"] > 0, 2)
            seen: set[bytes] = set()
            for version, single in ((TLS13, True), (TLS12, False)):
                server = make_server_ctx(cert, None, store, tickets=False, version=version)
                memory_pair(server, client_ctx(ca, version, tickets=False))
                assert tier.flush(2)
                key = _new_session_key(client, name, seen)
                assert client.get(key)[:1] == (
                    b"\x01" if single else b"\x30" if not sealed else b"t"
                )
                sid = bytes.fromhex(key.decode().rsplit(":", 1)[1])
                first, second = b.get(sid), c.get(sid)
                assert first is not None and first[:1] == b"\x30"
                if single:
                    assert second is None and client.exists(key) == 0, "taken twice"
                else:
                    assert second == first and client.exists(key) == 1
            assert b.stats()["taken"] == 1 and c.stats()["taken"] == 0
            if sealed:  # the mark is authenticated: without it the seal does not open
                server = make_server_ctx(cert, None, store, tickets=False, version=TLS13)
                memory_pair(server, client_ctx(ca, TLS13, tickets=False))
                assert tier.flush(2)
                key = _new_session_key(client, name, seen)
                client.set(key, client.get(key)[1:])
                assert b.get(bytes.fromhex(key.decode().rsplit(":", 1)[1])) is None
                assert b.stats()["undecryptable"] == 1
    finally:
        tier.stop()
        store.set_remote(None)
        store.close()
