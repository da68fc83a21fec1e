"""Whatever bytes a key ring's region holds, service comes back without a restart.

Each test writes over a named ring's region file (the same memory every process
maps) as damage would, then runs real TLS 1.3 handshakes against a server in this
process: none may fail, resumption must come back within a second, and the ring
counts the repair. The controls show the damage is real (a reader refuses the
state, a lock held by a live process is never taken) and that nothing is robbed.
"""

from __future__ import annotations

import os
import random
import signal
import ssl
import struct
import time
import uuid
from collections.abc import Iterator

import pytest

from tlsresume import SessionStore, TicketKeyRing, errors
from tlsresume._extra import foreign
from tlsresume._extra import testhooks as load_testhooks
from tlsresume.regions import region_path

from .support import InProcessServer, client_context, https_get, resume_streak, time_to_heal


def _layout():  # type: ignore[no-untyped-def]
    hffi, hlib = load_testhooks()
    out = hffi.new("tlsr_ring_layout *")
    hlib.tlsr_ring_debug_layout(out)
    return out


L = _layout()
NO_SUCH_THREAD = 0x3FFFFFFE  # above any pid_max: names a thread that cannot exist


@pytest.fixture
def ring() -> Iterator[TicketKeyRing]:
    with TicketKeyRing(name=f"heal-{uuid.uuid4().hex[:8]}", session_cache=False) as r:
        yield r
        r.unlink()


@pytest.fixture
def server(ring: TicketKeyRing, server_cert) -> Iterator[InProcessServer]:  # type: ignore[no-untyped-def]
    import tlsresume

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(server_cert.cert, server_cert.key)
    tlsresume.install(ctx, ring)
    with InProcessServer(ctx) as s:
        yield s


def poke(ring: TicketKeyRing, offset: int, data: bytes) -> None:
    """Write bytes over the ring's region at offset (every mapping sees them)."""
    assert ring.name is not None
    fd = os.open(region_path("ring", ring.name), os.O_RDWR)
    try:
        assert os.pwrite(fd, data, offset) == len(data)
    finally:
        os.close(fd)


def peek(ring: TicketKeyRing, offset: int, size: int) -> bytes:
    assert ring.name is not None
    with open(region_path("ring", ring.name), "rb") as f:
        f.seek(offset)
        return f.read(size)


def active_state(ring: TicketKeyRing) -> int:
    """Offset of the copy of the state readers use."""
    (active,) = struct.unpack("<I", peek(ring, L.active, 4))
    return L.state + (active & 1) * L.state_size


def chain(server: InProcessServer, cafile: str, n: int) -> tuple[int, int]:
    """n + 1 TLS 1.3 connections, each offering the last one's session."""
    return resume_streak(server.host, server.port, client_context(cafile, "1.3"), n)


def heals(server: InProcessServer, cafile: str, within: float = 1.5) -> tuple[float, int]:
    """Handshakes until 20 reconnections in a row resume (TLS 1.3 tickets)."""
    return time_to_heal(server.host, server.port, client_context(cafile, "1.3"), within)


def test_lock_word_naming_no_thread_is_repaired(ring, server, server_cert) -> None:  # type: ignore[no-untyped-def]
    """A lock word naming a thread that does not exist (no robust-list owner, so
    the kernel never reports it dead): the next writer re-initialises the lock and
    rotates; handshakes never failed meanwhile and resume after."""
    poke(ring, L.lock, struct.pack("<i", NO_SUCH_THREAD))
    assert chain(server, server_cert.cafile, 5) == (5, 0)  # readers never take the lock
    ring.rotate()  # waits its 2 s, judges the owner gone, repairs
    stats = ring.stats()
    assert stats["repaired_lock"] == 1 and stats["rotations"] == 1, stats
    assert heals(server, server_cert.cafile)[1] == 0


def test_a_live_owner_is_never_robbed(ring, server, server_cert) -> None:  # type: ignore[no-untyped-def]
    """Control: a live process holds the lock. Writers time out (the ring does not
    rotate) and nobody re-initialises the lock; once that process dies, the next
    writer recovers it through the kernel's owner-died path."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        hffi, hlib = load_testhooks()
        hlib.tlsr_ring_debug_die_in_write(foreign(hffi, "tlsr_ring *", ring._handle()), 0)
        os.write(w, b"x")
        time.sleep(60)
        os._exit(0)
    assert os.read(r, 1) == b"x"
    try:
        with pytest.raises(errors.TLSResumeError):
            ring.rotate()
        assert ring.stats()["repaired_lock"] == 0
        assert chain(server, server_cert.cafile, 5) == (5, 0)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    ring.rotate()
    stats = ring.stats()
    assert stats["lock_recoveries"] == 1 and stats["repaired_lock"] == 0, stats


def test_sequence_left_odd_is_repaired(ring, server, server_cert) -> None:  # type: ignore[no-untyped-def]
    """The active copy's sequence made odd: every reader would retry it forever
    (the control: ring.keys() gives up). The next handshake's ticket repairs it
    under a try-lock; nothing failed."""
    at = L.seq + 8 * (struct.unpack("<I", peek(ring, L.active, 4))[0] & 1)
    (seq,) = struct.unpack("<Q", peek(ring, at, 8))
    poke(ring, at, struct.pack("<Q", seq | 1))
    with pytest.raises(errors.TLSResumeError):
        ring.keys()
    took, failed = heals(server, server_cert.cafile)
    assert failed == 0
    assert ring.stats()["repaired_sequence"] == 1
    assert len(ring.keys()) == 2


@pytest.mark.parametrize("field", ["period", "window", "flags", "due", "activated"])
def test_state_fields_written_over_are_restored(ring, server, server_cert, field) -> None:  # type: ignore[no-untyped-def]
    """One field of the active state overwritten (a negative period used to start a
    rotation storm; a due time in the future stopped rotation): the configuration
    comes back from the intact copy, the due time is derived again, a key
    'activated' in the future is rotated out; at most one rotation, no failure."""
    period, window = ring.rotation_period, ring.acceptance_window
    st = active_state(ring)
    value = {
        "period": (L.period, struct.pack("<q", -5)),
        "window": (L.window, struct.pack("<q", -7)),
        "flags": (L.flags, struct.pack("<I", 0xFFFF0000)),
        "due": (L.due, struct.pack("<q", 2**62)),
        "activated": (L.slots + L.key_activated, struct.pack("<q", 2**62)),
    }[field]
    poke(ring, st + value[0], value[1])
    took, failed = heals(server, server_cert.cafile)
    assert failed == 0
    stats = ring.stats()
    assert stats["repaired_state"] >= 1, stats
    assert stats["rotations"] <= 1, stats
    assert (ring.rotation_period, ring.acceptance_window) == (period, window)
    if field in ("due", "activated"):
        meta_due = struct.unpack("<q", peek(ring, active_state(ring) + L.due, 8))[0]
        assert meta_due < 2**62


def test_both_copies_written_over_fall_back_to_rotating_defaults(ring, server, server_cert) -> None:  # type: ignore[no-untyped-def]
    """Configuration gone from both copies: the ring takes the defaults (rotating
    hourly, keys accepted two hours), which keep the forward-secrecy bound."""
    for copy in (0, 1):
        poke(ring, L.state + copy * L.state_size + L.period, struct.pack("<q", 0))
    assert heals(server, server_cert.cafile)[1] == 0
    assert (ring.rotation_period, ring.acceptance_window, ring.auto_rotate) == (3600, 7200, True)


@pytest.mark.parametrize("seed", range(6))
def test_random_bytes_over_the_ring(ring, server, server_cert, seed) -> None:  # type: ignore[no-untyped-def]
    """Random bytes over everything after the region's identity (lock, active
    word, sequences, counters, both states, keys): no handshake fails, and
    resumption is back to 20 of 20 within 1.5 s (the lock's 0.2 s judgement and a
    rotation included)."""
    rng = random.Random(seed)
    size = os.path.getsize(region_path("ring", ring.name))  # type: ignore[arg-type]
    start = L.lock
    poke(ring, start, bytes(rng.getrandbits(8) for _ in range(size - start)))
    took, failed = heals(server, server_cert.cafile)
    assert failed == 0
    stats = ring.stats()
    print(f"seed {seed}: back in {took:.2f} s; {stats}")
    # The configuration was hit, so the counters restarted with the repairs.
    assert stats["repaired_state"] == 1 and stats["repaired_lock"] <= 1, stats
    assert stats["tickets_issued"] < 1000, stats


def test_a_ring_that_cannot_rotate_withholds_tickets(server_cert) -> None:  # type: ignore[no-untyped-def]
    """A live process holds the lock for good, so the ring cannot rotate: once the
    current key has encrypted for its period and the window after it, no ticket
    is issued under it (full handshakes, none failing) rather than stretch the
    forward-secrecy bound. Control: before that, tickets are issued."""
    import tlsresume

    name = f"stale-{uuid.uuid4().hex[:8]}"
    with TicketKeyRing(0.3, 0.3, name=name, session_cache=False) as ring:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(server_cert.cert, server_cert.key)
        with pytest.warns(tlsresume.TLSResumeWarning):
            tlsresume.install(ctx, ring)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            hffi, hlib = load_testhooks()
            hlib.tlsr_ring_debug_die_in_write(foreign(hffi, "tlsr_ring *", ring._handle()), 0)
            os.write(w, b"x")
            time.sleep(60)
            os._exit(0)
        assert os.read(r, 1) == b"x"
        client = client_context(server_cert.cafile, "1.2")
        try:
            with InProcessServer(ctx) as server:
                first = https_get(server.host, server.port, client)
                assert first.session is not None and first.session.has_ticket  # control
                time.sleep(0.7)  # past period + window: the key is stale
                late = https_get(server.host, server.port, client)
                assert late.session is not None and not late.session.has_ticket
                assert ring.stats()["withheld_stale_key"] >= 1
        finally:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        ring.unlink()


def test_identity_written_over_is_restored_and_shown(ring, server, server_cert) -> None:  # type: ignore[no-untyped-def]
    """Bytes over the region's identity (magic, kind, version, size): processes that
    attach later are refused (the control), until the next handshake in a process
    that maps it writes the identity back; tlsresume stats then shows the region as
    damaged and repaired."""
    import subprocess

    from .support import tlsresume_cmd

    poke(ring, 0, bytes(24))
    with pytest.raises(errors.SharedMemoryError):
        TicketKeyRing.attach(ring.name)
    assert heals(server, server_cert.cafile)[1] == 0
    with TicketKeyRing.attach(ring.name) as joined:
        assert joined.stats()["repaired_state"] >= 1
    out = subprocess.run(
        tlsresume_cmd("stats", ring.name), capture_output=True, text=True, timeout=60
    ).stdout
    assert "damaged, repaired" in out, out


# ---- the session store -------------------------------------------------------------
#
# The same damage over a named session store's region, with session-ID resumption
# (TLS 1.2, tickets off) through a server in this process. A store that meets a
# header it cannot trust starts over empty (its sessions wiped: see test_secrets), so
# "healed" means new sessions resume again.


@pytest.fixture
def store() -> Iterator[SessionStore]:
    with SessionStore("256K", name=f"heal-{uuid.uuid4().hex[:8]}") as s:
        yield s
        s.unlink()


@pytest.fixture
def id_server(store: SessionStore, server_cert) -> Iterator[InProcessServer]:  # type: ignore[no-untyped-def]
    import tlsresume

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(server_cert.cert, server_cert.key)
    ctx.options |= ssl.OP_NO_TICKET
    tlsresume.install(ctx, session_cache=store)
    with InProcessServer(ctx) as s:
        yield s


def poke_store(store: SessionStore, offset: int, data: bytes) -> None:
    assert store.name is not None
    fd = os.open(region_path("store", store.name), os.O_RDWR)
    try:
        assert os.pwrite(fd, data, offset) == len(data)
    finally:
        os.close(fd)


def id_chain(server: InProcessServer, cafile: str, n: int) -> tuple[int, int]:
    """Like chain(), over TLS 1.2 with session IDs (the server issues no tickets)."""
    return resume_streak(server.host, server.port, client_context(cafile, "1.2"), n)


def id_heals(server: InProcessServer, cafile: str, within: float = 4.0) -> tuple[float, int]:
    return time_to_heal(server.host, server.port, client_context(cafile, "1.2"), within)


def test_store_lock_word_naming_no_thread_is_repaired(store, id_server, server_cert) -> None:  # type: ignore[no-untyped-def]
    """The store's lock word names a thread that does not exist: every lookup used
    to time out (0 % session-ID resumption to the end of the run). Callbacks judge
    the owner gone over 0.2 s and re-initialise the lock; nothing failed."""
    assert id_chain(id_server, server_cert.cafile, 3) == (3, 0)  # control: it resumes
    poke_store(store, L.lock, struct.pack("<i", NO_SUCH_THREAD))
    resumed, failed = id_chain(id_server, server_cert.cafile, 3)
    assert failed == 0 and store.stats()["lock_timeouts"] >= 1  # the damage is real
    took, failed = id_heals(id_server, server_cert.cafile)
    assert failed == 0
    assert store.stats()["repairs"] >= 1
    print(f"store lock repaired, resuming again in {took:.2f} s")


def test_store_lock_of_a_live_owner_is_never_taken(store, server_cert) -> None:  # type: ignore[no-untyped-def]
    """Control: a live process holds the store's lock. Operations time out (misses,
    never errors) and nothing is repaired; once that process dies, the kernel's
    owner-died path recovers it and the index is rebuilt."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        hffi, hlib = load_testhooks()
        hlib.tlsr_store_debug_die_in_put(
            foreign(hffi, "tlsr_store *", store._handle()), b"d" * 32, 32
        )
        os.write(w, b"x")
        time.sleep(60)
        os._exit(0)
    assert os.read(r, 1) == b"x"
    try:
        before = store.stats()["repairs"]
        time.sleep(0.3)  # longer than the owner judgement: a dead owner would be taken by now
        with pytest.raises(errors.TLSResumeError):
            store.put(b"p" * 32, b"v", expires=time.time() + 60)
        assert store.stats()["repairs"] == before
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert store.put(b"p" * 32, b"v", expires=time.time() + 60)
    assert store.get(b"p" * 32) == b"v"


@pytest.mark.parametrize("seed", range(4))
def test_random_bytes_over_the_store(store, id_server, server_cert, seed) -> None:  # type: ignore[no-untyped-def]
    """Random bytes over everything after the region's identity (lock, geometry,
    flags, index, slots, the repair gate): no handshake fails, and session-ID
    resumption is back to 20 of 20 within 4 s (about 1.1 s on an idle machine: the
    lock's 0.2 s judgement, then 21 handshakes)."""
    assert id_chain(id_server, server_cert.cafile, 3) == (3, 0)
    rng = random.Random(seed)
    size = os.path.getsize(region_path("store", store.name))  # type: ignore[arg-type]
    poke_store(store, L.lock, rng.randbytes(size - L.lock))
    took, failed = id_heals(id_server, server_cert.cafile)
    assert failed == 0
    print(f"seed {seed}: store back in {took:.2f} s")
