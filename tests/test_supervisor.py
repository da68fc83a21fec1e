"""The ``tlsresume serve`` master restarts dead workers forever, with a backoff per
slot, and keeps serving (and resuming) through a storm of SIGKILLs."""

from __future__ import annotations

import collections
import os
import random
import signal
import sys
import threading
import time

import pytest

from tlsresume.tools.serve.balance import LEAD, LEAD_CAP, MAX_STEPS, AcceptBalance
from tlsresume.tools.serve.supervisor import BACKOFF_CAP, SlotBackoff

from .support import (
    child_pids,
    client_context,
    https_get,
    resuming_client,
    server_stats,
    wait_gone,
)

WORKERS = 4
STORM_SECONDS = float(os.environ.get("TLSRESUME_CHAOS_SECONDS", "12"))


def test_backoff_doubles_to_the_cap_and_resets_after_a_stable_worker() -> None:
    b = SlotBackoff(first=0.1, cap=5.0, stable_after=10.0)
    delays = [b.on_death(lived=0.5) for _ in range(9)]
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]
    # Control: a worker that lived long enough starts its slot over.
    assert b.on_death(lived=10.0) == 0.1
    assert b.on_death(lived=0.0) == 0.2


def _two_workers() -> tuple[AcceptBalance, AcceptBalance]:
    """Two views of one accept balance page, as two workers' processes have."""
    mine = AcceptBalance.create(2)
    other = AcceptBalance(os.dup(mine.fd), 2)
    mine.join(0)
    other.join(1)
    return mine, other


def test_a_worker_ahead_steps_back_until_the_others_catch_up() -> None:
    mine, other = _two_workers()
    try:
        for _ in range(LEAD - 1):
            mine.accepted()
        assert mine.step_back() == 0  # within the lead: accept at once
        mine.accepted()
        assert mine.step_back() == MAX_STEPS  # LEAD ahead: bounded steps back
        for _ in range(LEAD):
            other.accepted()
        assert mine.step_back() == 0
        assert [count for _pid, count in mine.counts()] == [LEAD, LEAD]
    finally:
        mine.close()
        other.close()


def test_a_dead_or_lagging_worker_never_holds_the_others_back() -> None:
    mine, other = _two_workers()
    try:
        for _ in range(100):
            mine.accepted()
        # A lead is remembered up to LEAD_CAP only: a worker that fell behind for
        # a while is not handed every connection afterwards.
        mine.step_back()
        assert mine.counts()[0][1] == LEAD_CAP
        # Once the master reaps the other worker, its slot no longer counts.
        mine.vacate(1)
        assert mine.step_back() == 0
        # A restarted worker starts level with the least busy live other.
        other.join(1)
        assert other.counts()[1][1] == LEAD_CAP and other.step_back() == 0
    finally:
        mine.close()
        other.close()


def _answering(server, cafile: str, want: set[int], timeout: float) -> set[int]:  # type: ignore[no-untyped-def]
    """Workers seen answering; returns once they are exactly ``want`` (or times out)."""
    ctx = client_context(cafile)
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and seen != want:
        seen = {
            int(https_get(server.host, server.port, ctx).headers["x-worker"])
            for _ in range(3 * WORKERS)
        }
        want = set(child_pids(server.proc.pid))
    return seen


@pytest.mark.slow
def test_master_outlives_a_kill_storm_and_workers_still_resume(serve, server_cert) -> None:  # type: ignore[no-untyped-def]
    """A worker SIGKILLed every 0.5 s for 12 s (30 s in CI's chaos job:
    TLSRESUME_CHAOS_SECONDS; the old master gave up after 2 x workers deaths in
    10 s): the master stays up, the listener never refuses a connection, every
    connection the kills did not cut resumes the session before it, every slot is
    refilled with new workers, and they resume each other's sessions."""
    server = serve("--workers", str(WORKERS))
    master = server.proc.pid
    original = set(server.pids)
    ctx = client_context(server_cert.cafile, "1.3")
    outcomes: collections.Counter[str] = collections.Counter()
    stop = threading.Event()

    def client() -> None:
        session = None
        while not stop.is_set():
            try:
                r = https_get(server.host, server.port, ctx, session=session, timeout=2.0)
                outcomes["ok"] += 1
                if session is not None:
                    outcomes["offered"] += 1
                    outcomes["resumed"] += r.resumed
                session = r.session
            except ConnectionRefusedError:
                outcomes["refused"] += 1
            except OSError:  # reset by a worker killed mid-connection, or a timeout
                outcomes["lost"] += 1

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    kills: list[tuple[float, int]] = []
    killed: set[int] = set()
    start = time.monotonic()
    try:
        while time.monotonic() - start < STORM_SECONDS:
            live = [p for p in child_pids(master) if p not in killed]
            if live:
                victim = random.choice(live)
                os.kill(victim, signal.SIGKILL)
                kills.append((time.monotonic() - start, victim))
                killed.add(victim)
            time.sleep(0.5)
    finally:
        stop.set()
        thread.join(timeout=10)
    # The trigger of the old behaviour is exceeded (it would have stopped here).
    assert sum(1 for t, _ in kills if t < 10.0) > 2 * WORKERS, kills
    assert server.proc.poll() is None, server.stderr_text()
    assert outcomes["refused"] == 0, outcomes
    assert outcomes["ok"] > 0, outcomes
    assert outcomes["resumed"] >= 0.99 * outcomes["offered"], outcomes
    print(f"kill storm: {len(kills)} kills in {STORM_SECONDS:.0f} s, {dict(outcomes)}")

    # Every slot refills (within the cap of the backoff, plus a start).
    deadline = time.monotonic() + BACKOFF_CAP + 10.0
    while len(child_pids(master)) < WORKERS and time.monotonic() < deadline:
        time.sleep(0.1)
    live = set(child_pids(master))
    assert len(live) == WORKERS, live
    assert not live & killed and not live & original, (live, killed, original)
    assert wait_gone(sorted(killed), 5.0) == []
    assert _answering(server, server_cert.cafile, live, 15.0) == live

    for version in ("1.2", "1.3"):
        r = resuming_client(
            server.host, server.port, client_context(server_cert.cafile, version), 40
        )
        assert r.resumed >= 39, (version, r)
        assert r.cross_resumed > 0 and len(r.workers) >= 3, (version, r)

    counters = server_stats(server.host, server.port, server_cert.cafile)["supervisor"]
    assert counters["worker_deaths"] == len(kills), (counters, kills)
    assert counters["respawns"] == len(kills) and counters["start_failures"] == 0, counters
    assert counters["last_death_signal"] == "SIGKILL"
    assert counters["last_death_pid"] == kills[-1][1]

    assert server.stop() == 0  # a clean SIGTERM still stops everything
    assert wait_gone(sorted(live), 5.0) == []
    assert f"supervisor stats: worker_deaths={len(kills)} " in server.stdout_text
    assert "exited (killed by SIGKILL)" in server.stdout_text


def test_spawned_workers_are_restarted_and_report_the_masters_counters(serve, server_cert) -> None:  # type: ignore[no-untyped-def]
    """--spawn: each worker is a fresh interpreter that maps the master's counters
    from an inherited memfd. Three deaths in a row are all restarted, and a
    respawned worker's stats URL counts them. Control: before any kill, 0."""
    server = serve("--workers", "2", "--spawn")
    master = server.proc.pid
    counters = server_stats(server.host, server.port, server_cert.cafile)["supervisor"]
    assert counters["worker_deaths"] == 0 and counters["last_death_pid"] is None
    victims = []
    for _ in range(3):
        victim = child_pids(master)[0]
        os.kill(victim, signal.SIGTERM if not victims else signal.SIGKILL)
        victims.append(victim)
        assert wait_gone([victim], 5.0) == []
        deadline = time.monotonic() + BACKOFF_CAP + 10.0
        while time.monotonic() < deadline:
            live = set(child_pids(master))
            if len(live) == 2 and victim not in live:
                break
            time.sleep(0.05)
    live = set(child_pids(master))
    assert len(live) == 2 and not live & set(victims)
    assert _answering(server, server_cert.cafile, live, 15.0) == live
    counters = server_stats(server.host, server.port, server_cert.cafile)["supervisor"]
    assert counters["worker_deaths"] == 3 and counters["respawns"] == 3, counters
    assert counters["last_death_pid"] == victims[-1]
    assert counters["last_death_signal"] == "SIGKILL"
    assert server.proc.poll() is None
    assert server.stop() == 0
    assert "exited (exit code 0)" in server.stdout_text  # the SIGTERMed one


@pytest.mark.skipif(
    sys.version_info < (3, 12), reason="CPython warns about fork with threads from 3.12"
)
def test_master_forks_workers_without_threads_of_its_own(server_cert, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """serve --key-file polls the file from the master's loop, not from a thread, so
    starting and restarting workers never forks a multi-threaded process (CPython
    3.12+ would warn: 'This process ... is multi-threaded, use of fork() may lead to
    deadlocks in the child'). Control: the library's own thread poller, in a
    process that then forks, does get the warning."""
    from tlsresume import keyfile

    from .support import ServeProcess, child_env, fork_warning_of, kill_one_worker_and_wait_refill

    keys = tmp_path / "ticket.key"
    keyfile.write(str(keys), keyfile.generate("nginx80"), "nginx80")
    env = {**child_env(), "PYTHONWARNINGS": "always::DeprecationWarning"}
    server = ServeProcess.start(
        [
            "--cert",
            server_cert.cert,
            "--key",
            server_cert.key,
            "--workers",
            "2",
            "--key-file",
            str(keys),
            "--key-format",
            "nginx80",
            "--key-poll",
            "0.1",
        ],
        env=env,
    )
    try:
        kill_one_worker_and_wait_refill(server)
    finally:
        server.stop()
    assert "multi-threaded" not in server.stderr_text(), server.stderr_text()

    control = (
        "import os, tlsresume\n"
        f"r = tlsresume.TicketKeyRing.from_file({str(keys)!r}, 'nginx80', poll_interval=0.1)\n"
        "pid = os.fork()\n"
        "os._exit(0) if pid == 0 else os.waitpid(pid, 0)\n"
    )
    assert fork_warning_of(control)
