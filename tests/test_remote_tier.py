"""The store's second tier: how sessions cross machines (Redis implements the same
protocol). Two separate stores stand in for two machines."""

from __future__ import annotations

import ssl
import threading
import time

import pytest
import trustme

import tlsresume
from tlsresume import SessionStore, remote

from .handshake import memory_pair, server_context

TLS12 = ssl.TLSVersion.TLSv1_2


class DictTier:
    """A remote tier in a dict, recording what it was asked."""

    def __init__(self, fail: bool = False, delay: float = 0.0) -> None:
        self.data: dict[bytes, tuple[bytes, float]] = {}
        self.gets = self.puts = self.removes = 0
        self.fail, self.delay = fail, delay

    def get(self, session_id: bytes) -> bytes | None:
        self.gets += 1
        if self.fail:
            raise ConnectionError("tier down")
        time.sleep(self.delay)
        entry = self.data.get(session_id)
        return entry[0] if entry and entry[1] > time.time() else None

    def put(self, session_id: bytes, der: bytes, expires: float) -> None:
        self.puts += 1
        if self.fail:
            raise ConnectionError("tier down")
        self.data[session_id] = (der, expires)

    def remove(self, session_id: bytes) -> None:
        self.removes += 1
        self.data.pop(session_id, None)


@pytest.fixture(scope="module")
def cert(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("localhost")


@pytest.fixture
def id_client(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(ctx)
    ctx.options |= ssl.OP_NO_TICKET
    return ctx


def machine(cert, store: SessionStore) -> ssl.SSLContext:  # type: ignore[no-untyped-def]
    ctx = server_context(cert, None, TLS12)
    ctx.options |= ssl.OP_NO_TICKET
    return tlsresume.install(ctx, session_cache=store)


def test_session_crosses_machines_through_the_tier(cert, id_client) -> None:
    """A session stored on machine A resumes on machine B via the shared tier,
    and B keeps it locally afterwards."""
    tier = DictTier()
    with SessionStore("1M") as a, SessionStore("1M") as b:
        a.set_remote(tier)
        b.set_remote(tier)
        session, _ = memory_pair(machine(cert, a), id_client)
        assert tier.puts == 1
        ctx_b = machine(cert, b)
        assert memory_pair(ctx_b, id_client, session)[1]
        assert b.stats()["remote_hits"] == 1 and len(b) == 1
        # (a TLS 1.3-capable client also sends a random legacy session ID in its
        # first ClientHello, which a TLS 1.2 server looks up: count from here)
        gets = tier.gets
        assert memory_pair(ctx_b, id_client, session)[1]
        assert tier.gets == gets  # the second lookup on B was local


def test_without_the_tier_machines_do_not_share(cert, id_client) -> None:
    """Negative control: two stores with no tier between them."""
    with SessionStore("1M") as a, SessionStore("1M") as b:
        session, _ = memory_pair(machine(cert, a), id_client)
        assert not memory_pair(machine(cert, b), id_client, session)[1]


def test_failing_tier_means_full_handshakes_not_errors(cert, id_client, caplog) -> None:
    """A tier that raises costs a full handshake and a logged, counted error."""
    before = remote.remote_errors()
    with SessionStore("1M") as a, SessionStore("1M") as b:
        a.set_remote(DictTier(fail=True))
        b.set_remote(DictTier(fail=True))
        session, _ = memory_pair(machine(cert, a), id_client)
        assert not memory_pair(machine(cert, b), id_client, session)[1]
    assert remote.remote_errors() >= before + 2
    assert "remote session tier failed" in caplog.text


def test_tier_survives_its_python_store_object(cert, id_client) -> None:
    """Contexts keep using the tier after the SessionStore object is closed."""
    tier = DictTier()
    a, b = SessionStore("1M"), SessionStore("1M")
    a.set_remote(tier)
    b.set_remote(tier)
    ctx_a, ctx_b = machine(cert, a), machine(cert, b)
    a.close()
    b.close()
    session, _ = memory_pair(ctx_a, id_client)
    assert memory_pair(ctx_b, id_client, session)[1]


class GateTier(DictTier):
    """A tier whose get() signals when it starts and records when it finishes."""

    def __init__(self, delay: float) -> None:
        super().__init__(delay=delay)
        self.entered = threading.Event()
        self.left: float | None = None

    def get(self, session_id: bytes) -> bytes | None:
        self.entered.set()
        try:
            return super().get(session_id)
        finally:
            self.left = time.monotonic()


def test_replacing_a_tier_waits_for_handshakes_inside_it(cert, id_client) -> None:
    """set_remote() returns only once no handshake is still inside the old tier, so
    the old tier (and cffi's handle to it) may be freed as soon as it returns."""
    tier = GateTier(delay=0.5)
    with SessionStore("1M") as store:
        store.set_remote(tier)
        ctx = machine(cert, store)
        # The client's legacy session ID misses locally, so the server asks the tier.
        handshake = threading.Thread(target=memory_pair, args=(ctx, id_client))
        handshake.start()
        assert tier.entered.wait(10)
        store.set_remote(None)
        replaced = time.monotonic()
        handshake.join(10)
    assert tier.left is not None and tier.left <= replaced


def test_a_tier_needs_the_protocol() -> None:
    """set_remote() with an object lacking get/put/remove is a TypeError."""
    with SessionStore("1M") as store, pytest.raises(TypeError, match="get"):
        store.set_remote(object())


class StuckTier(DictTier):
    """A tier whose get() does not bound its wait: it blocks until released."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()
        self.returned = threading.Event()

    def get(self, session_id: bytes) -> bytes | None:
        self.entered.set()
        self.release.wait(30)
        try:
            return super().get(session_id)
        finally:
            self.returned.set()


@pytest.mark.slow
def test_replacing_a_stuck_tier_keeps_its_handle_until_the_callback_returns(
    cert, id_client, caplog
) -> None:  # type: ignore[no-untyped-def]
    """set_remote() gives up waiting after 5 s (busy) for a callback stuck in the old
    tier: the new tier is in use at once, the old tier's handle is kept alive (not
    released under the callback) with one warning, and released at the next change
    once the callback has returned; the handshake completes."""
    stuck, fresh = StuckTier(), DictTier()
    with SessionStore("1M") as store:
        key = int(remote.ffi.cast("uintptr_t", store._handle()))
        store.set_remote(stuck)
        ctx = machine(cert, store)
        done: list[object] = []
        handshake = threading.Thread(
            target=lambda: done.append(memory_pair(ctx, id_client)), daemon=True
        )
        handshake.start()
        assert stuck.entered.wait(10)
        store.set_remote(fresh)  # waits REMOTE_DRAIN_MS, then busy
        assert "still inside a callback" in caplog.text
        assert len(remote._draining[key]) == 1  # the stuck tier's handle, kept
        assert remote.ffi.from_handle(remote._draining[key][0]) is stuck
        stuck.release.set()
        handshake.join(10)
        assert stuck.returned.is_set() and len(done) == 1
        gets = fresh.gets
        memory_pair(ctx, id_client)
        assert fresh.gets > gets  # the new tier is the one asked
        store.set_remote(None)  # nothing is inside the old tiers now: all released
        assert key not in remote._draining and key not in remote._attached


def test_replacing_an_idle_tier_releases_its_handle_at_once(cert, id_client) -> None:  # type: ignore[no-untyped-def]
    """Control: a tier no callback is inside is released when replaced."""
    with SessionStore("1M") as store:
        key = int(remote.ffi.cast("uintptr_t", store._handle()))
        first = DictTier()
        store.set_remote(first)
        memory_pair(machine(cert, store), id_client)
        assert first.gets >= 1
        store.set_remote(DictTier())
        assert key not in remote._draining
        assert remote.ffi.from_handle(remote._attached[key]) is not first
        store.set_remote(None)
        assert key not in remote._attached
