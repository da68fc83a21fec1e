"""No fork while one of tlsresume's own threads is inside a round of its work
(tlsresume._forkgate): os.fork() waits for the round in progress, a libc fork that
runs no Python hook does not (the control)."""

from __future__ import annotations

import logging
import threading
import time
import uuid

import pytest

from tlsresume._forkgate import ForkGate

from .redisutil import RedisServer, redis_server_available
from .support import fork_and_report


def _round_in_a_thread(gate: ForkGate, seconds: float) -> tuple[threading.Thread, list[float]]:
    """A thread that holds ``gate`` for ``seconds`` (one round) and records when the
    round ended; returns once it is inside."""
    entered, ended = threading.Event(), []

    def work() -> None:
        with gate:
            entered.set()
            time.sleep(seconds)
            ended.append(time.monotonic())

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    assert entered.wait(5)
    return thread, ended


@pytest.mark.parametrize("raw", [False, True], ids=["os.fork", "control-libc-fork"])
def test_fork_waits_for_a_round_in_progress(raw: bool) -> None:
    """The child of os.fork() starts after the round ended; a libc fork (no hook)
    lands inside the round."""
    gate = ForkGate("a test round", wait=5.0)
    thread, ended = _round_in_a_thread(gate, 0.5)
    started = float(fork_and_report(lambda: repr(time.monotonic()).encode(), raw=raw))
    thread.join(5)
    assert ended, "the round never ended"
    if raw:
        assert started < ended[0]
    else:
        assert started >= ended[0]
    with gate:  # usable again in the parent
        pass


def test_the_childs_gate_is_usable() -> None:
    """The child gets its copy of the gate released (its holder was the parent's
    thread): a round can start there at once."""
    gate = ForkGate("a test round", wait=5.0)

    def child() -> bytes:
        ok = gate._lock.acquire(timeout=1.0)
        return b"free" if ok else b"held"

    assert fork_and_report(child, raw=False) == b"free"


def test_a_round_longer_than_the_wait_forks_anyway_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = ForkGate("a stuck test round", wait=0.2)
    thread, ended = _round_in_a_thread(gate, 1.5)
    with caplog.at_level(logging.WARNING, logger="tlsresume"):
        began = time.monotonic()
        assert fork_and_report(lambda: b"ok", raw=False) == b"ok"
        took = time.monotonic() - began
    assert 0.15 <= took < 1.4, took
    assert "a stuck test round was still busy after 0.2 s" in caplog.text
    thread.join(5)
    assert ended


@pytest.mark.skipif(not redis_server_available(), reason="no redis-server")
@pytest.mark.parametrize("raw", [False, True], ids=["os.fork", "control-libc-fork"])
def test_fork_waits_for_the_redis_key_syncs_round(raw: bool) -> None:
    """The real key sync thread against a paused Redis (each round waits out its
    timeout inside redis-py): a child of os.fork() sees the round that was in
    progress finished (its failure counted, in shared memory); a libc fork's child
    does not."""
    from tlsresume import TicketKeyRing
    from tlsresume.redis import KeySync

    with RedisServer() as server:
        ring = TicketKeyRing()
        sync = KeySync(
            ring,
            server.url,
            name=f"fork-{uuid.uuid4().hex[:8]}",
            refresh=0.02,
            timeout=0.4,
            insecure_unsealed=True,
        )
        try:
            server.pause()
            lock = sync._round_lock._lock
            deadline = time.monotonic() + 10
            # Wait for a round that is in progress and began after the pause.
            before = sync.stats()["sync_failures"]
            while time.monotonic() < deadline:
                if sync.stats()["sync_failures"] > before and lock.locked():
                    break
                time.sleep(0.005)
            assert lock.locked(), "no round in progress"
            in_progress = sync.stats()["sync_failures"]
            seen = int(
                fork_and_report(lambda: str(sync.stats()["sync_failures"]).encode(), raw=raw)
            )
            if raw:
                assert seen == in_progress
            else:
                assert seen > in_progress
        finally:
            server.resume()
            sync.stop()
            ring.close()
