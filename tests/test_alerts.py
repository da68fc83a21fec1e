"""Fatal alerts and the shared session store: only a party that proved it holds a
session's keys can end it for everyone.

A TLS 1.2 session ID is sent in clear in the ServerHello. These tests play the
observer who copied it: a hand-built ClientHello carrying the victim's ID,
followed by a plaintext fatal alert, over a real socket to real forked workers.
"""

from __future__ import annotations

import os
import socket
import ssl
import struct

import pytest

import tlsresume
from tlsresume import SessionStore

from .handshake import fetch, prefork, pump, server_context

TLS12 = ssl.TLSVersion.TLSv1_2


@pytest.fixture(scope="module")
def cert(ca):  # type: ignore[no-untyped-def]
    return ca.issue_cert("localhost")


@pytest.fixture
def id_client(ca) -> ssl.SSLContext:  # type: ignore[no-untyped-def]
    """A TLS 1.2 client that resumes by session ID only (no ticket extension)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(ctx)
    ctx.options |= ssl.OP_NO_TICKET
    ctx.maximum_version = TLS12
    return ctx


def id_server(cert, store: SessionStore) -> ssl.SSLContext:  # type: ignore[no-untyped-def]
    ctx = server_context(cert, None, TLS12)
    ctx.options |= ssl.OP_NO_TICKET
    tlsresume.install(ctx, session_cache=store)
    return ctx


# ---- the attacker: raw bytes, no keys --------------------------------------------------

_SUITES = (0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8, 0x009E, 0x009F, 0x009C, 0x009D)


def _ext(kind: int, body: bytes) -> bytes:
    return struct.pack("!HH", kind, len(body)) + body


def client_hello(session_id: bytes, server_name: bytes = b"localhost") -> bytes:
    """A TLS 1.2 ClientHello record offering ``session_id``, with the extensions an
    OpenSSL client sends, so the server really resumes (extended master secret
    included: a resumption without it is refused by RFC 7627; the victim's server
    name too, which is part of the session ID context tlsresume sets)."""
    name = b"\x00" + struct.pack("!H", len(server_name)) + server_name
    groups = struct.pack("!H", 4) + struct.pack("!HH", 0x001D, 0x0017)
    sigalgs = (0x0403, 0x0503, 0x0804, 0x0805, 0x0401, 0x0501)
    sigalg_list = struct.pack("!H", 2 * len(sigalgs)) + struct.pack(f"!{len(sigalgs)}H", *sigalgs)
    extensions = b"".join(
        (
            _ext(0x0000, struct.pack("!H", len(name)) + name),  # server_name
            _ext(0x000A, groups),  # supported_groups
            _ext(0x000B, b"\x01\x00"),  # ec_point_formats
            _ext(0x000D, sigalg_list),  # signature_algorithms
            _ext(0x0017, b""),  # extended_master_secret
            _ext(0xFF01, b"\x00"),  # renegotiation_info
        )
    )
    body = (
        b"\x03\x03"
        + os.urandom(32)
        + bytes([len(session_id)])
        + session_id
        + struct.pack("!H", 2 * len(_SUITES))
        + struct.pack(f"!{len(_SUITES)}H", *_SUITES)
        + b"\x01\x00"
        + struct.pack("!H", len(extensions))
        + extensions
    )
    handshake = b"\x01" + struct.pack("!I", len(body))[1:] + body
    return b"\x16\x03\x01" + struct.pack("!H", len(handshake)) + handshake


FATAL_HANDSHAKE_FAILURE = b"\x15\x03\x03\x00\x02\x02\x28"  # plaintext alert record


def _read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("server closed the connection")
        data += chunk
    return data


def attack(port: int, session_id: bytes) -> bytes:
    """Offer the victim's ID, read the ServerHello, send a plaintext fatal alert.
    Returns the session ID the server echoed (the victim's if it resumed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(client_hello(session_id))
        header = _read_exact(sock, 5)
        assert header[0] == 0x16, f"expected a handshake record, got {header!r}"
        record = _read_exact(sock, struct.unpack("!H", header[3:5])[0])
        assert record[0] == 0x02, "expected a ServerHello"
        echoed = record[4 + 2 + 32 + 1 : 4 + 2 + 32 + 1 + record[4 + 2 + 32]]
        sock.sendall(FATAL_HANDSHAKE_FAILURE)
        try:
            while sock.recv(4096):
                pass
        except OSError:
            pass
    return echoed


# ---- tests ---------------------------------------------------------------------------


def test_attacker_with_a_copied_session_id_cannot_evict(cert, id_client) -> None:
    """A ClientHello with the victim's session ID (which the server resumes) and a
    plaintext fatal alert leave the session in the shared store: the victim still
    resumes, on more than one worker."""
    with SessionStore("1M") as store:
        with prefork(lambda: id_server(cert, store), workers=3) as fleet:
            session, resumed, _ = fetch(fleet.port, id_client)
            assert not resumed and len(store) == 1
            before = store.stats()
            for _ in range(3):  # whatever workers the attacker lands on
                assert attack(fleet.port, session.id) == session.id
            after = store.stats()
            assert after["kept_on_unproven_alert"] - before["kept_on_unproven_alert"] == 3
            assert after["removals"] == before["removals"]
            assert len(store) == 1
            workers = set()
            for _ in range(40):
                _, resumed, pid = fetch(fleet.port, id_client, session)
                assert resumed, "the victim's session was evicted by an unauthenticated alert"
                workers.add(pid)
                if len(workers) >= 2:
                    break
            assert len(workers) >= 2


def _resumed_pair(ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, session: ssl.SSLSession | None):  # type: ignore[no-untyped-def]
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="localhost", session=session)
    server = ctx.wrap_bio(s_in, s_out, server_side=True)
    pump(client, server, (c_in, c_out, s_in, s_out))
    return client, server, (c_in, c_out, s_in, s_out)


class RecordingTier:
    """A remote tier (the Redis tier's interface) in a dict, counting removals."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.removed: list[bytes] = []

    def get(self, session_id: bytes) -> bytes | None:
        return self.data.get(session_id)

    def put(self, session_id: bytes, der: bytes, expires: float) -> None:
        self.data[session_id] = der

    def remove(self, session_id: bytes) -> None:
        self.removed.append(session_id)
        self.data.pop(session_id, None)


def test_attacker_alert_leaves_the_remote_tier_alone(cert, id_client) -> None:
    """The same attack in this process, with a remote tier behind the store: the
    server resumes the copied ID, the plaintext alert ends that connection, and
    neither the store nor the tier forgets the session."""
    with SessionStore("1M") as store:
        tier = RecordingTier()
        store.set_remote(tier)
        ctx = id_server(cert, store)
        first, _, _ = _resumed_pair(ctx, id_client, None)
        session = first.session
        assert session.id in tier.data
        s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        server = ctx.wrap_bio(s_in, s_out, server_side=True)
        s_in.write(client_hello(session.id))
        with pytest.raises(ssl.SSLWantReadError):
            server.do_handshake()
        hello = s_out.read()
        assert hello[5] == 0x02 and session.id in hello[:80], "the server resumed the copied ID"
        s_in.write(FATAL_HANDSHAKE_FAILURE)
        with pytest.raises(ssl.SSLError):
            server.do_handshake()
        assert tier.removed == [] and len(store) == 1
        assert store.stats()["kept_on_unproven_alert"] == 1
        again, _, _ = _resumed_pair(ctx, id_client, session)
        assert again.session_reused
        store.set_remote(None)


def test_encrypted_alert_from_the_resuming_client_evicts(cert, id_client) -> None:
    """Negative control: a client that resumed the session (so proved it holds its
    master secret) and then sends a fatal alert, encrypted, removes it from the
    store and from the remote tier."""
    with SessionStore("1M") as store:
        tier = RecordingTier()
        store.set_remote(tier)
        ctx = id_server(cert, store)
        first, _, _ = _resumed_pair(ctx, id_client, None)
        session = first.session
        assert len(store) == 1
        client, server, (c_in, c_out, s_in, s_out) = _resumed_pair(ctx, id_client, session)
        assert server.session_reused and client.session_reused
        # A server record that fails the client's MAC: the client answers with a
        # fatal bad_record_mac alert under its own, authenticated, keys.
        c_in.write(b"\x17\x03\x03\x00\x20" + b"\x00" * 32)
        with pytest.raises(ssl.SSLError):
            client.read(10)
        alert = c_out.read()
        assert alert[:1] == b"\x15" and len(alert) > 7, "the client's alert is encrypted"
        s_in.write(alert)
        with pytest.raises(ssl.SSLError):
            server.read(10)
        assert len(store) == 0 and store.stats()["removals"] == 1
        assert tier.removed == [session.id]
        store.set_remote(None)


def test_injected_garbage_after_the_handshake_does_not_evict(cert, id_client) -> None:
    """Bytes anyone on the path can inject after the handshake make the server
    send bad_record_mac: that ends the connection but not the session."""
    with SessionStore("1M") as store:
        ctx = id_server(cert, store)
        first, _, _ = _resumed_pair(ctx, id_client, None)
        session = first.session
        _, server, (_, _, s_in, _) = _resumed_pair(ctx, id_client, session)
        assert server.session_reused
        s_in.write(b"\x17\x03\x03\x00\x20" + b"\x00" * 32)  # fails the server's MAC
        with pytest.raises(ssl.SSLError):
            server.read(10)
        assert len(store) == 1 and store.stats()["kept_on_unproven_alert"] == 1
        again, _, _ = _resumed_pair(ctx, id_client, session)
        assert again.session_reused
