"""The client session cache: policy, MRU and limits, time, namespaces, safety rule,
single-use tickets, capture paths, save/load, threads. Real handshakes (in memory
and over loopback to a server thread), with negative controls.

One file (over 500 lines): the C client cache's rules, lifetimes, limits and
files, all on in-process memory handshakes.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import ssl
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

import tlsresume
from tlsresume import ClientContext, ClientSessionCache, client_context
from tlsresume._extra import foreign
from tlsresume._extra import testhooks as load_testhooks
from tlsresume.client import (
    VERIFY_CHAIN,
    VERIFY_HOSTNAME,
    VERIFY_NONE,
    Profile,
    may_offer,
    offered,
    offered_ticket,
    session_deadline,
    session_lifetime,
)

from .handshake import memory_pair, prefork, pump
from .support import InProcessServer

TLS12 = ssl.TLSVersion.TLSv1_2
TLS13 = ssl.TLSVersion.TLSv1_3
VERSIONS = pytest.mark.parametrize("version", [TLS12, TLS13], ids=["tls1.2", "tls1.3"])
HOSTS = ("localhost", "a.test", "b.test", "c.test", "d.test", "e.test")
KEY = bytes(range(32))


# ---- fixtures and helpers -------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def other_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def leaf(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert(*HOSTS, "127.0.0.1")


@pytest.fixture(scope="module")
def cafile(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("client-ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def server_ctx(leaf: trustme.LeafCert, version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    leaf.configure_cert(ctx)
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    return ctx


def verifying(
    cache: ClientSessionCache | None, ca: trustme.CA, namespace: str = ""
) -> ClientContext:
    ctx = ClientContext(cache=cache, namespace=namespace)
    ca.configure_trust(ctx)
    return ctx


class FakeClock:
    """Wall-clock-like seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Outcome:
    resumed: bool
    offered: bool | None
    version: str | None
    ticket: bytes  # ticket of the client's session after the handshake (b"": none)
    offered_ticket: bytes | None = None  # ticket of the session the cache offered


def pair(
    client_ctx: ssl.SSLContext, server: ssl.SSLContext, host: str = "localhost", port: int = 443
) -> Outcome:
    """One in-memory handshake; the server then sends data (TLS 1.3 tickets come
    with it) and both sides are dropped without close_notify, as Python code does."""
    bios = tuple(ssl.MemoryBIO() for _ in range(4))
    c_in, c_out, s_in, s_out = bios
    if isinstance(client_ctx, ClientContext):
        client = client_ctx.wrap_bio(c_in, c_out, server_hostname=host, port=port)
    else:
        client = client_ctx.wrap_bio(c_in, c_out, server_hostname=host)
    srv = server.wrap_bio(s_in, s_out, server_side=True)
    pump(client, srv, bios)
    start = client.session
    ticket = tlsresume.session_ticket(start) if start is not None else b""
    outcome = Outcome(
        client.session_reused,
        offered(client),
        client.version(),
        ticket or b"",
        offered_ticket(client),
    )
    srv.write(b"x")
    c_in.write(s_out.read())
    assert client.read(1) == b"x"
    del client, srv, start
    gc.collect()
    return outcome


def fetch(ctx: ssl.SSLContext, port: int, host: str = "localhost") -> Outcome:
    """One HTTPS request over loopback through wrap_socket; closed without unwrap()."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = tls.recv(4096)
                if not chunk:
                    break
                data += chunk
            result = Outcome(tls.session_reused, offered(tls), tls.version(), b"")
    gc.collect()
    return result


@pytest.fixture
def loopback(leaf: trustme.LeafCert) -> Iterator[InProcessServer]:
    with InProcessServer(server_ctx(leaf)) as srv:
        yield srv


# ---- policy as pure functions --------------------------------------------------------


def test_lifetime_is_bounded_by_timeout_and_hint() -> None:
    """A session lives until its start + timeout, or start + ticket hint if sooner."""
    assert session_lifetime(now=1000, time_=1000, timeout=7200) == 7200
    assert session_lifetime(now=1000, time_=1000, timeout=7200, hint=300) == 300
    assert session_lifetime(now=1100, time_=1000, timeout=7200, hint=300) == 200
    assert session_lifetime(now=2000, time_=1000, timeout=7200, hint=300) == 0


def test_lifetime_is_capped_at_seven_days() -> None:
    """No session is kept longer than RFC 8446's 7-day ticket lifetime limit."""
    week = 7 * 86400
    assert session_lifetime(now=0, time_=0, timeout=10**9) == week
    assert session_lifetime(now=0, time_=0, timeout=10**9, hint=10**9) == week


def test_deadline_is_the_sooner_of_lifetime_and_ttl() -> None:
    """The cache TTL only ever shortens a session's own lifetime."""
    assert session_deadline(stored=100, expires=7300, ttl=None) == 7300
    assert session_deadline(stored=100, expires=7300, ttl=60) == 160
    assert session_deadline(stored=100, expires=130, ttl=60) == 130


def test_huge_times_saturate_instead_of_wrapping() -> None:
    """A TTL or session start near the int64 limit (a saved file, a caller's "never")
    saturates: no signed overflow turning "far future" into "long ago"."""
    now = 1_700_000_000.0
    huge = float(2**63 // 1000 - 1000)  # ms just under INT64_MAX
    assert session_deadline(stored=now, expires=now + 100, ttl=huge) == now + 100
    assert session_lifetime(now=now, time_=2**62, timeout=3600) == 7 * 86400
    assert session_lifetime(now=now, time_=-(2**62), timeout=3600) == 0


def test_safety_rule() -> None:
    """Never weaker verification than the context demands, same trust when it
    verifies, same client identity always."""
    trust, other_trust = b"t" * 32, b"u" * 32
    me, someone = b"i" * 32, b"j" * 32
    host, chain, none = (
        Profile(level, trust) for level in (VERIFY_HOSTNAME, VERIFY_CHAIN, VERIFY_NONE)
    )
    assert may_offer(host, host) and may_offer(host, chain) and may_offer(host, none)
    assert may_offer(chain, chain) and not may_offer(chain, host)
    assert may_offer(none, none) and not may_offer(none, chain) and not may_offer(none, host)
    # Another trust configuration: only a context that verifies nothing may take it.
    assert not may_offer(Profile(VERIFY_HOSTNAME, other_trust), host)
    assert may_offer(Profile(VERIFY_HOSTNAME, other_trust), none)
    # Another client certificate: never.
    assert not may_offer(
        Profile(VERIFY_HOSTNAME, trust, someone), Profile(VERIFY_HOSTNAME, trust, me)
    )
    assert not may_offer(Profile(VERIFY_NONE, trust, someone), Profile(VERIFY_NONE, trust))


# ---- arguments ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_entries": 0},
        {"max_entries": -1},
        {"max_entries": 1.5},
        {"ttl": 0},
        {"ttl": -5},
        {"tickets_per_host": 0},
        {"tickets_per_host": 65},
    ],
)
def test_bad_limits_are_refused(kwargs: dict[str, object]) -> None:
    """Limits out of range raise ValueError naming the argument."""
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        ClientSessionCache(**kwargs)  # type: ignore[arg-type]


def test_bad_names_and_keys_are_refused(tmp_path: Path) -> None:
    """Over-long namespaces, missing or short keys fail before anything is done."""
    cache = ClientSessionCache()
    with pytest.raises(ValueError, match="namespace"):
        cache.disable("x" * 256)
    with pytest.raises(ValueError, match="key="):
        cache.save(tmp_path / "c")
    with pytest.raises(ValueError, match="32 bytes"):
        cache.save(tmp_path / "c", key=b"short")
    with pytest.raises(TypeError):
        cache.load(tmp_path / "c", key="0" * 32)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="SERVER_AUTH"):
        client_context(purpose=ssl.Purpose.CLIENT_AUTH)
    with pytest.raises(tlsresume.ContextError):
        ClientContext(ssl.PROTOCOL_TLS_SERVER)


def test_client_context_keeps_create_default_context_settings(cafile: str) -> None:
    """client_context() is create_default_context() plus the cache, nothing less."""
    ours, theirs = client_context(cafile=cafile), ssl.create_default_context(cafile=cafile)
    assert isinstance(ours, ssl.SSLContext) and isinstance(ours, ClientContext)
    for attr in (
        "protocol",
        "verify_mode",
        "check_hostname",
        "verify_flags",
        "options",
        "minimum_version",
        "maximum_version",
    ):
        assert getattr(ours, attr) == getattr(theirs, attr), attr
    assert ours.get_ca_certs() == theirs.get_ca_certs()
    assert isinstance(ours.session_cache, ClientSessionCache)


# ---- resumption through the cache, and the controls ----------------------------------


@VERSIONS
def test_wrap_bio_resumes_from_the_second_connection(
    leaf: trustme.LeafCert, ca: trustme.CA, version: ssl.TLSVersion
) -> None:
    """Every connection after the first resumes; the counters say so."""
    server, cache = server_ctx(leaf, version), ClientSessionCache()
    ctx = verifying(cache, ca)
    outcomes = [pair(ctx, server) for _ in range(6)]
    assert [o.resumed for o in outcomes] == [False] + [True] * 5
    assert [o.offered for o in outcomes] == [False] + [True] * 5
    stats = cache.stats()
    assert stats["offered"] == stats["resumed"] == 5 and stats["rejected"] == 0
    assert stats["misses"] == 1 and stats["connections"] == 6


@VERSIONS
def test_without_the_cache_nothing_resumes(
    leaf: trustme.LeafCert, ca: trustme.CA, version: ssl.TLSVersion
) -> None:
    """Negative control: the same connections through a plain context, or through a
    ClientContext without a cache, never resume."""
    server = server_ctx(leaf, version)
    plain = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(plain)
    assert not any(pair(plain, server).resumed for _ in range(4))
    bare = verifying(None, ca)
    assert not any(pair(bare, server).resumed for _ in range(4))


@VERSIONS
def test_sessions_cross_contexts(
    leaf: trustme.LeafCert, ca: trustme.CA, version: ssl.TLSVersion
) -> None:
    """Unlike ssl's session=, a session made on one context resumes on another
    context with the same trust (no "same context" restriction)."""
    server, cache = server_ctx(leaf, version), ClientSessionCache()
    assert not pair(verifying(cache, ca), server).resumed
    assert pair(verifying(cache, ca), server).resumed


@VERSIONS
def test_rejected_session_is_counted(
    leaf: trustme.LeafCert, ca: trustme.CA, version: ssl.TLSVersion
) -> None:
    """A server that no longer knows the session (new ticket keys) answers with a
    full handshake: counted as rejected, and the new session replaces it."""
    cache = ClientSessionCache()
    ctx = verifying(cache, ca)
    pair(ctx, server_ctx(leaf, version))
    fresh_server = server_ctx(leaf, version)  # other ticket keys, empty session cache
    assert not pair(ctx, fresh_server).resumed
    assert pair(ctx, fresh_server).resumed
    stats = cache.stats()
    assert stats["offered"] == 2 and stats["rejected"] == 1 and stats["resumed"] == 1


# ---- keys: hosts, ports, namespaces -----------------------------------------------------


def test_two_hosts_never_share(leaf: trustme.LeafCert, ca: trustme.CA) -> None:
    """A session for a.test is never offered to b.test, though the server (same
    ticket keys) would accept it."""
    server, cache = server_ctx(leaf, TLS12), ClientSessionCache()
    ctx = verifying(cache, ca)
    assert not pair(ctx, server, "a.test").resumed
    b = pair(ctx, server, "b.test")
    assert not b.offered and not b.resumed
    assert pair(ctx, server, "a.test").resumed and pair(ctx, server, "b.test").resumed
    # Control: the server would have resumed a.test's session for b.test.
    plain = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(plain)
    c_in, c_out, s_in, s_out = bios = tuple(ssl.MemoryBIO() for _ in range(4))
    first = plain.wrap_bio(c_in, c_out, server_hostname="a.test")
    pump(first, server.wrap_bio(s_in, s_out, server_side=True), bios)
    session = first.session
    c_in, c_out, s_in, s_out = bios = tuple(ssl.MemoryBIO() for _ in range(4))
    second = plain.wrap_bio(c_in, c_out, server_hostname="b.test", session=session)
    pump(second, server.wrap_bio(s_in, s_out, server_side=True), bios)
    assert second.session_reused


def test_two_ports_never_share(leaf: trustme.LeafCert, ca: trustme.CA) -> None:
    """Two servers on two ports with the SAME context (so the same ticket keys,
    which would accept each other's sessions) never get each other's session."""
    shared = server_ctx(leaf, TLS12)
    cache = ClientSessionCache()
    ctx = verifying(cache, ca)
    with InProcessServer(shared) as one, InProcessServer(shared) as two:
        assert not fetch(ctx, one.port).resumed
        second = fetch(ctx, two.port)
        assert not second.offered and not second.resumed
        assert fetch(ctx, one.port).resumed and fetch(ctx, two.port).resumed
    assert {(s.host, s.port) for s in cache.sessions()} == {
        ("localhost", one.port),
        ("localhost", two.port),
    }


def test_wrap_bio_port_rule(
    leaf: trustme.LeafCert, ca: trustme.CA, loopback: InProcessServer
) -> None:
    """wrap_bio without a port keys under port 0, apart from every real port;
    session_port() and wrap_bio(port=) give the real one."""
    server, cache = server_ctx(leaf, TLS12), ClientSessionCache()
    ctx = verifying(cache, ca)
    ctx.maximum_version = TLS12  # a reusable session: it can be offered twice below
    assert not fetch(ctx, loopback.port).resumed  # stored under the real port
    c_in, c_out, s_in, s_out = bios = tuple(ssl.MemoryBIO() for _ in range(4))
    obj = ctx.wrap_bio(c_in, c_out, server_hostname="localhost")
    assert offered(obj) is False  # port 0: nothing there
    pump(obj, server.wrap_bio(s_in, s_out, server_side=True), bios)
    del obj
    with tlsresume.session_port(loopback.port):
        c_in, c_out, s_in, s_out = tuple(ssl.MemoryBIO() for _ in range(4))
        assert offered(ctx.wrap_bio(c_in, c_out, server_hostname="localhost")) is True
    assert (
        offered(
            ctx.wrap_bio(
                ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname="localhost", port=loopback.port
            )
        )
        is True
    )
    assert {s.port for s in cache.sessions()} == {0, loopback.port}


def test_namespaces_are_separate(leaf: trustme.LeafCert, ca: trustme.CA) -> None:
    """Contexts in different namespaces never share sessions."""
    server, cache = server_ctx(leaf, TLS12), ClientSessionCache()
    alice, bob = verifying(cache, ca, "alice"), verifying(cache, ca, "bob")
    assert not pair(alice, server).resumed
    assert not pair(bob, server).offered
    assert pair(alice, server).resumed and pair(bob, server).resumed


def test_disable_namespace(leaf: trustme.LeafCert, ca: trustme.CA) -> None:
    """A disabled namespace drops its sessions, stores and offers nothing; others
    are untouched; enable() brings it back."""
    server, cache = server_ctx(leaf, TLS12), ClientSessionCache()
    off, on = verifying(cache, ca, "off"), verifying(cache, ca, "on")
    pair(off, server), pair(on, server)
    cache.disable("off")
    assert not cache.is_enabled("off") and cache.is_enabled("on")
    assert [s.namespace for s in cache.sessions()] == ["on"]
    assert not any(pair(off, server).resumed for _ in range(3))
    assert pair(on, server).resumed
    assert cache.stats()["disabled"] == 3
    cache.enable("off")
    pair(off, server)
    assert pair(off, server).resumed


# ---- MRU, size, time ---------------------------------------------------------------------


def test_mru_order_and_max_entries(leaf: trustme.LeafCert, ca: trustme.CA) -> None:
    """Servers are kept most recently used first; the least recently used goes when
    max_entries is reached; using a server moves it to the front."""
    server, cache = server_ctx(leaf, TLS12), ClientSessionCache(max_entries=3)
    ctx = verifying(cache, ca)
    for host in ("a.test", "b.test", "c.test", "d.test"):
        pair(ctx, server, host)
    assert [h for _, h, _ in cache.servers()] == ["d.test", "c.test", "b.test"]
    assert cache.stats()["evicted"] == 1
    assert not pair(ctx, server, "a.test").offered  # it was evicted (b.test goes now)
    assert pair(ctx, server, "c.test").resumed  # c.test moves to the front
    assert [h for _, h, _ in cache.servers()] == ["c.test", "a.test", "d.test"]
    cache.max_entries = 1
    assert [h for _, h, _ in cache.servers()] == ["c.test"]


def test_tls13_keeps_tickets_per_host(leaf: trustme.LeafCert, ca: trustme.CA) -> None:
    """At most tickets_per_host tickets per server, newest kept."""
    server = server_ctx(leaf, TLS13)
    server.num_tickets = 5
    cache = ClientSessionCache(tickets_per_host=3)
    pair(verifying(cache, ca), server)
    assert len(cache.sessions()) == 3 and cache.stats()["evicted"] == 2


def test_ttl_with_a_controlled_clock(leaf: trustme.LeafCert, ca: trustme.CA) -> None:
    """Sessions are offered until stored + ttl, not after; expired ones are counted."""
    clock = FakeClock()
    server, cache = server_ctx(leaf, TLS12), ClientSessionCache(ttl=60, clock=clock)
    ctx = verifying(cache, ca)
    pair(ctx, server)
    clock.advance(59)
    assert pair(ctx, server).resumed
    clock.advance(2)  # 61 s after the session was stored
    late = pair(ctx, server)
    assert not late.offered and not late.resumed
    assert cache.stats()["expired"] == 1


def test_session_lifetime_bounds_the_cache(leaf: trustme.LeafCert, ca: trustme.CA) -> None:
    """Without a TTL, the server's lifetime hint (session timeout) is the limit."""
    clock = FakeClock()
    server = server_ctx(leaf, TLS13)
    tlsresume.set_session_timeout(server, 100)
    cache = ClientSessionCache(clock=clock)
    ctx = verifying(cache, ca)
    pair(ctx, server)
    clock.advance(95)
    assert pair(ctx, server).resumed
    clock.advance(200)
    assert not pair(ctx, server).offered
    assert cache.stats()["expired"] >= 1
    assert all(s.deadline <= s.stored + 100 for s in cache.sessions())


def test_purge_drops_expired(leaf: trustme.LeafCert, ca: trustme.CA) -> None:
    """purge() removes what has expired and reports how many."""
    clock = FakeClock()
    server, cache = server_ctx(leaf, TLS12), ClientSessionCache(ttl=10, clock=clock)
    ctx = verifying(cache, ca)
    pair(ctx, server, "a.test")
    clock.advance(5)
    pair(ctx, server, "b.test")
    clock.advance(6)
    assert cache.purge() == 1 and [h for _, h, _ in cache.servers()] == ["b.test"]


# ---- ticket use ----------------------------------------------------------------------------


def test_tls13_tickets_are_used_once(leaf: trustme.LeafCert, ca: trustme.CA) -> None:
    """Each TLS 1.3 ticket is offered to one connection only; when they run out the
    next connection has nothing to offer."""
    server = server_ctx(leaf, TLS13)
    server.num_tickets = 3
    cache = ClientSessionCache()
    ctx = verifying(cache, ca)
    pair(ctx, server)
    server.num_tickets = 0  # no new tickets from now on
    used = [pair(ctx, server) for _ in range(3)]
    assert all(o.resumed for o in used)
    tickets = [o.offered_ticket for o in used]
    assert all(tickets) and len(set(tickets)) == 3
    assert tickets == [o.ticket for o in used]  # what the resumed connections ran on
    dry = pair(ctx, server)
    assert not dry.offered and not dry.resumed
    assert cache.stats()["misses"] == 2


def test_tls12_session_is_reused(leaf: trustme.LeafCert, ca: trustme.CA) -> None:
    """A TLS 1.2 session stays in the cache and is offered again and again."""
    server, cache = server_ctx(leaf, TLS12), ClientSessionCache()
    ctx = verifying(cache, ca)
    pair(ctx, server)
    used = [pair(ctx, server) for _ in range(4)]
    assert all(o.resumed for o in used)
    assert len({o.ticket for o in used}) == 1
    assert len(cache.sessions()) == 1


# ---- the safety rule, end to end ---------------------------------------------------------


@VERSIONS
def test_unverified_session_is_not_offered_to_a_verifying_context(
    leaf: trustme.LeafCert, ca: trustme.CA, version: ssl.TLSVersion
) -> None:
    """A session made with CERT_NONE is withheld from a verifying context sharing the
    cache (which then verifies the server in a full handshake); the other way round
    is allowed."""
    server, cache = server_ctx(leaf, version), ClientSessionCache()
    lax = ClientContext(cache=cache)
    lax.check_hostname = False
    lax.verify_mode = ssl.CERT_NONE
    strict = verifying(cache, ca)
    pair(lax, server)
    outcome = pair(strict, server)
    assert not outcome.offered and not outcome.resumed
    assert cache.stats()["withheld_unsafe"] == 1
    assert pair(strict, server).resumed  # control: its own session resumes
    if version == TLS12:  # TLS 1.3 tickets were single-use; 1.2's stays
        assert pair(lax, server).resumed


def test_chain_only_session_is_not_offered_to_a_hostname_checking_context(
    leaf: trustme.LeafCert, ca: trustme.CA
) -> None:
    """check_hostname=False made the session: a context checking hostnames skips it."""
    server, cache = server_ctx(leaf, TLS12), ClientSessionCache()
    chain_only = verifying(cache, ca)
    chain_only.check_hostname = False
    pair(chain_only, server)
    assert not pair(verifying(cache, ca), server).offered


def test_other_trust_or_identity_is_not_offered(
    leaf: trustme.LeafCert, ca: trustme.CA, other_ca: trustme.CA
) -> None:
    """Contexts trusting other CAs, verifying with other flags, or presenting another
    client certificate, do not get each other's sessions."""
    server, cache = server_ctx(leaf, TLS12), ClientSessionCache()
    pair(verifying(cache, ca), server)
    wider = verifying(cache, ca)
    other_ca.configure_trust(wider)
    assert not pair(wider, server).offered
    partial = verifying(cache, ca)
    partial.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    assert not pair(partial, server).offered
    no_cn = verifying(cache, ca)
    no_cn.hostname_checks_common_name = not no_cn.hostname_checks_common_name
    assert not pair(no_cn, server).offered
    with_cert = verifying(cache, ca)
    ca.issue_cert("client@example.test").configure_cert(with_cert)
    assert not pair(with_cert, server).offered
    assert pair(verifying(cache, ca), server).resumed  # control


# ---- capture: close without close_notify, fatal alerts, renewal ------------------------


def test_close_without_close_notify_keeps_the_session(
    ca: trustme.CA, loopback: InProcessServer
) -> None:
    """Python closes sockets without close_notify; that benign close must not make
    OpenSSL mark the cached TLS 1.2 session unusable."""
    cache = ClientSessionCache()
    ctx = verifying(cache, ca)
    ctx.maximum_version = TLS12
    results = [fetch(ctx, loopback.port).resumed for _ in range(5)]
    assert results == [False, True, True, True, True]
    assert cache.stats()["unusable"] == 0


def test_fatal_alert_drops_the_session(leaf: trustme.LeafCert, ca: trustme.CA) -> None:
    """A connection that ends in a fatal alert (a corrupted record) makes its session
    unusable: it is dropped, not offered."""
    server, cache = server_ctx(leaf, TLS12), ClientSessionCache()
    ctx = verifying(cache, ca)
    pair(ctx, server)
    c_in, c_out, s_in, s_out = bios = tuple(ssl.MemoryBIO() for _ in range(4))
    client = ctx.wrap_bio(c_in, c_out, server_hostname="localhost", port=443)
    pump(client, server.wrap_bio(s_in, s_out, server_side=True), bios)
    assert client.session_reused
    c_in.write(b"\x17\x03\x03\x00\x20" + b"\x00" * 32)  # application data with a bad MAC
    with pytest.raises(ssl.SSLError):
        client.read(1)
    del client
    gc.collect()
    after = pair(ctx, server)
    assert not after.offered and cache.stats()["unusable"] == 1


def test_tls12_ticket_under_a_retired_key_keeps_resuming(
    leaf: trustme.LeafCert, ca: trustme.CA
) -> None:
    """A tlsresume server never renews a TLS 1.2 ticket onto a newer key (forward
    secrecy of the keys, see keyring.c): after a rotation the cached session keeps
    its ticket and keeps resuming; nothing needs capturing at close."""
    with tlsresume.TicketKeyRing() as ring:
        server = server_ctx(leaf, TLS12)
        tlsresume.install(server, ring)
        cache = ClientSessionCache()
        ctx = verifying(cache, ca)
        first = pair(ctx, server)
        ring.rotate()  # the ticket's key retires, still inside its window
        again = pair(ctx, server)
        assert again.resumed and again.ticket == first.ticket
        after = pair(ctx, server)
        assert after.offered and after.resumed and after.offered_ticket == first.ticket
        assert cache.stats()["captured_at_close"] == 0


# ---- threads ----------------------------------------------------------------------------


@VERSIONS
def test_threads_share_one_cache(
    leaf: trustme.LeafCert, ca: trustme.CA, version: ssl.TLSVersion
) -> None:
    """Eight threads hammering one cache: no crash, consistent counters, limits kept."""
    cache = ClientSessionCache(max_entries=4, tickets_per_host=2)
    server = server_ctx(leaf, version)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            ctx = verifying(cache, ca)
            for i in range(25):
                pair(ctx, server, HOSTS[(index + i) % len(HOSTS)])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and not any(t.is_alive() for t in threads)
    stats = cache.stats()
    assert stats["connections"] == 200
    assert stats["offered"] == stats["resumed"] + stats["rejected"] + stats["incomplete"]
    assert stats["resumed"] > 0
    assert stats["servers"] <= 4 and stats["sessions"] <= 8


# ---- save and load ---------------------------------------------------------------------


def saved_cache(
    leaf: trustme.LeafCert, ca: trustme.CA, path: Path, version=TLS12, **kwargs: object
) -> tuple[ssl.SSLContext, int]:
    server = server_ctx(leaf, version)
    cache = ClientSessionCache(**kwargs)  # type: ignore[arg-type]
    pair(verifying(cache, ca), server, "a.test")
    pair(verifying(cache, ca), server, "b.test")
    return server, cache.save(path, key=KEY)


@VERSIONS
def test_save_and_load_resume(
    leaf: trustme.LeafCert, ca: trustme.CA, tmp_path: Path, version: ssl.TLSVersion
) -> None:
    """Saved sessions resume from a new cache; the file is 0600 and not plaintext."""
    path = tmp_path / "sessions"
    server, written = saved_cache(leaf, ca, path, version)
    assert written == (2 if version == TLS12 else 4)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert b"a.test" not in path.read_bytes()
    cache = ClientSessionCache.from_file(path, key=KEY)
    assert cache.stats()["loaded"] == written
    assert [h for _, h, _ in cache.servers()] == ["b.test", "a.test"]  # MRU kept
    ctx = verifying(cache, ca)
    assert pair(ctx, server, "a.test").resumed and pair(ctx, server, "b.test").resumed


def test_load_drops_expired(leaf: trustme.LeafCert, ca: trustme.CA, tmp_path: Path) -> None:
    """Sessions past their deadline are not loaded."""
    clock = FakeClock()
    path = tmp_path / "sessions"
    saved_cache(leaf, ca, path, clock=clock)
    clock.advance(7201)  # past the server's 7200 s session timeout
    assert ClientSessionCache(clock=clock).load(path, key=KEY) == 0
    assert ClientSessionCache().load(path, key=KEY) == 2


@pytest.mark.parametrize("damage", ["tampered", "truncated", "wrong key", "garbage", "empty"])
def test_bad_file_warns_and_loads_nothing(
    leaf: trustme.LeafCert,
    ca: trustme.CA,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    damage: str,
) -> None:
    """A damaged file or the wrong key gives one warning and an empty cache."""
    path = tmp_path / "sessions"
    saved_cache(leaf, ca, path)
    blob = path.read_bytes()
    key = KEY
    if damage == "tampered":
        path.write_bytes(blob[:40] + bytes([blob[40] ^ 1]) + blob[41:])
    elif damage == "truncated":
        path.write_bytes(blob[: len(blob) // 2])
    elif damage == "wrong key":
        key = bytes(32)
    elif damage == "garbage":
        path.write_bytes(os.urandom(300))
    else:
        path.write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="tlsresume"):
        cache = ClientSessionCache.from_file(path, key=key)
    assert len(cache) == 0 and cache.stats()["loaded"] == 0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(path) in warnings[0].getMessage()


def test_missing_file_is_quiet(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """No file yet (a first run) loads nothing without a warning."""
    with caplog.at_level(logging.WARNING, logger="tlsresume"):
        assert ClientSessionCache().load(tmp_path / "none", key=KEY) == 0
    assert not caplog.records


def test_plaintext_needs_the_opt_in(
    leaf: trustme.LeafCert, ca: trustme.CA, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Plaintext is written and read only with insecure_plaintext=True; a plaintext
    file offered where an encrypted one is expected is refused with a warning."""
    server, cache = server_ctx(leaf, TLS12), ClientSessionCache()
    pair(verifying(cache, ca), server)
    path = tmp_path / "plain"
    assert cache.save(path, insecure_plaintext=True) == 1
    assert b"localhost" in path.read_bytes()
    with caplog.at_level(logging.WARNING, logger="tlsresume"):
        assert ClientSessionCache().load(path, key=KEY) == 0
    assert "not encrypted" in caplog.text
    loaded = ClientSessionCache.from_file(path, insecure_plaintext=True)
    assert pair(verifying(loaded, ca), server).resumed
    os.chmod(path, 0o666)
    assert ClientSessionCache().load(path, insecure_plaintext=True) == 0


def _plain_file(path: Path, payload: bytes) -> Path:
    """A plaintext cache file (as save(insecure_plaintext=True) writes) holding
    ``payload`` as its JSON, mode 0600."""
    from tlsresume.client import _MAGIC_PLAIN

    path.write_bytes(_MAGIC_PLAIN + payload)
    os.chmod(path, 0o600)
    return path


def _saved_doc(leaf: trustme.LeafCert, ca: trustme.CA, path: Path) -> dict:  # type: ignore[type-arg]
    """The JSON of a real plaintext cache file with sessions for a.test and b.test."""
    import json

    from tlsresume.client import _MAGIC_PLAIN

    server = server_ctx(leaf, TLS12)
    cache = ClientSessionCache()
    pair(verifying(cache, ca), server, "a.test")
    pair(verifying(cache, ca), server, "b.test")
    assert cache.save(path, insecure_plaintext=True) == 2
    doc: dict = json.loads(path.read_bytes()[len(_MAGIC_PLAIN) :])  # type: ignore[type-arg]
    return doc


def _load_quietly(path: Path, caplog: pytest.LogCaptureFixture, **kwargs: object) -> int:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tlsresume"):
        return ClientSessionCache(**kwargs).load(path, insecure_plaintext=True)  # type: ignore[arg-type]


def test_deeply_nested_json_is_a_corrupt_file(
    leaf: trustme.LeafCert, ca: trustme.CA, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """JSON nested 200,000 deep (a RecursionError in the decoder) loads nothing, with
    one warning. Control: the real file it replaced loads."""
    import json

    path = tmp_path / "plain"
    doc = _saved_doc(leaf, ca, path)
    assert _load_quietly(path, caplog) == 2
    _plain_file(path, b"[" * 200_000 + b"]" * 200_000)
    assert _load_quietly(path, caplog) == 0
    assert "nested too deeply" in caplog.text
    _plain_file(path, json.dumps({**doc, "sessions": [[[[[[[[]]]]]]]]}).encode())
    assert _load_quietly(path, caplog) == 0
    assert "malformed" in caplog.text


@pytest.mark.parametrize("field", ["expires_ms", "stored_ms"])
def test_times_out_of_int64_range_are_a_corrupt_record(
    leaf: trustme.LeafCert,
    ca: trustme.CA,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    field: str,
) -> None:
    """expires_ms or stored_ms of 2**63 (an OverflowError in the C field) or below 0:
    nothing loads, one warning. Control: 2**63 - 1 is in range and loads."""
    import json

    path = tmp_path / "plain"
    doc = _saved_doc(leaf, ca, path)
    for bad in (1 << 63, 1 << 64, -1):
        doc["sessions"][0][field] = bad
        _plain_file(path, json.dumps(doc).encode())
        assert _load_quietly(path, caplog) == 0, bad
        assert "malformed session record" in caplog.text
    doc["sessions"][0][field] = (1 << 63) - 1
    _plain_file(path, json.dumps(doc).encode())
    if field == "expires_ms":  # stored in the far future: expired by no clock
        assert _load_quietly(path, caplog) == 2
    else:
        assert _load_quietly(path, caplog) in (1, 2)  # the far-future one may be refused


def test_load_counts_only_the_sessions_it_kept(
    leaf: trustme.LeafCert, ca: trustme.CA, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Loading two servers' sessions into a one-server cache keeps one and says 1
    (the other was evicted at once). Control: room for both says 2."""
    path = tmp_path / "plain"
    _saved_doc(leaf, ca, path)
    cache = ClientSessionCache(max_entries=1)
    assert cache.load(path, insecure_plaintext=True) == 1
    assert len(cache) == 1 and len(cache.sessions()) == 1
    assert _load_quietly(path, caplog, max_entries=2) == 2


def test_a_fifo_or_oversized_cache_file_loads_nothing_without_blocking(
    leaf: trustme.LeafCert,
    ca: trustme.CA,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A FIFO where the cache file should be loads nothing at once (its open would
    wait for a writer), as does a file over the size bound; control: the real file."""
    import tlsresume.client

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    done: list[int] = []
    thread = threading.Thread(target=lambda: done.append(_load_quietly(fifo, caplog)))
    thread.daemon = True
    thread.start()
    thread.join(5.0)
    if thread.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # release it, then fail
        pytest.fail("loading a FIFO blocked")
    assert done == [0] and "not a regular file (a FIFO)" in caplog.text
    path = tmp_path / "plain"
    _saved_doc(leaf, ca, path)
    monkeypatch.setattr(tlsresume.client, "MAX_CACHE_FILE_BYTES", path.stat().st_size - 1)
    assert _load_quietly(path, caplog) == 0
    assert "larger than" in caplog.text
    monkeypatch.setattr(tlsresume.client, "MAX_CACHE_FILE_BYTES", path.stat().st_size)
    assert _load_quietly(path, caplog) == 2


BAD_VALUES = [None, True, -1, 1 << 63, 1 << 64, 1.5, "x", "", [], {}, [1], {"a": 1}, "\0"]


def test_no_record_value_makes_load_raise(
    leaf: trustme.LeafCert, ca: trustme.CA, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every field of a record, and the document's own fields, replaced by each of a
    set of wrong values (or removed): load returns a count and never raises."""
    import copy
    import json

    path = tmp_path / "plain"
    doc = _saved_doc(leaf, ca, path)
    variants = []
    for field in doc["sessions"][0]:
        for bad in [*BAD_VALUES, "missing"]:
            d = copy.deepcopy(doc)
            if bad == "missing":
                del d["sessions"][0][field]
            else:
                d["sessions"][0][field] = bad
            variants.append(d)
    for field in ("format", "sessions"):
        for bad in BAD_VALUES:
            variants.append({**doc, field: bad})
    variants += [[], "x", 1, None, [doc]]
    for d in variants:
        _plain_file(path, json.dumps(d).encode())
        got = _load_quietly(path, caplog)
        assert isinstance(got, int) and 0 <= got <= 2, (d, got)


def test_attach_converts_a_plain_context(leaf: trustme.LeafCert, ca: trustme.CA) -> None:
    """cache.attach(ctx) turns a context a library built into a caching one, in place."""
    server, cache = server_ctx(leaf, TLS13), ClientSessionCache()
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    assert cache.attach(ctx, namespace="lib") is ctx
    pair(ctx, server)
    assert pair(ctx, server).resumed and cache.sessions()[0].namespace == "lib"
    with pytest.raises(TypeError):
        cache.attach(object())  # type: ignore[arg-type]


@pytest.mark.filterwarnings("ignore:This process.*multi-threaded:DeprecationWarning")
def test_forked_child_uses_the_inherited_cache(leaf: trustme.LeafCert, ca: trustme.CA) -> None:
    """A child forked while another thread holds the cache's lock inherits the
    cache unlocked and resumes from it; the parent carries on.

    The other thread holds the lock (a test hook, for 20 ms at a time, without the
    GIL) rather than doing handshakes, so that every fork meets it held: the
    child then hangs unless fork takes the lock first. A fork in the middle of
    another thread's OpenSSL call is another matter: it can leave the child with
    one of OpenSSL's own locks held, which no library can take first
    (docs/client.md says so)."""
    server, cache = server_ctx(leaf, TLS12), ClientSessionCache()
    ctx = verifying(cache, ca)
    pair(ctx, server)
    hffi, hlib = load_testhooks()
    held = foreign(hffi, "tlsr_client_cache *", cache._ptr)
    stop = threading.Event()
    holds = [0]

    def churn() -> None:
        while not stop.is_set():
            hlib.tlsr_client_debug_hold_lock(held, 20)
            holds[0] += 1

    worker = threading.Thread(target=churn)
    worker.start()
    try:
        pids = []
        for _ in range(5):
            pid = os.fork()
            if pid == 0:  # child: must neither deadlock nor miss the session
                code = 1
                try:
                    code = 0 if pair(ctx, server).resumed else 2
                finally:
                    os._exit(code)
            pids.append(pid)
        codes = []
        deadline = time.monotonic() + 20
        for pid in pids:
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    codes.append(os.waitstatus_to_exitcode(status))
                    break
                if time.monotonic() > deadline:
                    os.kill(pid, 9)
                    os.waitpid(pid, 0)
                    codes.append(-9)
                    break
                time.sleep(0.01)
    finally:
        stop.set()
        worker.join(10)
    assert codes == [0] * 5
    assert holds[0] > 0
    assert pair(ctx, server).resumed


# ---- offers that cannot fail: cipher lists and versions differ --------------------------


@pytest.fixture(scope="module")
def rsa_ca() -> trustme.CA:
    # RSA: the ECDHE-RSA suites need an RSA certificate.
    return trustme.CA(key_type=trustme.KeyType.RSA)


@pytest.fixture(scope="module")
def rsa_leaf(rsa_ca: trustme.CA) -> trustme.LeafCert:
    return rsa_ca.issue_cert("localhost", key_type=trustme.KeyType.RSA)


def tls_get(
    ctx: ssl.SSLContext, port: int, host: str = "localhost"
) -> tuple[bool | None, bool | None, str | None, str | None]:
    """One connection to a prefork worker, reading its one line (TLS 1.3 tickets come
    first); returns (resumed, offered, version, cipher)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as tls:
            tls.recv(64)
            cipher = tls.cipher()
            result = (
                tls.session_reused,
                offered(tls),
                tls.version(),
                cipher[0] if cipher else None,
            )
    gc.collect()
    return result


def test_contexts_with_other_ciphers_and_versions_share_a_cache_without_failing(
    rsa_ca: trustme.CA, rsa_leaf: trustme.LeafCert
) -> None:
    """Four contexts with one trust but different cipher lists and version ranges
    share a cache against one real server process: 40 alternating connections raise
    nothing, a session goes only to a context that can negotiate it, and each
    resumes wherever a session it can negotiate exists (38 of 40)."""

    def make_server() -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        rsa_leaf.configure_cert(ctx)
        ctx.set_ciphers("ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256")
        return ctx

    cache = ClientSessionCache()
    contexts = {
        name: verifying(cache, rsa_ca)
        for name in ("default", "aes128-gcm", "tls1.2-only", "tls1.3-only")
    }
    contexts["aes128-gcm"].set_ciphers("ECDHE-RSA-AES128-GCM-SHA256")
    contexts["aes128-gcm"].maximum_version = TLS12
    contexts["tls1.2-only"].maximum_version = TLS12
    contexts["tls1.3-only"].minimum_version = TLS13
    names = list(contexts)
    results: dict[str, list[tuple[bool | None, bool | None, str | None, str | None]]] = {
        n: [] for n in names
    }
    with prefork(make_server, workers=1) as fleet:
        for i in range(40):
            name = names[i % len(names)]
            results[name].append(tls_get(contexts[name], fleet.port))
    # default and aes128-gcm make the first TLS 1.3 and the first AES128-GCM
    # session; tls1.2-only can take the latter and tls1.3-only the former at once.
    first = {"default": False, "aes128-gcm": False, "tls1.2-only": True, "tls1.3-only": True}
    for name, got in results.items():
        assert [r[0] for r in got] == [first[name]] + [True] * 9, (name, got)
    assert {r[3] for r in results["aes128-gcm"]} == {"ECDHE-RSA-AES128-GCM-SHA256"}
    assert {r[2] for r in results["tls1.2-only"]} == {"TLSv1.2"}
    assert {r[2] for r in results["tls1.3-only"]} == {"TLSv1.3"}
    stats = cache.stats()
    assert stats["unfit"] > 0 and stats["rejected"] == 0 and stats["incomplete"] == 0
    assert stats["resumed"] == 38


def test_unfit_session_fails_without_the_check(
    rsa_ca: trustme.CA, rsa_leaf: trustme.LeafCert
) -> None:
    """Negative control: what the check prevents. ssl's own session= hands the
    AES256-GCM session to a connection limited to AES128-GCM, and OpenSSL fails
    that handshake when the server resumes it (illegal parameter)."""

    def make_server() -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        rsa_leaf.configure_cert(ctx)
        ctx.set_ciphers("ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256")
        ctx.maximum_version = TLS12
        return ctx

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # ssl's session= wants one context
    rsa_ca.configure_trust(ctx)
    with prefork(make_server, workers=1) as fleet:
        with socket.create_connection(("127.0.0.1", fleet.port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.recv(64)
                session = tls.session
                assert (tls.cipher() or ("",))[0] == "ECDHE-RSA-AES256-GCM-SHA384"
        ctx.set_ciphers("ECDHE-RSA-AES128-GCM-SHA256")
        with socket.create_connection(("127.0.0.1", fleet.port), timeout=5) as raw:
            with pytest.raises(ssl.SSLError, match="(?i)illegal.parameter|wrong.cipher"):
                with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as tls:
                    tls.recv(64)


# ---- memory: a byte budget no server can push past -------------------------------------


@pytest.fixture(scope="module")
def big_leaf(ca: trustme.CA) -> trustme.LeafCert:
    """A ~40 KB certificate for *.big.test (1500 filler names)."""
    return ca.issue_cert("*.big.test", *(f"filler-{i:05d}.example.org" for i in range(1500)))


def test_byte_budget_holds_against_many_large_tickets_for_many_names(
    ca: trustme.CA, big_leaf: trustme.LeafCert
) -> None:
    """A server (another process) with a ~40 KB certificate sending 8 TLS 1.3
    tickets per connection, for 40 server names: the cache's accounted bytes never
    exceed max_bytes, least recently used servers are evicted for room, and the
    newest server still resumes. Negative control: with a large budget the same
    traffic is charged many times the small one, so the budget is what bounds it."""

    def make_server() -> ssl.SSLContext:
        ctx = server_ctx(big_leaf, TLS13)
        ctx.num_tickets = 8
        return ctx

    budget = 1 << 20
    small = ClientSessionCache(max_bytes=budget)
    large = ClientSessionCache(max_bytes=1 << 30)
    with prefork(make_server, workers=1) as fleet:
        for cache in (small, large):
            ctx = verifying(cache, ca)
            for i in range(40):
                tls_get(ctx, fleet.port, f"n{i}.big.test")
                assert cache.stats()["bytes"] <= cache.max_bytes
            assert tls_get(ctx, fleet.port, "n39.big.test")[0]  # the newest still resumes
    s, big_stats = small.stats(), large.stats()
    assert s["evicted"] > 0 and s["servers"] < 40 and s["bytes"] > budget // 2
    assert big_stats["servers"] == 40 and big_stats["bytes"] > 8 * budget
    per_session = big_stats["bytes"] / big_stats["sessions"]
    assert per_session > 40_000  # the certificate is charged, not just the ticket


def test_max_bytes_is_validated_and_lowering_it_evicts(
    big_leaf: trustme.LeafCert, ca: trustme.CA
) -> None:
    """max_bytes below 64 KiB or not an int is refused naming it; lowering it drops
    least recently used servers at once."""
    for bad in (0, 1000, 65535, 1.5, True):
        with pytest.raises(ValueError, match="max_bytes"):
            ClientSessionCache(max_bytes=bad)  # type: ignore[arg-type]
    server, cache = server_ctx(big_leaf, TLS12), ClientSessionCache()
    ctx = verifying(cache, ca)
    hosts = [f"h{i}.big.test" for i in range(6)]
    for host in hosts:
        pair(ctx, server, host)
    assert cache.stats()["servers"] == len(hosts)
    cache.max_bytes = 1 << 18  # room for about three of these sessions
    assert cache.stats()["bytes"] <= cache.max_bytes
    assert 0 < cache.stats()["servers"] < len(hosts)
    assert cache.servers()[0][1] == hosts[-1]  # the most recent one stays


def test_ems_session_is_not_offered_where_ems_is_off(
    leaf: trustme.LeafCert, ca: trustme.CA
) -> None:
    """A TLS 1.2 session made with the extended master secret is not offered to a
    context sharing the cache with OP_NO_EXTENDED_MASTER_SECRET (the server would
    abort: "inconsistent extms"); that context does a full handshake, raises
    nothing, and then resumes its own session. Negative control: ssl's session=
    with the same setting fails."""
    no_ems = 1  # SSL_OP_NO_EXTENDED_MASTER_SECRET (OpenSSL 3.0); ssl has no name for it
    server, cache = server_ctx(leaf, TLS12), ClientSessionCache()
    with_ems, without = verifying(cache, ca), verifying(cache, ca)
    without.options |= no_ems
    assert not pair(with_ems, server).resumed
    first = pair(without, server)
    assert not first.offered and not first.resumed
    assert cache.stats()["unfit"] == 1
    assert pair(without, server).resumed and pair(with_ems, server).resumed
    plain = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(plain)
    session, _ = memory_pair(server, plain)
    plain.options |= no_ems
    with pytest.raises(ssl.SSLError, match="(?i)extms"):
        memory_pair(server, plain, session=session)


def test_ca_directory_enters_the_fingerprint_by_listing(
    leaf: trustme.LeafCert, ca: trustme.CA, other_ca: trustme.CA, tmp_path: Path
) -> None:
    """Two contexts trusting one CA directory (loaded lazily by OpenSSL) share
    sessions; once a certificate is added to the directory, a context made after
    the change has another fingerprint and is not offered the older session.
    Control: a context reading the unchanged directory is."""
    import subprocess

    d = tmp_path / "cadir"
    d.mkdir()
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    subprocess.run(["openssl", "rehash", str(d)], check=True, capture_output=True)
    server, cache = server_ctx(leaf, TLS12), ClientSessionCache()

    def ctx() -> ClientContext:
        c = ClientContext(cache=cache)
        c.load_verify_locations(capath=str(d))
        return c

    assert not pair(ctx(), server).resumed
    assert pair(ctx(), server).resumed  # same directory, same listing: shared
    other_ca.cert_pem.write_to_path(str(d / "other.pem"))
    subprocess.run(["openssl", "rehash", str(d)], check=True, capture_output=True)
    after = pair(ctx(), server)
    assert not after.offered and not after.resumed
    assert cache.stats()["withheld_unsafe"] >= 1


def test_check_hostname_and_verify_flags_change_the_fingerprint(ca: trustme.CA) -> None:
    """Turning hostname checking or CRL checking on or off, or adding a non-CA
    certificate to the store, changes the context's trust fingerprint."""
    ctx = verifying(ClientSessionCache(), ca)
    seen = {ctx.profile().trust}
    ctx.check_hostname = False
    seen.add(ctx.profile().trust)
    ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    seen.add(ctx.profile().trust)
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    seen.add(ctx.profile().trust)
    ctx.load_verify_locations(
        cadata=ca.issue_cert("pinned.test").cert_chain_pems[0].bytes().decode()
    )
    seen.add(ctx.profile().trust)
    assert len(seen) == 5
    twin = verifying(ClientSessionCache(), ca)  # control: same configuration, same print
    assert verifying(ClientSessionCache(), ca).profile().trust == twin.profile().trust
