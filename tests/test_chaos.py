"""Chaos against a real pre-fork server: bytes written over the shared ring and the
shared session store while ``tlsresume serve --workers 4`` serves.

Each round damages both regions (every worker maps them), then keeps connecting:
TLS 1.3 with tickets (the ring) and TLS 1.2 with session IDs only (the store),
each reconnection offering the last session, so every one crosses to whichever
worker accepts it. No handshake may fail at any point, and both kinds of
resumption must be back to 20 of 20 in a row within a bound, without a restart.
The control shows the damage is real and reached every worker: a session taken
just before it never resumes after it (its key, or its stored entry, is gone).
"""

from __future__ import annotations

import os
import random
import ssl
import struct

import pytest

from tlsresume._extra import testhooks as load_testhooks
from tlsresume.regions import region_path

from .support import client_context, https_get, server_stats, time_to_heal

NO_SUCH_THREAD = 0x3FFFFFFE
HEAL_WITHIN = 8.0  # seconds; about 1-2 s on an idle machine (printed)


def _ring_layout():  # type: ignore[no-untyped-def]
    hffi, hlib = load_testhooks()
    out = hffi.new("tlsr_ring_layout *")
    hlib.tlsr_ring_debug_layout(out)
    return out


L = _ring_layout()
LOCK = int(L.lock)  # the same region header starts rings and stores


def _write(kind: str, name: str, offset: int, data: bytes) -> None:
    fd = os.open(region_path(kind, name), os.O_RDWR)
    try:
        assert os.pwrite(fd, data, offset) == len(data)
    finally:
        os.close(fd)


@pytest.fixture
def four_workers(serve):  # type: ignore[no-untyped-def]
    server = serve("--workers", "4")
    assert server.ring_name and server.store_name
    return server


def _clients(cafile: str) -> dict[str, ssl.SSLContext]:
    ids = client_context(cafile, "1.2")
    ids.options |= ssl.OP_NO_TICKET  # offers no ticket extension: session IDs only
    return {"tickets (TLS 1.3)": client_context(cafile, "1.3"), "session IDs (TLS 1.2)": ids}


def test_random_bytes_over_ring_and_store_while_serving(four_workers, server_cert) -> None:  # type: ignore[no-untyped-def]
    server, clients = four_workers, _clients(server_cert.cafile)
    for label, ctx in clients.items():
        assert time_to_heal(server.host, server.port, ctx, HEAL_WITHIN)[1] == 0, (
            label
        )  # it resumes first
    for seed in range(3):
        rng = random.Random(seed)
        before = {}
        for label, ctx in clients.items():
            first = https_get(server.host, server.port, ctx)
            again = https_get(server.host, server.port, ctx, session=first.session)
            assert again.resumed, label
            before[label] = again.session
        for kind, name in (("ring", server.ring_name), ("store", server.store_name)):
            size = os.path.getsize(region_path(kind, name))
            _write(kind, name, LOCK, rng.randbytes(size - LOCK))
        for label, ctx in clients.items():
            late = https_get(server.host, server.port, ctx, session=before[label])
            assert not late.resumed, f"{label}: the damage did not reach the server"
            took, failed = time_to_heal(server.host, server.port, ctx, HEAL_WITHIN)
            print(f"round {seed}: {label} back in {took:.2f} s")
            assert failed == 0, label
    assert server.proc.poll() is None


def test_lock_words_naming_no_thread_while_serving(four_workers, server_cert) -> None:  # type: ignore[no-untyped-def]
    """Both locks wedged the way a killed process outside the robust list leaves
    them: the workers judge the owners gone and repair; no restart, no failure."""
    server, clients = four_workers, _clients(server_cert.cafile)
    for kind, name in (("ring", server.ring_name), ("store", server.store_name)):
        _write(kind, name, LOCK, struct.pack("<i", NO_SUCH_THREAD))
    for label, ctx in clients.items():
        took, failed = time_to_heal(server.host, server.port, ctx, HEAL_WITHIN)
        print(f"{label} back in {took:.2f} s")
        assert failed == 0, label


def _read(kind: str, name: str, offset: int, size: int) -> bytes:
    with open(region_path(kind, name), "rb") as f:
        f.seek(offset)
        return f.read(size)


@pytest.mark.parametrize("field", ["sequence", "period", "window", "flags", "due"])
def test_targeted_ring_fields_while_serving(four_workers, server_cert, field) -> None:  # type: ignore[no-untyped-def]
    """One field of the ring's active state written over in every worker's view at
    once: a sequence left odd (readers would retry forever), a negative period or
    window (a rotation storm), flags nobody defined, a due time far in the future
    (rotation stopped). Ticket resumption stays or comes back; nothing fails."""
    server, ctx = four_workers, _clients(server_cert.cafile)["tickets (TLS 1.3)"]
    name = server.ring_name
    (active,) = struct.unpack("<I", _read("ring", name, L.active, 4))
    state = L.state + (active & 1) * L.state_size
    if field == "sequence":
        at = L.seq + 8 * (active & 1)
        (seq,) = struct.unpack("<Q", _read("ring", name, at, 8))
        _write("ring", name, at, struct.pack("<Q", seq | 1))
    else:
        offset, value = {
            "period": (L.period, struct.pack("<q", -5)),
            "window": (L.window, struct.pack("<q", -7)),
            "flags": (L.flags, struct.pack("<I", 0xFFFF0000)),
            "due": (L.due, struct.pack("<q", 2**62)),
        }[field]
        _write("ring", name, state + offset, value)
    took, failed = time_to_heal(server.host, server.port, ctx, HEAL_WITHIN)
    print(f"{field}: back in {took:.2f} s")
    assert failed == 0
    assert server.proc.poll() is None
    # The control: the damage was real, and a worker repaired it.
    ring = server_stats(server.host, server.port, server_cert.cafile)["ring"]["stats"]
    counter = "repaired_sequence" if field == "sequence" else "repaired_state"
    assert ring[counter] >= 1, ring
