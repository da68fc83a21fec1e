"""The shared ticket key ring: roles, rotation policy, sharing, recovery, bad input.

One file (over 500 lines): the ring's rotation, windows, locking and damage,
all against the same C ring.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import ssl
import stat
import struct
import time
import uuid
import warnings

import pytest
import trustme

import tlsresume
from tlsresume import (
    ContextError,
    RingClosedError,
    SharedMemoryError,
    StaticTicketKey,
    TicketKey,
    TicketKeyRing,
    keyfile,
)
from tlsresume._binding import lib
from tlsresume._extra import foreign
from tlsresume._extra import testhooks as load_testhooks
from tlsresume.regions import region_path

from .handshake import memory_pair, prefork, reconnect, reconnect_detail, server_context

TLS12 = ssl.TLSVersion.TLSv1_2
TLS13 = ssl.TLSVersion.TLSv1_3
VERSIONS = pytest.mark.parametrize("version", [TLS12, TLS13], ids=["tls1.2", "tls1.3"])


@pytest.fixture(scope="module")
def cert(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("localhost")


@pytest.fixture
def client(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(ctx)
    return ctx


@pytest.fixture
def ring_name() -> str:
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    lib.tlsr_ring_unlink(name.encode())


def roles(ring: TicketKeyRing) -> list[str]:
    return [k.role for k in ring.keys()]


# ---- the ring on its own -------------------------------------------------------


def test_new_ring_has_current_and_prepublished_next() -> None:
    """A fresh ring holds one encrypting key and one pre-published next key."""
    with TicketKeyRing() as ring:
        assert roles(ring) == ["current", "next"]
        assert all(k.size == 80 for k in ring.keys())
        assert ring.rotation_period == 3600 and ring.acceptance_window == 7200


def test_rotate_promotes_next_and_retires_current() -> None:
    """rotate(): next starts encrypting, current retires, a new next is drawn."""
    with TicketKeyRing() as ring:
        before = {k.role: k.name for k in ring.keys()}
        ring.rotate()
        after = {k.role: k.name for k in ring.keys()}
        assert after["current"] == before["next"]
        assert after["retired"] == before["current"]
        assert after["next"] not in before.values()
        assert ring.stats()["rotations"] == 1


def test_policy_rotates_only_when_period_is_over() -> None:
    """maybe_rotate is a no-op before the period ends and rotates once after it."""
    with TicketKeyRing(rotation_period=60) as ring:
        t0 = ring.keys()[0].activated
        assert ring.maybe_rotate(now=t0 + 59) is False
        assert ring.maybe_rotate(now=t0 + 60) is True
        assert roles(ring) == ["retired", "current", "next"]
        assert ring.maybe_rotate(now=t0 + 61) is False


def test_retired_key_expires_after_window_and_is_wiped() -> None:
    """A retired key decrypts until its window ends, then is wiped and reported expired."""
    with TicketKeyRing(rotation_period=60, acceptance_window=30) as ring:
        old = bytes.fromhex(ring.keys()[0].name)
        t0 = ring.keys()[0].activated
        ring.rotate(now=t0 + 1)
        assert ring.classify(old, now=t0 + 30) == "retired"
        assert ring.classify(old, now=t0 + 31) == "expired"
        assert ring.maybe_rotate(now=t0 + 31) is True  # wipes it
        assert roles(ring) == ["current", "next"]
        assert ring.classify(old, now=t0 + 32) == "expired"
        assert ring.classify(b"\x00" * 16) == "unknown"


# Just under INT64_MAX milliseconds: "never" for every practical purpose.
NEVER_S = float(2**63 // 1000 - 10**6)


def test_huge_rotation_period_means_never_rotate() -> None:
    """A period near the int64 limit saturates to "never": the ring does not rotate
    (activated + period used to overflow, and the ring rotated on every ticket)."""
    with TicketKeyRing(rotation_period=NEVER_S, acceptance_window=0) as ring:
        before = [k.name for k in ring.keys()]
        assert ring.maybe_rotate() is False
        assert ring.maybe_rotate(now=ring.keys()[0].activated + 10 * 365 * 86400) is False
        assert [k.name for k in ring.keys()] == before


def test_huge_acceptance_window_keeps_retired_keys() -> None:
    """Records loaded with a window near the int64 limit keep their retired key
    acceptable; the sum retired + window saturates instead of wrapping negative."""
    with TicketKeyRing() as ring:
        ring.rotate()
        records = ring.records()
        retired = next(r for r in records if r.role == "retired")
        ring.load_records(records, acceptance_window=NEVER_S)
        assert ring.classify(retired.key.name) == "retired"
        assert ring.maybe_rotate() is False
        assert roles(ring) == ["retired", "current", "next"]


def test_full_ring_drops_oldest_retired_first() -> None:
    """With every slot used, a rotation evicts the oldest retired key."""
    with TicketKeyRing(rotation_period=1, acceptance_window=14) as ring:
        first = bytes.fromhex(ring.keys()[0].name)
        t = ring.keys()[0].activated
        for i in range(15):
            ring.rotate(now=t + 0.001 * i)
        assert len(ring.keys()) == 16
        assert ring.classify(first, now=t) == "expired"


@pytest.mark.parametrize(
    ("period", "window"), [(0, None), (-1, None), (10, -1), (1, 15), ("1", None)]
)
def test_bad_periods_are_refused(period: object, window: object) -> None:
    """Non-positive periods, negative windows and windows over 14 periods are refused."""
    with pytest.raises((ValueError, TypeError)):
        TicketKeyRing(rotation_period=period, acceptance_window=window)  # type: ignore[arg-type]


def test_keys_never_expose_secrets() -> None:
    """keys() and repr show names and times only."""
    with TicketKeyRing() as ring:
        exported, current, nxt = ring.export_keys()
        secret = exported[current].hmac_key
        assert secret.hex() not in repr(ring.keys()) and secret.hex() not in repr(ring)
        assert (current, nxt) == (0, 1)


# ---- handshakes ----------------------------------------------------------------


@VERSIONS
def test_contexts_sharing_a_ring_resume_each_others_tickets(cert, client, version) -> None:
    """A ticket from one context resumes on another context using the same ring."""
    with TicketKeyRing() as ring:
        a, b = server_context(cert, ring, version), server_context(cert, ring, version)
        session, _ = memory_pair(a, client)
        assert tlsresume.ticket_key_name(session) == bytes.fromhex(ring.keys()[0].name)
        _, resumed = memory_pair(b, client, session)
        assert resumed
        stats = ring.stats()
        assert stats["resumed_current"] == 1 and stats["tickets_issued"] >= 1


@VERSIONS
def test_separate_contexts_without_ring_do_not_resume(cert, client, version) -> None:
    """Negative control: two plain contexts have different random ticket keys."""
    a, b = server_context(cert, None, version), server_context(cert, None, version)
    session, _ = memory_pair(a, client)
    _, resumed = memory_pair(b, client, session)
    assert not resumed


def test_tls12_ticket_stays_under_the_key_its_session_began_with(cert, client) -> None:
    """Forward secrecy: a TLS 1.2 session started under K0 and resumed after K1 (then
    K2) became current is never re-encrypted under a newer key (its ticket's key name
    stays K0), and it still resumes until its lifetime ends, then no more."""
    with TicketKeyRing(rotation_period=3600, acceptance_window=8) as ring:
        ctx = server_context(cert, ring, TLS12)
        tlsresume.set_session_timeout(ctx, 1)  # whole seconds: over by 2.2 s whatever the phase
        session, _ = memory_pair(ctx, client)
        k0 = tlsresume.ticket_key_name(session)
        for _ in range(2):
            ring.rotate()
            session, resumed = memory_pair(ctx, client, session)
            assert resumed
            assert tlsresume.ticket_key_name(session) == k0
        current = next(k.name for k in ring.keys() if k.role == "current")
        assert k0.hex() != current
        assert ring.stats()["resumed_older_key"] == 2
        time.sleep(2.2)  # the session's lifetime, not the key's window, ends it
        _, resumed = memory_pair(ctx, client, session)
        assert not resumed


def test_tls13_resumption_gets_a_fresh_ticket_under_the_current_key(cert, client) -> None:
    """TLS 1.3 resumptions run (EC)DHE and get a new ticket under the current key."""
    with TicketKeyRing() as ring:
        ctx = server_context(cert, ring, TLS13)
        old_session, _ = memory_pair(ctx, client)
        ring.rotate()
        new_session, resumed = memory_pair(ctx, client, old_session)
        assert resumed
        assert ring.stats()["resumed_older_key"] == 1
        current = next(k.name for k in ring.keys() if k.role == "current")
        assert tlsresume.ticket_key_name(new_session).hex() == current
        assert tlsresume.ticket_key_name(old_session).hex() != current


def test_short_window_for_the_session_timeout_warns(cert) -> None:
    """A window shorter than the context's session timeout would refuse live TLS 1.2
    sessions (they are not renewed), so install() says so."""
    with TicketKeyRing(rotation_period=600, acceptance_window=600) as ring:
        ctx = server_context(cert)
        with pytest.warns(tlsresume.TLSResumeWarning, match="acceptance window"):
            tlsresume.install(ctx, ring)
    with TicketKeyRing() as ring, warnings.catch_warnings():
        warnings.simplefilter("error")
        tlsresume.install(server_context(cert), ring)  # control: defaults cover 7200 s


@VERSIONS
def test_prepublished_next_key_is_accepted_before_it_encrypts(cert, client, version) -> None:
    """A ticket made under another process's rotation (our next key) is accepted."""
    with TicketKeyRing() as ahead, TicketKeyRing() as behind:
        keys, current, nxt = ahead.export_keys()
        behind.load_keys(keys, encrypt=current, next=nxt, auto_rotate=True)
        ahead.rotate()  # "ahead" now encrypts with the key "behind" only pre-publishes
        session, _ = memory_pair(server_context(cert, ahead, version), client)
        _, resumed = memory_pair(server_context(cert, behind, version), client, session)
        assert resumed
        assert behind.stats()["resumed_older_key"] == 1


@VERSIONS
def test_ticket_older_than_window_gets_full_handshake(cert, client, version) -> None:
    """A ticket whose key left the acceptance window means a full handshake, not an error."""
    with TicketKeyRing(rotation_period=3600, acceptance_window=0.2) as ring:
        ctx = server_context(cert, ring, version)
        session, _ = memory_pair(ctx, client)
        ring.rotate()
        time.sleep(0.25)
        _, resumed = memory_pair(ctx, client, session)
        assert not resumed
        assert ring.stats()["rejected_expired"] == 1


@VERSIONS
def test_unknown_key_gets_full_handshake(cert, client, version) -> None:
    """A ticket from an unrelated ring is unknown: full handshake, counted."""
    with TicketKeyRing() as mine, TicketKeyRing() as other:
        session, _ = memory_pair(server_context(cert, other, version), client)
        _, resumed = memory_pair(server_context(cert, mine, version), client, session)
        assert not resumed and mine.stats()["rejected_unknown"] == 1


def test_48_byte_keys_resume_with_aes128(cert, client) -> None:
    """Rings fed 48-byte keys (nginx48/openssl/haproxy layouts) issue and accept tickets."""
    with TicketKeyRing() as ring:
        ring.load_keys([TicketKey.generate(48)])
        assert ring.keys()[0].size == 48
        session, _ = memory_pair(server_context(cert, ring, TLS12), client)
        _, resumed = memory_pair(server_context(cert, ring, TLS12), client, session)
        assert resumed


def test_context_keeps_ring_alive_after_close(cert, client) -> None:
    """Closing the Python ring object does not pull the keys from under live contexts."""
    ring = TicketKeyRing()
    a, b = server_context(cert, ring), server_context(cert, ring)
    ring.close()
    session, _ = memory_pair(a, client)
    _, resumed = memory_pair(b, client, session)
    assert resumed


# ---- static key ------------------------------------------------------------------


@VERSIONS
def test_static_key_shared_between_contexts_resumes(cert, client, version) -> None:
    """The same static 80-byte key on two contexts: OpenSSL's own path resumes."""
    key = StaticTicketKey.generate()
    a = tlsresume.install(server_context(cert, None, version), key)
    b = tlsresume.install(server_context(cert, None, version), key)
    session, _ = memory_pair(a, client)
    assert tlsresume.ticket_key_name(session) == key.key.name
    _, resumed = memory_pair(b, client, session)
    assert resumed


def test_different_static_keys_do_not_resume(cert, client) -> None:
    """Negative control for the static path: different keys, full handshake."""
    a = tlsresume.install(server_context(cert), StaticTicketKey.generate())
    b = tlsresume.install(server_context(cert), StaticTicketKey.generate())
    session, _ = memory_pair(a, client)
    assert not memory_pair(b, client, session)[1]


def test_static_key_replaces_a_ring(cert, client) -> None:
    """Installing a static key after a ring removes the ring's callback."""
    with TicketKeyRing() as ring:
        key = StaticTicketKey.generate()
        ctx = tlsresume.install(tlsresume.install(server_context(cert), ring), key)
        assert not tlsresume.installed_ring(ctx)
        session, _ = memory_pair(ctx, client)
        assert tlsresume.ticket_key_name(session) == key.key.name


@pytest.mark.parametrize("size", [0, 48, 79, 81])
def test_static_key_needs_80_bytes(size: int) -> None:
    """OpenSSL 3 takes only 80-byte static keys; other sizes are refused clearly."""
    with pytest.raises(ValueError, match="80 bytes"):
        StaticTicketKey(os.urandom(size))


# ---- sharing between processes --------------------------------------------------


@VERSIONS
def test_forked_workers_with_own_contexts_share_the_ring(cert, client, version) -> None:
    """Four forked workers, each with its own SSLContext: 40 reconnections resume."""
    with TicketKeyRing() as ring:
        with prefork(lambda: server_context(cert, ring, version), workers=4) as fleet:
            resumed, pids = reconnect(fleet.port, client, 40)
        assert resumed >= 39 and len(pids) >= 3, (resumed, pids)
        assert ring.stats()["resumed_current"] >= 39  # counted across processes


@VERSIONS
def test_forked_workers_without_ring_do_not_resume(cert, client, version) -> None:
    """Negative control: without tlsresume no reconnection resumes on another worker;
    the only resumptions are returns to the session's own worker (which the kernel's
    accept order makes rare: at most a quarter with 4 workers at random, 0 when it
    hands connections round-robin)."""
    with prefork(lambda: server_context(cert, None, version), workers=4) as fleet:
        r = reconnect_detail(fleet.port, client, 40)
    assert r.cross_resumed == 0 and r.resumed == r.same_worker, r
    assert len(r.pids or ()) >= 3, r


def _spawned_worker(name: str, certfile: str, keyfile_: str, q: multiprocessing.Queue) -> None:
    """Runs in a spawned interpreter: attach by name, serve one memory pair's server side."""
    import ssl as ssl_

    import tlsresume as tr

    ring = tr.TicketKeyRing.attach(name)
    ctx = ssl_.SSLContext(ssl_.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certfile, keyfile_)
    tr.install(ctx, ring)
    q.put(ring.keys()[0].name)


def test_spawned_process_attaches_by_name(cert, client, ring_name, tmp_path) -> None:
    """A process started by spawn attaches to a named ring and sees the same keys."""
    certfile, keyfile_ = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile_))
    with TicketKeyRing(name=ring_name) as ring:
        mp = multiprocessing.get_context("spawn")
        q = mp.Queue()
        p = mp.Process(target=_spawned_worker, args=(ring_name, str(certfile), str(keyfile_), q))
        p.start()
        seen = q.get(timeout=30)
        p.join(30)
        assert p.exitcode == 0 and seen == ring.keys()[0].name


def test_named_ring_region_is_private(ring_name) -> None:
    """The region file of a named ring is mode 0600 whatever the umask."""
    old = os.umask(0)
    try:
        ring = TicketKeyRing(name=ring_name)
    finally:
        os.umask(old)
    mode = stat.S_IMODE(os.stat(region_path("ring", ring_name)).st_mode)
    assert mode == 0o600
    ring.unlink()
    assert not os.path.exists(region_path("ring", ring_name))
    ring.close()


def test_named_ring_pickles_as_its_name(ring_name) -> None:
    """A named ring crosses a spawn boundary as its name; an anonymous one refuses."""
    import pickle

    with TicketKeyRing(name=ring_name) as ring:
        clone = pickle.loads(pickle.dumps(ring))
        assert clone.keys() == ring.keys()
        clone.close()
    with TicketKeyRing() as anon, pytest.raises(TypeError, match="give it a name"):
        pickle.dumps(anon)


def test_open_creates_then_attaches(ring_name) -> None:
    """TicketKeyRing.open: the first caller creates, later callers attach."""
    with TicketKeyRing.open(ring_name) as first, TicketKeyRing.open(ring_name) as second:
        assert first.keys() == second.keys()


def test_region_errors_carry_the_core_code(ring_name) -> None:
    """A clash and a missing name raise SharedMemoryError whose ``code`` is the C
    core's TLSR_E_* value, which open() decides by (not by the message text)."""
    with pytest.raises(SharedMemoryError) as missing:
        TicketKeyRing.attach(ring_name)
    assert missing.value.code == lib.TLSR_E_NOTFOUND
    with TicketKeyRing(name=ring_name):
        with pytest.raises(SharedMemoryError) as clash:
            TicketKeyRing(name=ring_name)
        assert clash.value.code == lib.TLSR_E_EXISTS


def test_misuse_raises_a_subclass_never_the_base(tmp_path) -> None:
    """Asking a ring for what its state forbids raises StateError (a TLSResumeError
    subclass); the tools' errors derive from TLSResumeError too."""
    from tlsresume.errors import StateError, TLSResumeError
    from tlsresume.tools.bench import BenchError
    from tlsresume.tools.serve import ServeError

    with TicketKeyRing() as ring, pytest.raises(StateError, match="not fed from a key file"):
        ring.reload()
    assert issubclass(ServeError, TLSResumeError) and issubclass(BenchError, TLSResumeError)


# ---- recovery ------------------------------------------------------------------


def _die_holding_lock(ring: TicketKeyRing, scribble: bool) -> int:
    pid = os.fork()
    if pid == 0:
        hffi, hlib = load_testhooks()
        hlib.tlsr_ring_debug_die_in_write(
            foreign(hffi, "tlsr_ring *", ring._handle()), int(scribble)
        )
        os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(pid, 0)
    return pid


@pytest.mark.parametrize("scribble", [False, True], ids=["idle", "mid-write"])
def test_writer_killed_holding_lock_does_not_block_others(cert, client, scribble) -> None:
    """A process SIGKILLed inside a write: readers still work, the next writer repairs."""
    with TicketKeyRing() as ring:
        before = ring.keys()
        _die_holding_lock(ring, scribble)
        ctx = server_context(cert, ring)
        session, _ = memory_pair(ctx, client)  # readers never block
        assert ring.keys() == before
        ring.rotate()  # the writer recovers the lock
        assert ring.stats()["lock_recoveries"] == 1
        assert memory_pair(ctx, client, session)[1]  # old key now retired, still resumes


def _layout():  # type: ignore[no-untyped-def]
    """Offsets in a ring's shared memory, as the compiler laid it out (test hook)."""
    hffi, hlib = load_testhooks()
    out = hffi.new("tlsr_ring_layout *")
    hlib.tlsr_ring_debug_layout(out)
    return out


_L = _layout()
ACTIVE, STATE_SIZE = _L.active, _L.state_size
STATES = (_L.state, _L.state + _L.state_size)  # the two copies of the state
CURRENT, SLOTS, SLOT_SIZE, SECRET_LEN = _L.current, _L.slots, _L.key_size, _L.key_secret_len
GRAVE_COUNT = _L.grave_count


def _scribble_ring(name: str, offset: int, fmt: str, value: int) -> None:
    with open(region_path("ring", name), "r+b") as f:
        f.seek(offset)
        f.write(struct.pack("<" + fmt, value))


def _survives(fn) -> int:  # type: ignore[no-untyped-def]
    """Run fn in a forked child; its exit status (0: returned, else crashed or raised)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            fn()
            code = 0
        finally:
            os._exit(code)
    return os.waitpid(pid, 0)[1]


def _serve_and_rotate(ring: TicketKeyRing, cert, client) -> None:  # type: ignore[no-untyped-def]
    ctx = server_context(cert, ring)
    session, _ = memory_pair(ctx, client)
    assert memory_pair(ctx, client, session)[1]
    ring.classify(b"\x01" * 16)
    ring.rotate()
    ring.keys()


@pytest.mark.parametrize("what", ["active", "current", "grave_count", "secret_len"])
def test_scribbled_ring_fields_are_bounded(cert, client, ring_name, what) -> None:
    """Indices and lengths a reader or writer takes from the ring's shared memory are
    bounded, whatever another process wrote there: handshakes still issue and accept
    tickets, classify and rotate still work (they used to index or read off the
    region, or hand OpenSSL a 4 GiB key)."""
    with TicketKeyRing(name=ring_name) as ring:
        if what == "active":
            _scribble_ring(ring_name, ACTIVE, "I", 0x80000000)
        for st in STATES:
            slot = st + SLOTS  # slot 0 holds the current key of a new ring
            if what == "current":
                _scribble_ring(ring_name, st + CURRENT, "i", 0x7FFFFFFF)
            elif what == "grave_count":
                _scribble_ring(ring_name, st + GRAVE_COUNT, "I", 0x7FFFFFFF)
            elif what == "secret_len":
                _scribble_ring(ring_name, slot + SECRET_LEN, "I", 0xFFFFFFFF)
        assert _survives(lambda: _serve_and_rotate(ring, cert, client)) == 0


# ---- key files -----------------------------------------------------------------


def test_ring_from_file_follows_file_changes(cert, client, tmp_path) -> None:
    """A file-fed ring picks up a rewritten key file without a restart."""
    path = tmp_path / "tickets.keys"
    first = keyfile.generate("haproxy")
    keyfile.write(path, first, "haproxy")
    with TicketKeyRing.from_file(path, "haproxy", poll_interval=0.05) as ring:
        assert [k.name for k in ring.keys()] == [k.name_hex for k in first.keys]
        ctx = server_context(cert, ring)
        session, _ = memory_pair(ctx, client)
        assert tlsresume.ticket_key_name(session) == first.encrypting_key.name
        second = keyfile.generate("haproxy")
        keyfile.write(path, second, "haproxy")
        from .handshake import wait_until

        assert wait_until(lambda: ring.stats()["file_reloads"] == 1)
        new_session, resumed = memory_pair(ctx, client, session)
        assert not resumed  # the old keys are gone from the file
        assert tlsresume.ticket_key_name(new_session) == second.encrypting_key.name


def test_corrupt_key_file_keeps_old_keys(cert, client, tmp_path, caplog) -> None:
    """A key file rewritten with garbage is logged and the ring keeps its keys."""
    path = tmp_path / "tickets.keys"
    keyfile.write(path, keyfile.generate("openssl80"), "openssl80")
    with TicketKeyRing.from_file(path, "openssl80", poll_interval=None) as ring:
        before = ring.keys()
        path.write_bytes(b"short")
        assert ring.reload() is False
        assert ring.keys() == before and ring.stats()["file_errors"] == 1
        assert "keeping the current ticket keys" in caplog.text
        assert str(path) in caplog.text


def test_file_ring_refuses_rotate(tmp_path) -> None:
    """A file-fed ring rotates by rewriting the file; rotate() says so."""
    path = tmp_path / "k"
    keyfile.write(path, keyfile.generate("nginx"), "nginx")
    with TicketKeyRing.from_file(path, "nginx", poll_interval=None) as ring:
        with pytest.raises(tlsresume.TLSResumeError, match="writing a new"):
            ring.rotate()


@pytest.mark.parametrize("fmt", ["openssl80", "nginx", "haproxy"])
def test_ring_export_round_trips(fmt, tmp_path) -> None:
    """export() writes a 0600 file that from_file reads back into the same keys."""
    with TicketKeyRing() as ring:
        path = tmp_path / "out"
        ring.export(path, fmt)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        with TicketKeyRing.from_file(path, fmt, poll_interval=None) as loaded:
            current = next(k.name for k in loaded.keys() if k.role == "current")
            assert current == next(k.name for k in ring.keys() if k.role == "current")


# ---- bad input -----------------------------------------------------------------


def test_client_context_is_refused() -> None:
    """install() on a client context is a ContextError naming the fix."""
    with TicketKeyRing() as ring, pytest.raises(ContextError, match="PROTOCOL_TLS_SERVER"):
        tlsresume.install(ssl.create_default_context(), ring)


def test_non_context_is_refused() -> None:
    """install() on something that is not an SSLContext is a TypeError."""
    with TicketKeyRing() as ring, pytest.raises(TypeError, match="SSLContext"):
        tlsresume.install(object(), ring)  # type: ignore[arg-type]


def test_closed_ring_is_refused(cert) -> None:
    """A closed ring cannot be installed or used."""
    ring = TicketKeyRing()
    ring.close()
    with pytest.raises(RingClosedError, match="closed"):
        tlsresume.install(server_context(cert), ring)
    with pytest.raises(RingClosedError):
        ring.rotate()


def test_no_ticket_context_is_refused(cert) -> None:
    """A ring on a context with OP_NO_TICKET would never be used: refused."""
    ctx = server_context(cert)
    ctx.options |= ssl.OP_NO_TICKET
    with TicketKeyRing() as ring, pytest.raises(ContextError, match="OP_NO_TICKET"):
        tlsresume.install(ctx, ring)


def test_wrong_keys_argument_is_refused(cert) -> None:
    """install() with bytes or None instead of a ring is a TypeError."""
    with pytest.raises(TypeError, match="TicketKeyRing"):
        tlsresume.install(server_context(cert), b"x" * 80)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", "a/b", "../x", "x" * 201, "sp ace"])
def test_bad_ring_names_are_refused(name: str) -> None:
    """Ring names are restricted to a safe alphabet and length."""
    with pytest.raises(ValueError, match="invalid ring name"):
        TicketKeyRing(name=name)


def test_attach_to_missing_ring_is_clear(ring_name) -> None:
    """Attaching to a ring that does not exist says how to create it."""
    with pytest.raises(SharedMemoryError, match="create it first"):
        TicketKeyRing.attach(ring_name)


def test_creating_an_existing_name_is_refused(ring_name) -> None:
    """Two creators of one name: the second gets a clear error (use attach/open)."""
    with TicketKeyRing(name=ring_name), pytest.raises(SharedMemoryError, match="already exists"):
        TicketKeyRing(name=ring_name)


def test_region_of_another_kind_is_refused(ring_name) -> None:
    """A shm object under our name that is not a ring is refused, not trusted."""
    path = region_path("ring", ring_name)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.write(fd, b"\xff" * 8192)
    os.close(fd)
    with pytest.raises(SharedMemoryError):
        TicketKeyRing.attach(ring_name)


@VERSIONS
def test_rotation_under_load_fails_no_handshake(cert, client, version) -> None:
    """Rotating every second while clients reconnect: no failure, every ticket honoured
    (the window outlasts the run, as it must outlast the session lifetime: TLS 1.2
    tickets stay under their first key)."""
    import threading

    from .handshake import fetch

    with TicketKeyRing(rotation_period=1.0, acceptance_window=6.0) as ring:
        with prefork(lambda: server_context(cert, ring, version), workers=4) as fleet:
            stop = threading.Event()

            def rotate_every_second() -> None:
                while not stop.wait(1.0):
                    ring.rotate()

            rotator = threading.Thread(target=rotate_every_second)
            rotator.start()
            try:
                session, _, _ = fetch(fleet.port, client)
                attempts = resumed = 0
                deadline = time.monotonic() + 3.5
                while time.monotonic() < deadline:
                    session, was_resumed, _ = fetch(fleet.port, client, session)
                    attempts += 1
                    resumed += was_resumed
            finally:
                stop.set()
                rotator.join()
        stats = ring.stats()
        assert stats["rotations"] >= 3
        assert resumed == attempts, (resumed, attempts, stats)
        assert stats["resumed_older_key"] >= 1 and stats["rejected_unknown"] == 0


def test_records_round_trip_between_rings_with_times(cert, client) -> None:
    """load_records mirrors another ring exactly (roles and times): how a node follows
    keys decided elsewhere; tickets of either ring resume on the other."""
    with TicketKeyRing() as source, TicketKeyRing() as mirror:
        source.rotate()
        mirror.load_records(source.records(), acceptance_window=source.acceptance_window)
        assert mirror.keys() == source.keys()
        session, _ = memory_pair(server_context(cert, source), client)
        assert memory_pair(server_context(cert, mirror), client, session)[1]


def test_records_need_one_current_key() -> None:
    """load_records refuses a set without exactly one current key."""
    with TicketKeyRing() as ring:
        records = [r for r in ring.records() if r.role != "current"]
        with pytest.raises(ValueError, match="exactly one 'current'"):
            ring.load_records(records)


def test_key_listings_do_not_point_into_freed_memory() -> None:
    """records() and keys() hand out copies, not references into the C array they
    were read into (a cffi array element does not keep its array alive, so a
    reference would read freed memory). Reusing the heap with garbage right after
    the listing must not change what it says."""
    from tlsresume._binding import ffi

    ring = tlsresume.TicketKeyRing(session_cache=False)
    try:
        want = [(r.key, r.role) for r in ring.records()]
        infos = ring._key_infos(with_secrets=True)
        junk = []
        for _ in range(64):  # take the freed block back, and fill it with garbage
            block = ffi.new("tlsr_key_info[]", 16)
            ffi.memmove(block, b"\xff" * ffi.sizeof(block), ffi.sizeof(block))
            junk.append(block)
        roles = {1: "next", 2: "current", 3: "retired"}  # TLSR_KEY_*
        assert [(i.name, roles.get(i.role)) for i in infos] == [(k.name, r) for k, r in want]
        assert [(r.key, r.role) for r in ring.records()] == want
        assert len(junk) == 64
    finally:
        ring.close()
