"""One function per input kind: it feeds ``data`` to tlsresume the way the world
would and returns quietly, or lets an exception out (a finding). Each catches only
the errors tlsresume documents for bad input. Used by ``tests/fuzz/run.py``
(atheris, coverage-guided) and by ``tests/test_fuzz_smoke.py`` (a few thousand
seeded inputs in the ordinary suite).

The region harnesses keep one named ring and one named store per process, restore
their pristine image before each input, apply the input over it as patches
(``offset:u16, length:u8, bytes``; or the whole image when the input is at least as
long), then run every C reader and writer on it, with the shortest lock timeouts so that
a damaged lock costs little but a miss.
"""

from __future__ import annotations

import logging
import os
import ssl
import struct
import tempfile
import time
import uuid
import zlib
from typing import Any

import tlsresume
import tlsresume.regions
from tlsresume import errors, keyfile

logging.getLogger("tlsresume").setLevel(logging.CRITICAL)  # bad input is logged by design

_DOCUMENTED = (errors.TLSResumeError, ValueError)


# ---- key files ----------------------------------------------------------------------


def keyfile_input(data: bytes) -> None:
    for fmt in keyfile.FORMATS:
        try:
            keyfile.parse(data, fmt)
        except (errors.KeyFileError, ValueError):
            pass


# ---- client cache files ---------------------------------------------------------------

_KEY = bytes(range(32))
_tmp = tempfile.mkdtemp(prefix="tlsresume-fuzz-")


def client_cache_input(data: bytes) -> None:
    """The bytes as a plaintext cache file, then as a sealed one: load() never
    raises for content, and keeps no more sessions than it says."""
    path = os.path.join(_tmp, "cache")
    with open(path, "wb") as f:
        f.write(data)
    for key, plain in ((None, True), (_KEY, False)):
        cache = tlsresume.ClientSessionCache()
        kept = cache.load(path, key, insecure_plaintext=plain)
        assert 0 <= kept <= len(cache), (kept, len(cache))


def client_cache_seed() -> bytes:
    """A real saved cache file with one TLS 1.2 session, as a starting point."""
    ctx_server, ctx_client, cache = _tls_pair()
    _handshake(ctx_server, ctx_client)
    path = os.path.join(_tmp, "seed")
    cache.save(path, insecure_plaintext=True)
    with open(path, "rb") as f:
        return f.read()


# ---- regions --------------------------------------------------------------------------

_state: dict[str, Any] = {}


def _tls_pair() -> tuple[ssl.SSLContext, ssl.SSLContext, Any]:
    if "tls" not in _state:
        import trustme

        ca = trustme.CA()
        leaf = ca.issue_cert("localhost")
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        leaf.configure_cert(server)
        server.maximum_version = ssl.TLSVersion.TLSv1_2
        cache = tlsresume.ClientSessionCache()
        client = tlsresume.client_context(cache)
        ca.configure_trust(client)
        _state["tls"] = (server, client, cache)
        cert, key = os.path.join(_tmp, "cert.pem"), os.path.join(_tmp, "key.pem")
        leaf.cert_chain_pems[0].write_to_path(cert)
        leaf.private_key_pem.write_to_path(key)
        _state["files"] = (cert, key)
    return _state["tls"]  # type: ignore[no-any-return]


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> None:
    """One handshake through memory BIOs; the client offers what its cache holds."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="localhost")
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(20):
        done = 0
        for end in (client, server):
            try:
                end.do_handshake()
                done += 1
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if done == 2:
            break
    server.write(b"x")
    c_in.write(s_out.read())
    client.read(1)


def _region(kind: str) -> tuple[Any, str, bytes, ssl.SSLContext | None]:
    if kind not in _state:
        name = f"fuzz-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        if kind == "ring":
            obj: Any = tlsresume.TicketKeyRing(name=name, session_cache=False)
        else:
            obj = tlsresume.SessionStore("64K", name=name)
            obj.lock_timeout = 0.001  # the shortest it takes
        path = tlsresume.regions.region_path(kind, name)
        with open(path, "rb") as f:
            pristine = f.read()
        _tls_pair()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*_state["files"])
        if kind == "ring":
            tlsresume.install(ctx, obj, session_cache=False)
        else:
            ctx.options |= ssl.OP_NO_TICKET
            tlsresume.install(ctx, session_cache=obj)
        _state[kind] = (obj, path, pristine, ctx)
    return _state[kind]  # type: ignore[no-any-return]


def _one_in(data: bytes, n: int, salt: bytes) -> bool:
    """True for about one input in ``n``, decided by a hash of the whole input (a
    test of its first byte would fire for most inputs: mutations favour zeros)."""
    return zlib.crc32(salt + data) % n == 0


def _apply(path: str, pristine: bytes, data: bytes) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        if len(data) >= len(pristine):
            os.pwrite(fd, data[: len(pristine)], 0)
            return
        os.pwrite(fd, pristine, 0)
        at = 0
        while at + 3 <= len(data):
            offset, length = struct.unpack_from("<HB", data, at)
            chunk = data[at + 3 : at + 3 + length]
            at += 3 + length
            os.pwrite(fd, chunk, offset % len(pristine))
    finally:
        os.close(fd)


def ring_image_input(data: bytes) -> None:
    from tlsresume._binding import lib

    ring, path, pristine, ctx = _region("ring")
    _apply(path, pristine, data)
    for call in (ring.keys, ring.stats, ring.records, lambda: ring.classify(b"\0" * 16)):
        try:
            call()
        except _DOCUMENTED:
            pass
    lib.tlsr_ring_maintain(ring._handle(), int(time.time() * 1000), 0, 0)
    if _one_in(data, 16, b"handshake"):
        _handshake(ctx, _tls_pair()[1])


def _lock_span() -> tuple[int, int]:
    """Where the region header's lock lies (the same header starts rings and stores)."""
    if "lock" not in _state:
        from tlsresume._extra import testhooks

        hffi, hlib = testhooks()
        out = hffi.new("tlsr_ring_layout *")
        hlib.tlsr_ring_debug_layout(out)
        _state["lock"] = (int(out.lock), 40)  # sizeof(pthread_mutex_t) on x86-64 glibc
    return _state["lock"]  # type: ignore[no-any-return]


def store_image_input(data: bytes) -> None:
    store, path, pristine, ctx = _region("store")
    _apply(path, pristine, data)
    if not _one_in(data, 1024, b"lock"):
        # One input in 1024 keeps a damaged lock word: judging its owner gone takes
        # 0.2 s of watching by design (tests/test_self_healing.py covers it), and
        # every input paying that would cut the run to a few inputs a second.
        at, size = _lock_span()
        fd = os.open(path, os.O_RDWR)
        try:
            os.pwrite(fd, pristine[at : at + size], at)
        finally:
            os.close(fd)
    sid = bytes(32)
    for call in (
        lambda: store.put(sid, b"s" * 300, time.time() + 60),
        lambda: store.get(sid),
        lambda: store.remove(sid),
        store.stats,
        store.verify,
        lambda: len(store),
    ):
        try:
            call()
        except _DOCUMENTED:
            pass
    if _one_in(data, 16, b"handshake"):
        _handshake(ctx, _tls_pair()[1])


HARNESSES = {
    "keyfile": keyfile_input,
    "client_cache": client_cache_input,
    "ring": ring_image_input,
    "store": store_image_input,
}
