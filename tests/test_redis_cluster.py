"""Redis Cluster: three masters on loopback (``redis-server --cluster-enabled yes``,
joined with ``redis-cli --cluster create``), handed to tlsresume as a
``redis.cluster.RedisCluster`` or as a ``redis+cluster://`` URL.

The fleet's ring is one key, so one slot: its compare-and-set rotation runs on the
master that holds it. Sessions spread over every master by their IDs; a lookup goes
to the master of the session's slot, and redis-py's cluster client follows MOVED
and ASK when slots move. Three ``serve`` instances then share keys and sessions
through the cluster while a client hops between them, and slots are resharded
under the running fleet. Negative controls: the same instances under different
service names (so nothing is shared) resume nothing across instances, and a TLS
1.3 stateful ticket taken by one instance does not resume on another.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest

from .redisutil import ClusterGroup, require_redis
from .support import ServeProcess, client_context
from .test_serve_redis import (
    RECONNECTIONS,
    SESSION_ARGS,
    StartFleet,
    _fleet_factory,
    _name,
    hop,
    in_redis,
    ring_total,
    session_id_client,
    stats_of,
    store_total,
)

require_redis()

from tlsresume import TicketKeyRing  # noqa: E402
from tlsresume.redis import KeySync, SessionTier, generate_master_key  # noqa: E402


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterGroup]:
    with ClusterGroup() as group:
        yield group


@pytest.fixture(scope="module")
def start_cluster_fleet(server_cert) -> Iterator[StartFleet]:  # type: ignore[no-untyped-def]
    started: list[ServeProcess] = []
    yield _fleet_factory(server_cert, started)
    for server in started:
        server.stop()


# --------------------------------------------------------------------------------------
# The library: a RedisCluster object and a URL, side by side
# --------------------------------------------------------------------------------------


def _wait_connected(tier: SessionTier) -> None:
    """Until the tier's writer learnt the slot map (a lookup wakes it)."""
    deadline = time.monotonic() + 5
    while tier.stats()["connections"] == 0 and time.monotonic() < deadline:
        tier.get(os.urandom(32))
        time.sleep(0.01)


def _stop_all(tiers: list[SessionTier], syncs: list[KeySync], rings: list[TicketKeyRing]) -> None:
    for t in tiers:
        t.stop()
    for s in syncs:
        s.stop()
    for r in rings:
        r.close()


def test_cluster_object_and_url_share_one_fleet(cluster: ClusterGroup) -> None:
    """A node handed a ``RedisCluster`` and a node handed the ``redis+cluster://``
    URL keep one ring (the same keys, one seed) and one session tier: what one
    writes, the other takes, and the sessions land on every master. The ring's
    key lives on the master of its slot, which the stats name."""
    master = generate_master_key()
    name = _name()
    caller = cluster.client()
    rings = [TicketKeyRing(), TicketKeyRing()]
    syncs = [
        KeySync(rings[0], caller, name=name, master_key=master, start=False, require_redis=True),
        KeySync(rings[1], cluster.url, name=name, master_key=master, start=False),
    ]
    tiers = [
        SessionTier(caller, name=name, master_key=master),
        SessionTier(cluster.url, name=name, master_key=master),
    ]
    try:
        assert [s.stats()["seeds"] for s in syncs] == [1, 0]
        assert [k.name for k in rings[0].keys()] == [k.name for k in rings[1].keys()]
        slot_master = caller.get_node_from_key(syncs[0].key)
        assert syncs[1].stats()["redis_node"] == f"{slot_master.host}:{slot_master.port}"
        syncs[1].sync(now=time.time() + rings[1].rotation_period + 1)  # due: rotates
        syncs[0].sync()
        assert [s.stats()["generation"] for s in syncs] == [2, 2]
        assert [k.name for k in rings[0].keys()] == [k.name for k in rings[1].keys()]
        assert all(t.check(require_redis=True) for t in tiers)
        ids = [os.urandom(32) for _ in range(60)]
        der = b"\x30\x03\x02\x01\x01"  # opaque to the tier (not a TLS 1.3 session)
        for sid in ids:
            tiers[0].put(sid, der, time.time() + 60)
        assert tiers[0].flush(5.0)
        assert tiers[0].stats()["written"] == len(ids)
        spread = cluster.keys_per_node(f"tlsresume:session:{name}:*")
        assert sum(spread) >= len(ids) and min(spread) > 0, spread  # every master holds some
        _wait_connected(tiers[1])
        found = [tiers[1].get(sid) for sid in ids]
        assert found == [der] * len(ids), tiers[1].stats()
        assert tiers[1].get(os.urandom(32)) is None  # control: an unknown ID misses
        caller.ping()  # the caller's client is theirs: still open and working
    finally:
        _stop_all(tiers, syncs, rings)
        caller.close()


def test_a_stopped_master_costs_only_its_own_sessions(cluster: ClusterGroup) -> None:
    """One master SIGSTOPped: a lookup for a session in its slots waits the bound
    once (plus the client's slot-map refresh), then that node is skipped; sessions
    on the other masters still resume. No lookup waits 20x the bound. Control: with
    every master answering, every session is found."""
    name = _name()
    tier = SessionTier(cluster.url, name=name, insecure_unsealed=True)
    client = cluster.client()
    try:
        ids = [os.urandom(32) for _ in range(60)]
        for sid in ids:
            tier.put(sid, b"\x30\x03\x02\x01\x01", time.time() + 60)
        assert tier.flush(5.0)
        assert all(tier.get(sid) for sid in ids)  # control
        stopped = cluster.nodes[1]
        on_stopped = {
            sid
            for sid in ids
            if client.get_node_from_key(f"tlsresume:session:{name}:{sid.hex()}").port
            == stopped.port
        }
        assert 0 < len(on_stopped) < len(ids)
        stopped.pause()
        waits, found = [], 0
        try:
            for sid in ids:
                start = time.monotonic()
                found += tier.get(sid) is not None
                waits.append(time.monotonic() - start)
        finally:
            stopped.resume()
        assert found == len(ids) - len(on_stopped), tier.stats()
        assert max(waits) < 20 * tier.timeout, max(waits)
        assert tier.stats()["skipped_down"] >= len(on_stopped) - 1
    finally:
        tier.stop()
        client.close()


# --------------------------------------------------------------------------------------
# Three serve instances on the cluster
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster_key_file(tmp_path_factory) -> str:  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("cluster") / "master.key"
    path.write_text(generate_master_key() + "\n")
    path.chmod(0o600)
    return str(path)


def _on_cluster(cluster: ClusterGroup, key_file: str, *extra: str) -> list[str]:
    """``serve`` arguments for a fleet of its own (a new name) on the cluster."""
    return [
        *extra,
        "--redis",
        cluster.url,
        "--redis-name",
        _name(),
        "--redis-master-key-file",
        key_file,
    ]


@pytest.fixture(scope="module")
def ticket_fleet(start_cluster_fleet, cluster, cluster_key_file) -> list[ServeProcess]:  # type: ignore[no-untyped-def]
    return start_cluster_fleet(*_on_cluster(cluster, cluster_key_file, "--no-session-cache"))


@pytest.fixture(scope="module")
def session_fleet(start_cluster_fleet, cluster, cluster_key_file) -> list[ServeProcess]:  # type: ignore[no-untyped-def]
    return start_cluster_fleet(*_on_cluster(cluster, cluster_key_file, *SESSION_ARGS))


def _redis_name(fleet: list[ServeProcess]) -> str:
    args = list(fleet[0].args)
    return args[args.index("--redis-name") + 1]


@pytest.mark.interop
@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_tickets_resume_across_instances_on_a_cluster(ticket_fleet, server_cert, version) -> None:  # type: ignore[no-untyped-def]
    """Tickets from any instance resume on the others: >= 39 of 40 hops."""
    hops, _ = hop(ticket_fleet, client_context(server_cert.cafile, version), RECONNECTIONS)
    print(f"TLS {version} tickets, 3 instances on a Redis Cluster: {hops}")
    assert hops.resumed >= 39, hops
    stats = stats_of(ticket_fleet, server_cert.cafile)
    assert ring_total(stats, "rejected_unknown") == 0
    syncs = [s["redis"]["key_sync"] for s in stats]
    assert all(k["redis_up"] and k["sync_failures"] == 0 for k in syncs), syncs
    assert sum(k["seeds"] for k in syncs) == 1
    assert len({k["redis_node"] for k in syncs}) == 1  # the master of the ring's slot


@pytest.mark.interop
def test_separate_names_on_one_cluster_share_nothing(  # type: ignore[no-untyped-def]
    start_cluster_fleet, cluster, cluster_key_file, server_cert
) -> None:
    """Negative control: the same three instances, each under its own service name
    on the same cluster, resume no hop (each resumes its own tickets)."""
    fleet = [
        start_cluster_fleet(*_on_cluster(cluster, cluster_key_file, "--no-session-cache"), count=1)[
            0
        ]
        for _ in range(3)
    ]
    ctx = client_context(server_cert.cafile, "1.3")
    hops, _ = hop(fleet, ctx, 12)
    assert hops.reconnections == 12 and hops.resumed == 0, hops
    assert hop([fleet[0]], ctx, 4)[0].resumed == 4


@pytest.mark.interop
def test_session_ids_and_stateful_tickets_across_instances_while_slots_move(  # type: ignore[no-untyped-def]
    session_fleet, cluster, server_cert
) -> None:
    """Tickets off: TLS 1.2 sessions by ID and TLS 1.3 stateful tickets cross
    instances through the cluster (>= 39 of 40 each), and a hopping client keeps
    every handshake succeeding while 2,000 slots move between masters with their
    keys (``hop`` asserts every answer)."""
    name = _redis_name(session_fleet)
    settle = in_redis(cluster, name)  # type: ignore[arg-type]
    for version in ("1.2", "1.3"):
        before = store_total(stats_of(session_fleet, server_cert.cafile), "remote_hits")
        ctx = session_id_client(server_cert.cafile, version)
        hops, _ = hop(session_fleet, ctx, RECONNECTIONS, settle=settle)
        print(f"TLS {version} session IDs on a Redis Cluster: {hops}")
        assert hops.resumed >= 39, hops
        after = store_total(stats_of(session_fleet, server_cert.cafile), "remote_hits")
        assert after - before >= (2 if version == "1.2" else hops.resumed)
    # A slot migration under a running fleet.
    failures: list[BaseException] = []
    done = threading.Event()
    results = []

    def client_loop() -> None:
        ctx = session_id_client(server_cert.cafile, "1.3")
        session = None
        start = 0
        try:
            while not done.is_set():
                hops, session = hop(
                    session_fleet, ctx, 10, settle=settle, session=session, start=start
                )
                start += 10
                results.append(hops)
        except BaseException as exc:
            failures.append(exc)

    worker = threading.Thread(target=client_loop)
    worker.start()
    try:
        time.sleep(0.3)
        cluster.reshard(0, 2, 1000)
        cluster.reshard(1, 0, 1000)
        time.sleep(0.3)
    finally:
        done.set()
        worker.join(60)
    assert not failures, failures
    total = sum(h.reconnections for h in results)
    resumed = sum(h.resumed for h in results)
    print(f"during resharding: {resumed} of {total} resumed")
    assert total >= 20 and resumed >= total * 0.9, results


@pytest.mark.interop
def test_a_stateful_ticket_is_taken_once_across_instances(
    session_fleet, cluster, server_cert
) -> None:  # type: ignore[no-untyped-def]
    """A TLS 1.3 stateful ticket resumes on one instance (which takes it from the
    cluster atomically) and not on a third: single use holds across machines.
    Control: the instance that made the ticket resumed it on a first offer too."""
    name = _redis_name(session_fleet)
    ctx = session_id_client(server_cert.cafile, "1.3")
    settle = in_redis(cluster, name)  # type: ignore[arg-type]
    _, session = hop(session_fleet[:1], ctx, 0)
    assert session is not None
    settle(session)
    first, _ = hop(session_fleet[1:2], ctx, 1, session=session)
    second, _ = hop(session_fleet[2:3], ctx, 1, session=session)
    assert first.resumed == 1 and second.resumed == 0, (first, second)


# --------------------------------------------------------------------------------------
# URL forms
# --------------------------------------------------------------------------------------


def test_url_forms_are_checked_and_never_show_a_password(cluster: ClusterGroup) -> None:
    """The Sentinel and Cluster URL forms: a cluster URL with another database and a
    Sentinel URL without a service are ValueErrors that show the form to use; an
    unreachable Sentinel is an error at start (``require_redis``) whose message
    holds neither the master's nor the sentinels' password. Positive control: the
    same cluster URL without the database reaches the cluster."""
    from tlsresume.redis import RedisBackendError

    ring = TicketKeyRing()
    try:
        with pytest.raises(ValueError, match="database 0 only"):
            KeySync(ring, cluster.url + "/3", insecure_unsealed=True)
        with pytest.raises(ValueError, match=r"redis\+sentinel://host:port\[,host:port\]/SERVICE"):
            KeySync(ring, "redis+sentinel://127.0.0.1:1", insecure_unsealed=True)
        with pytest.raises(ValueError, match="cannot read host:port"):
            SessionTier("redis+cluster://127.0.0.1:x", insecure_unsealed=True)
        url = "redis+sentinel://:m-secret@127.0.0.1:1,127.0.0.1:2/svc?sentinel_password=s-secret"
        with pytest.raises(RedisBackendError) as refused:
            KeySync(ring, url, insecure_unsealed=True, require_redis=True, timeout=0.2)
        text = str(refused.value)
        assert "cannot reach Redis" in text and "svc" in text, text
        assert "m-secret" not in text and "s-secret" not in text, text
        sync = KeySync(ring, cluster.url, name=_name(), insecure_unsealed=True, start=False)
        assert sync.stats()["redis_up"] and sync.stats()["seeds"] == 1
        sync.stop()
    finally:
        ring.close()


def test_a_tls_cluster_through_a_rediss_url(ca) -> None:  # type: ignore[no-untyped-def]
    """A cluster that speaks TLS only (clients and bus), reached with
    ``rediss+cluster://...?ssl_ca_certs=CA``: keys and sessions are shared, sealed.
    Negative control: the same URL without the CA is refused at start (the
    certificate does not verify), never downgraded to plain text."""
    from tlsresume.redis import RedisBackendError

    with ClusterGroup(tls=ca) as tls_cluster:
        master = generate_master_key()
        name = _name()
        rings = [TicketKeyRing(), TicketKeyRing()]
        syncs = [
            KeySync(r, tls_cluster.url, name=name, master_key=master, start=False) for r in rings
        ]
        tiers = [SessionTier(tls_cluster.url, name=name, master_key=master) for _ in rings]
        try:
            assert [s.stats()["redis_up"] for s in syncs] == [True, True]
            assert [k.name for k in rings[0].keys()] == [k.name for k in rings[1].keys()]
            sid = os.urandom(32)
            tiers[0].put(sid, b"\x30\x03\x02\x01\x01", time.time() + 60)
            assert tiers[0].flush(5.0) and tiers[0].stats()["written"] == 1
            _wait_connected(tiers[1])
            assert tiers[1].get(sid) == b"\x30\x03\x02\x01\x01", tiers[1].stats()
        finally:
            _stop_all(tiers, syncs, rings)
        no_ca = tls_cluster.url.split("?", 1)[0]
        ring = TicketKeyRing()
        try:
            with pytest.raises(RedisBackendError, match="cannot reach Redis"):
                KeySync(ring, no_ca, name=name, master_key=master, require_redis=True)
        finally:
            ring.close()
