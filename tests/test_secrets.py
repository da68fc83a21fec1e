"""Secrets in shared memory: a cleared or re-initialised store leaves no session
bytes in its region, and every process that maps a ring or store locks it in RAM,
forked children included (mlock is not inherited)."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Callable

import pytest

import tlsresume
from tlsresume import SessionStore
from tlsresume._binding import lib
from tlsresume.regions import region_path

from .support import child_env, fork_and_report


@pytest.fixture
def store_name() -> str:
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    lib.tlsr_store_unlink(name.encode())


def _region_bytes(name: str) -> bytes:
    with open(region_path("store", name), "rb") as f:
        return f.read()


def _fill(store: SessionStore, n: int) -> list[tuple[bytes, bytes]]:
    """n entries whose DERs span several slots; returns (id, der) pairs."""
    entries = [(secrets.token_bytes(32), secrets.token_bytes(700)) for _ in range(n)]
    for sid, der in entries:
        assert store.put(sid, der, expires=time.time() + 60)
    return entries


def _left_in(region: bytes, entries: list[tuple[bytes, bytes]]) -> int:
    """How many of three 16-byte pieces per entry (the ID's first, two of the DER's)
    the region still holds."""
    pieces = [p for sid, der in entries for p in (sid[:16], der[:16], der[48:64])]
    return sum(piece in region for piece in pieces)


def test_clear_wipes_every_session_byte_from_the_region(store_name) -> None:  # type: ignore[no-untyped-def]
    with SessionStore("256K", name=store_name) as store:
        entries = _fill(store, 20)
        # Control: the sessions are in the region's bytes before the clear.
        assert _left_in(_region_bytes(store_name), entries) == 3 * len(entries)
        store.clear()
        assert len(store) == 0
        assert _left_in(_region_bytes(store_name), entries) == 0
        assert store.put(b"n" * 32, b"new", expires=time.time() + 60)  # still usable
        assert store.get(b"n" * 32) == b"new"


def test_scribbled_header_reinitialisation_wipes_the_sessions(store_name) -> None:  # type: ignore[no-untyped-def]
    """A header found scribbled (here: its magic) makes the next operation start the
    store over: the old sessions go from the region, not only from the index."""
    with SessionStore("256K", name=store_name) as store:
        entries = _fill(store, 10)
        with open(region_path("store", store_name), "r+b") as f:
            f.write(b"\xde\xad\xbe\xef" * 2)  # the magic only: the lock stays intact
        # Control: scribbled, not yet noticed: the sessions are still there.
        assert _left_in(_region_bytes(store_name), entries) > 0
        assert store.get(entries[0][0]) is None  # noticed: re-initialised empty
        assert store.stats()["repairs"] >= 1
        assert _left_in(_region_bytes(store_name), entries) == 0


def _vm_locked_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmLck:"):
                return int(line.split()[1])
    raise AssertionError("no VmLck in /proc/self/status")


def _child_vm_locked(use: Callable[[], None], *, raw_fork: bool) -> int:
    """VmLck (kB) of a child after use(); raw_fork: libc's fork, no hook (the control)."""

    def child() -> bytes:
        use()
        return str(_vm_locked_kb()).encode()

    return int(fork_and_report(child, raw=raw_fork))


def test_forked_worker_locks_the_ring_and_store_it_inherited() -> None:
    ring = tlsresume.TicketKeyRing()
    store = SessionStore("64K")
    try:
        assert ring.locked_in_memory and store.locked_in_memory
        assert _vm_locked_kb() >= 64

        def use() -> None:
            ring.maybe_rotate()
            store.put(b"f" * 32, b"x", expires=time.time() + 60)
            assert store.get(b"f" * 32) == b"x"
            assert ring.locked_in_memory and store.locked_in_memory

        assert _child_vm_locked(use, raw_fork=False) >= 64
        # Control: the kernel does not carry the lock over; without the hook, none.
        assert _child_vm_locked(lambda: None, raw_fork=True) == 0
    finally:
        ring.close()
        store.close()


_MEMLOCK_SCRIPT = """
import logging, os, resource, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
import tlsresume
tlsresume.SessionStore  # loads the core while the files are surely readable
if sys.argv[1] == "low":
    hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)[1]
    resource.setrlimit(resource.RLIMIT_MEMLOCK, (0, hard))
    if os.geteuid() == 0:  # root's CAP_IPC_LOCK ignores the limit: be nobody
        os.setgid(65534)
        os.setuid(65534)
stores = [tlsresume.SessionStore("1M"), tlsresume.SessionStore("1M")]
print("locked", [s.locked_in_memory for s in stores], flush=True)
pid = os.fork()
if pid == 0:
    stores[0].put(b"c" * 32, b"x", expires=2e9)
    os._exit(0)
os.waitpid(pid, 0)
"""


@pytest.mark.parametrize("limit", ["low", "default"])
def test_one_warning_names_rlimit_memlock_when_the_limit_is_too_low(limit) -> None:  # type: ignore[no-untyped-def]
    """Too low: one warning naming RLIMIT_MEMLOCK in the process, none again in its
    forked child. Control: the default limit (8 MiB here) fits two 1 MiB stores: no
    warning, both locked."""
    import resource

    soft = resource.getrlimit(resource.RLIMIT_MEMLOCK)[0]
    if limit == "default" and soft != resource.RLIM_INFINITY and soft < 4 * 1024 * 1024:
        pytest.skip(f"RLIMIT_MEMLOCK is {soft} bytes here, too low for the control")
    out = subprocess.run(
        [sys.executable, "-c", _MEMLOCK_SCRIPT, limit],
        capture_output=True,
        text=True,
        timeout=30,
        env=child_env(),
    )
    assert out.returncode == 0, out.stderr
    warnings = [line for line in out.stderr.splitlines() if "RLIMIT_MEMLOCK" in line]
    if limit == "low":
        assert len(warnings) == 1, out.stderr
        assert "could not lock the session store" in warnings[0]
        assert "locked [False, False]" in out.stdout
    else:
        assert warnings == [], out.stderr
        assert "locked [True, True]" in out.stdout


KEY_INFO_SIZE = 112  # tlsr_key_info: name 16 | hmac 32 | aes 32 | len, role | 3 times


def test_ring_writer_wipes_key_material_left_in_a_free_slot() -> None:
    """Bytes that a scribble (or a lost wipe) left in a FREE slot of both copies of
    the ring are gone after the next published change (the writer's sanitising
    wipes free slots). Control: they are in the region before it."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    ring = tlsresume.TicketKeyRing(name=name)
    try:
        path = region_path("ring", name)
        with open(path, "rb") as f:
            region = f.read()
        names = [bytes.fromhex(k.name) for k in ring.keys()]
        marker = secrets.token_bytes(32)
        placed = 0
        start = 0
        while True:  # each copy of the state holds both names, within its slots
            first = region.find(names[0], start)
            if first < 0:
                break
            second = region.find(names[1], first - 16 * KEY_INFO_SIZE)
            free = max(first, second) + 4 * KEY_INFO_SIZE  # slot index <= 5 of 16
            assert region[free : free + KEY_INFO_SIZE] == bytes(KEY_INFO_SIZE)
            with open(path, "r+b") as f:
                f.seek(free + 16)  # the HMAC field; role stays FREE (0)
                f.write(marker)
            placed += 1
            start = max(first, second) + 16
        assert placed == 2
        with open(path, "rb") as f:
            assert f.read().count(marker) == 2
        ring.rotate()
        with open(path, "rb") as f:
            assert marker not in f.read()
    finally:
        ring.close()
        lib.tlsr_ring_unlink(name.encode())
