"""Redis as operators run it, highly available: a master, a replica and three
sentinels on loopback, handed to tlsresume as the client the operator already
configured (``Sentinel(...).master_for(name)``), and a failover in the middle.

Every machine is a ring and a store behind a pre-fork server, linked through the
same Sentinel-managed master. Clients hop between machines offering the session
the previous connection ended with. Then the master is SIGKILLed: no handshake may
fail, keys and sessions must cross machines again once the sentinels promoted the
replica, and the fleet must never have had two current keys at once."""

from __future__ import annotations

import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import trustme

from .redisutil import RedisServer, SentinelGroup, require_redis

require_redis()

import redis  # noqa: E402
import redis.sentinel  # noqa: E402

import tlsresume  # noqa: E402
from tlsresume.redis import generate_master_key  # noqa: E402

from .handshake import wait_until  # noqa: E402
from .test_redis import across, client_ctx, fleet  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded:DeprecationWarning"
)
TLS12, TLS13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3


@pytest.fixture(scope="module")
def cert(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("localhost")


@pytest.fixture
def group() -> Iterator[SentinelGroup]:
    """A fresh group per test: a failover leaves no replica to promote next time."""
    with SentinelGroup() as g:
        yield g


def test_clients_handed_in_plain_redis_and_a_pool(ca: trustme.CA, cert: trustme.LeafCert) -> None:
    """A configured ``redis.Redis`` and a ``redis.ConnectionPool`` work in place of a
    URL; tlsresume makes its own connections from them and leaves the caller's
    client open. Control: the same machines unlinked resume nothing across."""
    with RedisServer() as server:
        for handed in (server.client(), redis.ConnectionPool.from_url(server.url)):
            name = f"handed-{uuid.uuid4().hex[:8]}"
            with fleet(cert, handed, name, machines=2, master_key=generate_master_key()) as ms:
                run, _ = across(ms, client_ctx(ca, TLS13), 10)
                assert run.failed == 0 and run.resumed == 10, run
            caller = (
                handed if isinstance(handed, redis.Redis) else redis.Redis(connection_pool=handed)
            )
            assert caller.ping()  # still the caller's, still open
        with fleet(cert, None, "unlinked", machines=2) as ms:
            run, _ = across(ms, client_ctx(ca, TLS13), 10)
            assert run.failed == 0 and run.resumed <= 5, run


@pytest.mark.parametrize("kind", ["tickets", "session-ids"])
def test_sentinel_failover_keeps_handshakes_and_converges(
    group: SentinelGroup, ca: trustme.CA, cert: trustme.LeafCert, kind: str
) -> None:
    """Two machines share keys (tickets) or sessions (session IDs, TLS 1.2, tickets
    off) through a Sentinel-managed master; its SIGKILL fails no handshake; after
    the failover, reconnections cross machines again (20 in a row within 10 s of
    the new master), the machines end on one current key, and the key sync's stats
    name the new master, one node change, and a recent successful sync."""
    name = f"sentinel-{uuid.uuid4().hex[:8]}"
    master = group.master_for()
    tickets = kind == "tickets"
    with fleet(
        cert,
        master,
        name,
        machines=2,
        tickets=tickets,
        master_key=generate_master_key(),
        refresh=0.2,
    ) as machines:
        ctx = client_ctx(ca, TLS13) if tickets else client_ctx(ca, TLS12, tickets=False)
        before, session = across(machines, ctx, 20)
        assert before.failed == 0 and before.resumed >= 19, before
        links = [m.link for m in machines if m.link is not None]
        if tickets:  # the key sync names the node it reaches: the master, for now
            assert {link.stats()["key_sync"]["redis_node"] for link in links} == {
                f"127.0.0.1:{group.master_port()}"
            }
        old = group.kill_master()
        took = group.wait_failover(old)
        failed = 0
        streak, since = 0, None
        deadline = time.monotonic() + 10.0
        i = 21
        while streak < 20 and time.monotonic() < deadline:
            run, session = across(machines, ctx, 1, session=session, start=i)
            i += 1
            failed += run.failed
            if run.resumed:
                streak += 1
                since = since or time.monotonic()
            else:
                streak, since = 0, None
        print(f"{kind}: failover took {took:.1f} s; crossing again: {streak >= 20}")
        assert failed == 0, "a handshake failed during the failover"
        assert streak >= 20, "tickets did not cross machines again after the failover"
        if tickets:
            currents = {m.ring.records()[-2].key.name for m in machines}
            assert len(currents) == 1, "the machines encrypt under different current keys"

            def named_new_master() -> bool:
                new = f"127.0.0.1:{group.master_port()}"  # the sentinels may be busy: ask again
                return all(
                    link.stats()["key_sync"]["redis_node"] == new
                    and link.stats()["key_sync"]["node_changes"] == 1
                    and link.stats()["key_sync"]["last_sync_age"] < 1.0
                    for link in links
                )

            assert wait_until(named_new_master, 5), [
                {k: link.stats()["key_sync"][k] for k in ("redis_node", "node_changes")}
                for link in links
            ]
    assert tlsresume  # the package under test


def test_other_objects_are_refused_clearly() -> None:
    """Anything but a URL, a redis.Redis or a ConnectionPool is a TypeError that
    says what to give."""
    ring = tlsresume.TicketKeyRing(session_cache=False)
    try:
        for bad in (42, object(), b"redis://127.0.0.1:1/0"):
            with pytest.raises(TypeError, match="give a Redis URL, a redis.Redis client"):
                tlsresume.redis.KeySync(ring, bad, insecure_unsealed=True)  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="give a Redis URL"):
                tlsresume.redis.SessionTier(bad, insecure_unsealed=True)  # type: ignore[arg-type]
    finally:
        ring.close()


# --------------------------------------------------------------------------------------
# A failover that lost the last rotation
# --------------------------------------------------------------------------------------


def _ring_in(client: redis.Redis, key: str, master_key: str) -> int:
    """The generation of the ring Redis holds now (read by the test, not a node)."""
    from tlsresume.redis import _Sealer, decode_state

    blob = client.get(key)
    assert blob is not None
    return decode_state(_Sealer(master_key, b"ring").open(blob, key.encode()), key).generation


@pytest.mark.parametrize("first", ["saw-it", "missed-it"])
def test_failover_that_lost_the_last_rotation(group: SentinelGroup, first: str) -> None:
    """Node A rotates the fleet's ring while the replica is frozen (SIGSTOP) and its
    replication link cut, so the write never reaches it; the master is SIGKILLed and
    the sentinels promote the replica, which holds the ring before the rotation
    (checked: the write is really lost). Then either A syncs first and puts its
    generation back, or B (which never saw the rotation) rotates again first and A
    takes B's. Either way: no sync
    fails, both end on one generation with one current key, the key that was
    current before the failover, and exactly one rotation's worth of keys."""
    master_key = generate_master_key()
    name = f"lost-{uuid.uuid4().hex[:8]}"
    rings = [tlsresume.TicketKeyRing(), tlsresume.TicketKeyRing()]
    handed = group.master_for()
    syncs = [
        tlsresume.redis.KeySync(
            ring, handed, name=name, master_key=master_key, refresh=1, start=False
        )
        for ring in rings
    ]
    try:
        a, b = syncs
        key = a.key
        later = time.time() + rings[0].rotation_period + 1
        replica = group.replica if group.master_port() == group.master.port else group.master
        replica_client = replica.client()
        try:  # the seed (generation 1) has reached the replica
            assert wait_until(lambda: replica_client.get(key) is not None, 10)
        finally:
            replica_client.close()
        replica.pause()
        master_client = group.master_for()
        try:
            # Cut the replication link while the replica cannot reconnect: the
            # rotation then reaches the master alone.
            master_client.execute_command("CLIENT", "KILL", "TYPE", "replica")
            a.sync(now=later)  # the rotation, on the master only
            assert a.stats()["rotations"] == 1 and a.stats()["generation"] == 2
            current = next(k.name for k in rings[0].keys() if k.role == "current")
            old = group.kill_master()
        finally:
            replica.resume()
            master_client.close()
        group.wait_failover(old)
        assert wait_until(lambda: _generation_or_none(group, key, master_key) is not None, 10)
        assert _ring_in(group.master_for(), key, master_key) == 1  # the write is lost

        def synced(s: tlsresume.redis.KeySync) -> bool:
            try:
                s.sync(now=later)
                return True
            except tlsresume.redis.RedisBackendError:
                return False

        order = [a, b] if first == "saw-it" else [b, a]
        for s in order:
            assert wait_until(lambda s=s: synced(s), 10)  # type: ignore[misc]
        stats = [s.stats() for s in syncs]
        assert [st["generation"] for st in stats] == [2, 2], stats
        assert sum(st["repairs"] for st in stats) == (1 if first == "saw-it" else 0), stats
        assert stats[1]["rotations"] == (0 if first == "saw-it" else 1), stats
        currents = [next(k.name for k in r.keys() if k.role == "current") for r in rings]
        assert currents == [current, current]
        assert [(k.name, k.role) for k in rings[0].keys()] == [
            (k.name, k.role) for k in rings[1].keys()
        ]
        assert _ring_in(group.master_for(), key, master_key) == 2
    finally:
        for s in syncs:
            s.stop()
        for r in rings:
            r.close()


def _generation_or_none(group: SentinelGroup, key: str, master_key: str) -> int | None:
    try:
        return _ring_in(group.master_for(), key, master_key)
    except (redis.RedisError, OSError, AssertionError):
        return None


# --------------------------------------------------------------------------------------
# Two serve instances through a Sentinel URL, the master SIGKILLed mid-run
# --------------------------------------------------------------------------------------


def _subsequence(seq: list[str], of: list[str]) -> bool:
    it = iter(of)
    return all(name in it for name in seq)


@pytest.mark.interop
def test_two_serve_instances_through_a_failover(  # type: ignore[no-untyped-def]
    group: SentinelGroup, server_cert, tmp_path
) -> None:
    """Two ``serve --redis redis+sentinel://...`` instances share keys (rotated
    every 2 s) and sessions; a client hops between them, alternating TLS 1.3 tickets
    and TLS 1.2 session IDs (each made on the other instance just before, so that
    each such hop needs Redis); the master is SIGKILLed mid-run. No handshake fails,
    resumption across instances is back to >= 99 % within 10 s of the kill (the
    time is printed), and exactly one current key name per period: every
    instance's sequence of current keys (sampled every 20 ms) follows one fleet-wide
    order. Control: the same two instances without Redis resume no hop."""
    from .support import client_context, https_get
    from .test_serve_redis import _fleet_factory, session_id_client

    key_file = tmp_path / "master.key"
    key_file.write_text(generate_master_key() + "\n")
    key_file.chmod(0o600)
    url = "redis+sentinel://" + ",".join(f"127.0.0.1:{p}" for p in group.ports)
    url += f"/{group.SERVICE}"
    started: list[Any] = []
    start = _fleet_factory(server_cert, started)
    try:
        fleet = start(
            "--redis", url, "--redis-name", f"failover-{uuid.uuid4().hex[:8]}",
            "--redis-master-key-file", str(key_file), "--redis-refresh", "0.1",
            "--rotate", "2", "--session-cache", "1M",
            count=2,
        )  # fmt: skip
        control = start("--rotate", "2", "--session-cache", "1M", count=2)
        clients = {
            "tickets": client_context(server_cert.cafile, "1.3"),
            "session-ids": session_id_client(server_cert.cafile, "1.2"),
        }
        rings = [tlsresume.TicketKeyRing.attach(s.ring_name) for s in fleet]
        currents: list[list[str]] = [[] for _ in rings]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.02):
                for seen, ring in zip(currents, rings, strict=True):
                    name = next(k.name for k in ring.keys() if k.role == "current")
                    if not seen or seen[-1] != name:
                        seen.append(name)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        hops: list[tuple[float, bool]] = []  # (when, resumed) per reconnection
        sessions: dict[str, ssl.SSLSession | None] = dict.fromkeys(clients)
        killed_at = end = 0.0
        i = 0
        while not end or time.monotonic() < end:
            kind = "tickets" if i % 2 == 0 else "session-ids"
            server = fleet[(i // 2) % 2]
            if kind == "session-ids":
                # A TLS 1.2 session keeps its ID and, once fetched, stays in each
                # instance's own store: every hop starts a new one on the other
                # instance, so each hop needs Redis.
                other = fleet[(i // 2 + 1) % 2]
                made = https_get(other.host, other.port, clients[kind])
                sessions[kind] = made.session
                time.sleep(0.02)  # session writes are queued off the handshake
            r = https_get(server.host, server.port, clients[kind], session=sessions[kind])
            assert r.status_line.endswith("200 OK"), r.status_line  # no failed handshake
            if sessions[kind] is not None:
                hops.append((time.monotonic(), r.resumed))
            sessions[kind] = r.session
            i += 1
            time.sleep(0.02)  # session writes are queued off the handshake
            if not killed_at and len(hops) >= 60:
                killed_at = time.monotonic()
                group.kill_master()
                end = killed_at + 12.0
        stop.set()
        sampler.join(5)
        before = [ok for t, ok in hops if t < killed_at]
        assert sum(before) >= 0.99 * len(before), before
        after = [(t, ok) for t, ok in hops if t >= killed_at]
        # The first moment after which >= 99 % of the hops resumed.
        back = next(
            t
            for n, (t, _) in enumerate(after)
            if sum(ok for _, ok in after[n:]) >= 0.99 * len(after[n:])
        )
        print(
            f"failover: {len(after)} hops after the kill, resuming >= 99 % again "
            f"{back - killed_at:.1f} s after it; current keys seen: {currents}"
        )
        assert back - killed_at <= 10.0 and len([t for t, _ in after if t >= back]) >= 40
        order = max(currents, key=len)
        assert all(_subsequence(seq, order) for seq in currents), currents
        assert len(order) >= 5  # rotations went on through the failover
        # Control: the same instances without Redis.
        for kind, ctx in clients.items():
            session = None
            for n in range(8):
                server = control[n % 2]
                r = https_get(server.host, server.port, ctx, session=session)
                assert not (session is not None and r.resumed), kind
                session = r.session
        for ring in rings:
            ring.close()
    finally:
        for server in started:
            server.stop()
