"""The shared server session store: resumption by ID and stateful tickets across
workers, correct eviction, capacity, expiry, concurrency, crash and corruption."""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import random
import signal
import ssl
import struct
import time
import uuid

import pytest
import trustme

import tlsresume
from tlsresume import SessionStore, SharedMemoryError
from tlsresume._binding import lib
from tlsresume._extra import foreign
from tlsresume._extra import testhooks as load_testhooks
from tlsresume.regions import region_path

from .handshake import memory_pair, prefork, reconnect, s_client_reconnect, server_context

TLS12 = ssl.TLSVersion.TLSv1_2
TLS13 = ssl.TLSVersion.TLSv1_3


@pytest.fixture(scope="module")
def cert(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("localhost")


@pytest.fixture(scope="module")
def cafile(ca: trustme.CA, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def id_client(ca: trustme.CA) -> ssl.SSLContext:
    """A client that resumes by session ID only (sends no ticket extension)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(ctx)
    ctx.options |= ssl.OP_NO_TICKET
    return ctx


@pytest.fixture
def store_name() -> str:
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    lib.tlsr_store_unlink(name.encode())


def no_ticket_server(cert, version, store=None, clean=True):  # type: ignore[no-untyped-def]
    ctx = server_context(cert, None, version)
    ctx.options |= ssl.OP_NO_TICKET
    if store is not None:
        tlsresume.install(ctx, session_cache=store)
    return ctx


# ---- across workers, real peers ------------------------------------------------------


def test_s_client_resumes_by_id_across_four_workers(cert, cafile) -> None:
    """openssl s_client -no_ticket reconnects resume across workers through the store."""
    with SessionStore("1M") as store:
        with prefork(lambda: no_ticket_server(cert, TLS12, store), workers=4) as fleet:
            r = s_client_reconnect(fleet.port, 40, cafile, "-no_ticket", "-tls1_2")
        assert r.resumed >= 39 and len(r.pids or ()) >= 3, r
        assert store.stats()["hits"] >= 39


def test_s_client_without_store_resumes_only_on_its_own_worker(cert, cafile) -> None:
    """Negative control: per-worker OpenSSL caches, same fleet, same client: nothing
    resumes across workers (the only resumptions are returns to the same worker, at
    most a quarter at random, none with round-robin accepts)."""
    with prefork(lambda: no_ticket_server(cert, TLS12), workers=4) as fleet:
        r = s_client_reconnect(fleet.port, 40, cafile, "-no_ticket", "-tls1_2")
    assert r.cross_resumed == 0 and r.resumed == r.same_worker, r
    assert len(r.pids or ()) >= 3, r


@pytest.mark.parametrize("version", [TLS12, TLS13], ids=["tls1.2", "tls1.3"])
def test_python_clients_resume_across_workers_tickets_off(cert, id_client, version) -> None:
    """Tickets off: TLS 1.2 session IDs and TLS 1.3 stateful tickets resume on any worker."""
    with SessionStore("1M") as store:
        with prefork(lambda: no_ticket_server(cert, version, store), workers=4) as fleet:
            resumed, pids = reconnect(fleet.port, id_client, 40)
        assert resumed >= 39 and len(pids) >= 3, (resumed, pids)


def test_unclean_close_keeps_sessions(cert, id_client) -> None:
    """Server and client close without close_notify: sessions still resume."""
    with SessionStore("1M") as store:
        with prefork(
            lambda: no_ticket_server(cert, TLS12, store), workers=2, clean_close=False
        ) as fleet:
            resumed, _ = reconnect(fleet.port, id_client, 20, clean_close=False)
        assert resumed == 20
        assert store.stats()["kept_on_unclean_close"] >= 20


def test_unclean_close_without_store_loses_sessions(cert, id_client) -> None:
    """Negative control: one worker, OpenSSL's own cache, unclean closes: no resumption."""
    with prefork(lambda: no_ticket_server(cert, TLS12), workers=1, clean_close=False) as fleet:
        resumed, _ = reconnect(fleet.port, id_client, 10, clean_close=False)
    assert resumed == 0


def test_private_store_fixes_unclean_close_for_one_process(cert, id_client) -> None:
    """session_cache="1M" alone (no sharing) keeps one process's sessions alive."""

    def make() -> ssl.SSLContext:
        ctx = no_ticket_server(cert, TLS12)
        return tlsresume.install(ctx, session_cache="1M")

    with prefork(make, workers=1, clean_close=False) as fleet:
        resumed, _ = reconnect(fleet.port, id_client, 10, clean_close=False)
    assert resumed == 10


def test_single_use_ticket_cannot_be_replayed(cert, id_client) -> None:
    """TLS 1.3 stateful ticket with single_use: first resumption works, a replay does not."""
    with SessionStore("1M", single_use=True) as store:
        a, b = no_ticket_server(cert, TLS13, store), no_ticket_server(cert, TLS13, store)
        session, _ = memory_pair(a, id_client)
        assert memory_pair(b, id_client, session)[1]
        assert not memory_pair(a, id_client, session)[1]  # replayed on another context
        assert store.stats()["consumed"] == 1


def test_reusable_tickets_without_single_use(cert, id_client) -> None:
    """Control for single-use: without it the same stateful ticket resumes twice."""
    with SessionStore("1M") as store:
        a = no_ticket_server(cert, TLS13, store)
        session, _ = memory_pair(a, id_client)
        assert memory_pair(a, id_client, session)[1]
        assert memory_pair(a, id_client, session)[1]


# Which fatal alerts evict a session (and which, sent by someone without its keys,
# do not) is pinned in test_alerts.py.


# ---- capacity, LRU, expiry (time under the test's control) ----------------------------


def ordinary_session_size(cert, id_client) -> int:
    """The DER size of the session a real handshake stores (and proof it takes one slot)."""
    with SessionStore("1M") as probe:
        session, _ = memory_pair(no_ticket_server(cert, TLS12, probe), id_client)
        assert probe.stats()["used_slots"] == 1
        der = probe.get(session.id)
        assert der is not None
        return len(der)


def test_a_megabyte_holds_over_4000_ordinary_sessions(cert, id_client) -> None:
    """1 MB stores at least 4,000 sessions of the size real handshakes produce."""
    size = ordinary_session_size(cert, id_client)
    with SessionStore("1M") as store:
        for i in range(5000):
            store.put(i.to_bytes(32, "big"), b"s" * size, expires=time.time() + 60)
        assert len(store) >= 4000
        assert store.stats()["evictions"] == 5000 - len(store)


def test_eviction_is_least_recently_used_first() -> None:
    """Past capacity the oldest entries go first; a lookup refreshes an entry."""
    with SessionStore("64K") as store:
        cap, now = store.capacity, 1000.0
        ids = [i.to_bytes(32, "big") for i in range(cap + 10)]
        for sid in ids[:cap]:
            store.put(sid, b"x" * 100, expires=now + 60, now=now)
        assert store.get(ids[0], now=now) is not None  # touch the oldest
        for sid in ids[cap:]:
            store.put(sid, b"x" * 100, expires=now + 60, now=now)
        assert store.get(ids[0], now=now) is not None  # refreshed: survived
        assert all(store.get(sid, now=now) is None for sid in ids[1:11])  # oldest gone
        assert all(store.get(sid, now=now) is not None for sid in ids[-10:])


def test_expired_entries_are_never_served() -> None:
    """An entry is served before its expiry and never after."""
    with SessionStore("64K") as store:
        store.put(b"a" * 32, b"der", expires=100.0, now=0)
        assert store.get(b"a" * 32, now=99.9) == b"der"
        assert store.get(b"a" * 32, now=100.0) is None
        assert store.stats()["expirations"] == 1 and len(store) == 0


def test_store_honours_session_timeout(cert, id_client) -> None:
    """Entries expire with the context's session timeout, counted as expirations."""
    with SessionStore("1M") as store:
        ctx = no_ticket_server(cert, TLS12, store)
        tlsresume.set_session_timeout(ctx, 1)
        assert tlsresume.session_timeout(ctx) == 1
        session, _ = memory_pair(ctx, id_client)
        assert memory_pair(ctx, id_client, session)[1]
        time.sleep(2.1)  # OpenSSL session times have one-second resolution
        assert not memory_pair(ctx, id_client, session)[1]
        assert store.stats()["expirations"] == 1


def test_oversize_sessions_are_skipped_and_counted() -> None:
    """A session larger than an eighth of the store is skipped whole, never truncated."""
    with SessionStore("64K") as store:
        assert store.put(b"b" * 32, b"y" * 12000, expires=time.time() + 60) is False
        assert store.stats()["oversize"] == 1 and len(store) == 0
        assert store.put(b"c" * 32, b"z" * 3000, expires=time.time() + 60) is True
        assert store.get(b"c" * 32) == b"z" * 3000  # multi-slot entry intact


# ---- concurrency, crashes, corruption --------------------------------------------------


def _payload(sid: bytes) -> bytes:
    return hashlib.sha256(sid).digest() * (1 + sid[0] % 8)


def _hammer(store: SessionStore, worker: int, seconds: float, q) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(worker)
    mine: list[bytes] = []
    bad = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        # At most 6,000 puts each, so the store never fills and nothing is evicted:
        # then every surviving put must still be there at the end.
        if (rng.random() < 0.5 or not mine) and len(mine) < 6000:
            sid = bytes([rng.randrange(256)]) + os.urandom(15) + worker.to_bytes(16, "big")
            store.put(sid, _payload(sid), expires=time.time() + 600)
            mine.append(sid)
        else:
            sid = rng.choice(mine)
            got = store.get(sid)
            if got is not None and got != _payload(sid):
                bad += 1
    q.put((worker, bad, mine))


def test_four_processes_hammering_with_one_killed(store_name) -> None:
    """4 processes put/get for seconds, one SIGKILLed mid-way: no corrupt entry, no
    deadlock, no update of a surviving process lost."""
    store = SessionStore("16M", name=store_name)
    mp = multiprocessing.get_context("fork")
    q = mp.Queue()
    procs = [mp.Process(target=_hammer, args=(store, w, 3.0, q)) for w in range(4)]
    for p in procs:
        p.start()
    time.sleep(1.0)
    os.kill(procs[3].pid, signal.SIGKILL)
    results = [q.get(timeout=30) for _ in range(3)]
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs[:3]] == [0, 0, 0]
    assert all(bad == 0 for _, bad, _ in results)
    stats = store.stats()
    assert stats["evictions"] == 0
    for _, _, mine in results:
        assert all(store.get(sid) == _payload(sid) for sid in mine)
    assert store.verify() <= 1  # at most the entry the killed process was writing
    store.close()


def test_writer_killed_mid_put_is_repaired(store_name) -> None:
    """A process dies inside a put holding the lock: the next user repairs, and the
    half-written entry is never served."""
    with SessionStore("1M", name=store_name) as store:
        store.put(b"k" * 32, b"keep", expires=time.time() + 60)
        pid = os.fork()
        if pid == 0:
            hffi, hlib = load_testhooks()
            hlib.tlsr_store_debug_die_in_put(
                foreign(hffi, "tlsr_store *", store._handle()), b"h" * 32, 32
            )
            os.kill(os.getpid(), signal.SIGKILL)
        os.waitpid(pid, 0)
        assert store.get(b"h" * 32) is None
        assert store.get(b"k" * 32) == b"keep"
        assert store.stats()["repairs"] == 1


def test_corrupt_region_is_rebuilt_with_a_warning(store_name, caplog) -> None:
    """A named store whose header was scribbled over is rebuilt empty, with a warning."""
    first = SessionStore("1M", name=store_name)
    first.put(b"q" * 32, b"v", expires=time.time() + 60)
    first.close()
    with open(region_path("store", store_name), "r+b") as f:
        f.write(b"\xde\xad\xbe\xef" * 16)
    with caplog.at_level(logging.WARNING, logger="tlsresume"):
        again = SessionStore.open(store_name, "1M")
    assert "rebuilt" in caplog.text
    assert again.get(b"q" * 32) is None
    again.put(b"r" * 32, b"w", expires=time.time() + 60)
    assert again.get(b"r" * 32) == b"w"
    again.close()


class _RawStore:
    """A named store's shared memory as bytes, laid out as store.c (version 3) does:
    for scribbling on it the way a buggy or hostile process of the same user could."""

    HEAD, SLOT, HDR = 1, 256, 40  # slot state "head", slot size, slot header size

    def __init__(self, name: str) -> None:
        self.path = region_path("store", name)
        with open(self.path, "rb") as f:
            data = f.read()
        self.nslots = struct.unpack_from("<I", data, 72)[0]
        self.slots_off = struct.unpack_from("<Q", data, 120)[0]

    def _at(self, i: int, field: int) -> int:
        return self.slots_off + (i - 1) * self.SLOT + field

    def read(self, i: int, field: int, fmt: str) -> int:
        with open(self.path, "rb") as f:
            f.seek(self._at(i, field))
            return struct.unpack("<" + fmt, f.read(struct.calcsize(fmt)))[0]

    def write(self, i: int, field: int, fmt: str, value: int) -> None:
        with open(self.path, "r+b") as f:
            f.seek(self._at(i, field))
            f.write(struct.pack("<" + fmt, value))

    def head_of(self, sid: bytes) -> int:
        with open(self.path, "rb") as f:
            data = f.read()
        for i in range(1, self.nslots + 1):
            at = self._at(i, 0)
            if (
                data[at + 34] == self.HEAD
                and data[at + 35] == len(sid)
                and data[at + self.HDR : at + self.HDR + len(sid)] == sid
            ):
                return i
        raise AssertionError(f"no entry for {sid!r}")

    def chain(self, head: int) -> list[int]:
        out = [head]
        while (nxt := self.read(out[-1], 12, "I")) and len(out) < self.nslots:
            out.append(nxt)
        return out


# slot header fields (offsets)
PREV, NEXT, CONT, DER_LEN = 4, 8, 12, 32


def _survives(fn) -> int:  # type: ignore[no-untyped-def]
    """Run fn in a forked child; its exit status (0: returned, else crashed or raised)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = fn() or 0
        finally:
            os._exit(code)
    return os.waitpid(pid, 0)[1]


def test_scribbled_lru_links_never_write_outside_the_region(store_name) -> None:
    """LRU links pointing outside the slots (another process scribbled them) cost
    order, not a wild write: hits, evictions and verify all run, entries stay right."""
    store = SessionStore("64K", name=store_name)
    sids = [bytes([i]) * 16 for i in range(1, 4)]
    for sid in sids:
        store.put(sid, sid * 2, expires=time.time() + 600)
    raw = _RawStore(store_name)
    victim = raw.head_of(sids[1])
    raw.write(victim, PREV, "I", 0xFFFFFFFF)
    raw.write(victim, NEXT, "I", 0xFFFFFF00)

    def use() -> None:
        assert store.get(sids[1]) == sids[1] * 2  # a hit moves it in the LRU list
        for i in range(400):  # fill well past capacity: evictions walk the list
            store.put(i.to_bytes(4, "big") * 4, b"x" * 100, expires=time.time() + 600)
        store.verify()

    assert _survives(use) == 0
    store.put(b"z" * 16, b"after", expires=time.time() + 600)
    assert store.get(b"z" * 16) == b"after"
    store.close()


def test_scribbled_chain_end_is_not_followed_by_verify(store_name) -> None:
    """The last slot of an intact entry linking onward to garbage: verify() keeps the
    entry and walks only its own slots (it used to follow the link off the region)."""
    store = SessionStore("64K", name=store_name)
    sid = b"c" * 32
    store.put(sid, b"d" * 300, expires=time.time() + 600)  # two slots
    raw = _RawStore(store_name)
    last = raw.chain(raw.head_of(sid))[-1]
    raw.write(last, CONT, "I", 0xFFFFFFF0)
    assert _survives(lambda: 0 if store.verify() == 0 else 3) == 0
    assert store.get(sid) == b"d" * 300
    store.close()


def test_oversized_length_in_a_scribbled_entry_is_dropped(store_name) -> None:
    """An entry claiming more bytes than any session may have (its chain run into
    another entry's) is dropped by verify() without reading past its buffer, and
    the intact entry it ran into is kept."""
    store = SessionStore("1M", name=store_name)
    a, b = b"a" * 32, b"b" * 32
    big = lib.TLSR_STORE_MAX_DER
    store.put(a, b"A" * big, expires=time.time() + 600)
    store.put(b, b"B" * big, expires=time.time() + 600)
    raw = _RawStore(store_name)
    chain_a, chain_b = raw.chain(raw.head_of(a)), raw.chain(raw.head_of(b))
    raw.write(chain_a[-1], CONT, "I", chain_b[1])  # a's chain runs on into b's
    room = (len(chain_a) + len(chain_b) - 1) * (raw.SLOT - raw.HDR) - len(a)
    raw.write(chain_a[0], DER_LEN, "H", min(room, 0xFFFF))
    assert room > big
    assert _survives(lambda: 0 if store.verify() == 1 else 3) == 0
    assert store.get(a) is None
    assert store.get(b) == b"B" * big
    store.close()


def test_region_too_small_for_any_slot_is_refused(store_name) -> None:
    """A region whose header is consistent but leaves room for no slot (nslots 0) is
    refused at attach instead of dividing by zero on the first lookup."""
    SessionStore("64K", name=store_name).close()
    path = region_path("store", store_name)
    with open(path, "r+b") as f:
        f.truncate(4096)
        f.seek(16)
        f.write(struct.pack("<Q", 4096))  # hdr.size
        f.seek(72)
        f.write(b"\0" * 32)  # nslots, free list, LRU ends, counts: all zero
        f.seek(112)
        f.write(struct.pack("<QQ", 256, 256))  # buckets_off, slots_off for 0 slots

    def attach_and_look() -> int:
        try:
            SessionStore.attach(store_name).get(b"x" * 16)
        except SharedMemoryError:
            return 0
        return 3

    assert _survives(attach_and_look) == 0


def test_garbage_entries_never_break_handshakes(cert, id_client) -> None:
    """Entries that do not decode as sessions: lookups miss (full handshakes), counted."""
    with SessionStore("1M") as store:
        ctx = no_ticket_server(cert, TLS12, store)
        sessions = [memory_pair(ctx, id_client)[0] for _ in range(5)]
        # Overwrite every entry with bytes that are not a session.
        for s in sessions:
            assert store.put(s.id, b"\x30\x03\x02\x01\x01", expires=time.time() + 60)
        for s in sessions:
            _, resumed = memory_pair(ctx, id_client, s)
            assert not resumed
        assert store.stats()["errors"] >= 5


def test_attach_missing_store_is_clear(store_name) -> None:
    """Attaching to a store that does not exist says how to create it."""
    with pytest.raises(SharedMemoryError, match="create it first"):
        SessionStore.attach(store_name)


@pytest.mark.parametrize("size", ["1x", "", "10", -5, 1.5, True])
def test_bad_sizes_are_refused(size) -> None:
    """Sizes must be bytes or 'NNK/M/G' strings of at least 64K."""
    with pytest.raises((ValueError, TypeError)):
        SessionStore(size)


def test_install_needs_something(cert) -> None:
    """install() with neither keys nor a session cache is a TypeError."""
    with pytest.raises(TypeError, match="needs ticket keys, a session_cache"):
        tlsresume.install(server_context(cert))


def test_tls13_with_tickets_on_does_not_fill_the_store(cert, ca) -> None:
    """TLS 1.3 sessions that travel in stateless tickets are not stored (never looked
    up by ID); with tickets off they are (stateful tickets)."""
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(client)
    with tlsresume.TicketKeyRing() as ring, SessionStore("1M") as store:
        ctx = tlsresume.install(server_context(cert, None, TLS13), ring, session_cache=store)
        session, _ = memory_pair(ctx, client)
        assert memory_pair(ctx, client, session)[1]
        assert store.stats()["stores"] == 0
        memory_pair(no_ticket_server(cert, TLS13, store), client)
        assert store.stats()["stores"] >= 1
