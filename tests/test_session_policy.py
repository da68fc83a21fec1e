"""A session resumes only where a full handshake would have admitted the client.

Two services share ticket keys or a session store (a key file, a named ring, an
inherited store, a Redis fleet name): service A requires client certificates,
service B admits anyone. A client without a certificate takes a session from B and
offers it to A. With CPython's one session ID context for every context ("Python")
A would resume it and serve the client without a certificate; tlsresume binds each
session to the policy that admitted it, so A must run a full handshake and refuse.
Every scenario has its positive controls (A's sessions resume on A's other workers
with the certificate, B's on B) and a negative control that puts the shared
"Python" value back, proving the scenario itself would catch the hole.

One file (over 500 lines): the session-crossing attack, each path of it beside
its control, on one PKI.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import tempfile
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import trustme

import tlsresume
from tlsresume import PolicyConflictError, SessionStore, TicketKey, TicketKeyRing
from tlsresume.keyfile import write as write_keys

from .handshake import Fleet, answer_http, fetch, memory_pair, prefork, wait_until
from .redisutil import RedisServer, redis_server_available

TLS12, TLS13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3
VERSIONS = pytest.mark.parametrize("version", [TLS12, TLS13], ids=["tls1.2", "tls1.3"])
HAVE_OPENSSL = (
    subprocess.run(["sh", "-c", "command -v openssl"], capture_output=True).returncode == 0
)


@dataclass(frozen=True)
class Pki:
    server_ca: trustme.CA
    client_ca: trustme.CA
    leaf: trustme.LeafCert  # the server's certificate (both services)
    client_leaf: trustme.LeafCert  # a client certificate the client CA issued
    dir: str


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    server_ca, client_ca = trustme.CA(), trustme.CA()
    leaf = server_ca.issue_cert("localhost", "open.test", "strict.test", "127.0.0.1")
    d = tmp_path_factory.mktemp("pki")
    server_ca.cert_pem.write_to_path(str(d / "server-ca.pem"))
    client_leaf = client_ca.issue_cert("client@example.test")
    client_leaf.private_key_and_cert_chain_pem.write_to_path(str(d / "client.pem"))
    return Pki(server_ca, client_ca, leaf, client_leaf, str(d))


def client_ctx(pki: Pki, version: ssl.TLSVersion, with_cert: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    pki.server_ca.configure_trust(ctx)
    ctx.maximum_version = version
    if with_cert:
        pki.client_leaf.configure_cert(ctx)
    return ctx


def service_ctx(
    pki: Pki,
    strict: bool,
    keys: object,
    store: object = None,
    tickets: bool = True,
    **install: object,
) -> ssl.SSLContext:
    """A server context; ``strict`` requires a client certificate from the client CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    pki.leaf.configure_cert(ctx)
    if strict:
        ctx.verify_mode = ssl.CERT_REQUIRED
        pki.client_ca.configure_trust(ctx)
    if not tickets:
        ctx.options |= ssl.OP_NO_TICKET
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tlsresume.TLSResumeWarning)  # explicit controls
        tlsresume.install(ctx, keys if tickets else None, session_cache=store, **install)  # type: ignore[arg-type]
    return ctx


def legacy_session_id_context(ctx: ssl.SSLContext) -> None:
    """Put back what CPython alone sets (b"Python" on every context): the state
    before tlsresume bound sessions to policies. Only for negative controls."""
    from tlsresume._binding import lib, ssl_ctx_pointer

    assert lib.tlsr_ctx_set_sid(ssl_ctx_pointer(ctx), lib.TLSR_SID_OFF, b"", 0) == 1


def refused(port: int, client: ssl.SSLContext, session: ssl.SSLSession) -> bool:
    """True if the server refused the connection (it asked for the certificate the
    client does not have); False if it served the client."""
    try:
        _, resumed, _ = fetch(port, client, session)
    except (ssl.SSLError, OSError, ValueError):
        return True
    assert not resumed, "a resumed session was served without a client certificate"
    return False


def attack(a: Fleet, b: Fleet, pki: Pki, version: ssl.TLSVersion) -> tuple[bool, bool]:
    """B's session offered to A by a client without a certificate. Returns
    (A refused it, A resumed it)."""
    open_client = client_ctx(pki, version, with_cert=False)
    session_b, _, _ = fetch(b.port, open_client)
    try:
        _, resumed, _ = fetch(a.port, open_client, session_b)
    except (ssl.SSLError, OSError, ValueError):
        return True, False
    return False, resumed


def controls(a: Fleet, b: Fleet, pki: Pki, version: ssl.TLSVersion, n: int = 6) -> None:
    """Sharing still works where the policy is the same: A's sessions resume on A's
    workers (with the certificate), B's on B's, across workers."""
    for fleet, client in (
        (a, client_ctx(pki, version, True)),
        (b, client_ctx(pki, version, False)),
    ):
        session, _, last = fetch(fleet.port, client)
        resumed = cross = tries = 0
        # at least n reconnections, and on until one reached another worker (the
        # kernel picks the worker; 4n is far beyond any run seen)
        while tries < n or (cross == 0 and tries < 4 * n):
            session, was_resumed, pid = fetch(fleet.port, client, session)
            resumed += was_resumed
            cross += was_resumed and pid != last
            last = pid
            tries += 1
        assert resumed == tries, (resumed, tries)
        assert cross >= 1  # several workers really took part


Factory = Callable[[bool], ssl.SSLContext]


@contextmanager
def two_services(make: Factory, workers: int = 2) -> Iterator[tuple[Fleet, Fleet]]:
    with (
        prefork(lambda: make(True), workers=workers) as a,
        prefork(lambda: make(False), workers=workers) as b,
    ):
        yield a, b


@pytest.fixture
def key_file(tmp_path: pytest.TempPathFactory) -> str:
    path = os.path.join(str(tmp_path), "ticket.keys")
    write_keys(path, [TicketKey.generate(80)], "nginx80")
    return path


def sharing_modes(key_file: str, pki: Pki, explicit: bytes | None) -> dict[str, Factory]:
    """How two services come to share: each factory builds a context of either
    policy, inside a worker."""
    ring_name = f"policy-{uuid.uuid4().hex[:10]}"
    store = SessionStore("1M")  # made before the fork: inherited by every worker
    extra = {"session_id_context": explicit} if explicit else {}

    def by_key_file(strict: bool) -> ssl.SSLContext:
        ring = TicketKeyRing.from_file(key_file, "nginx80")
        return service_ctx(pki, strict, ring, **extra)

    def by_named_ring(strict: bool) -> ssl.SSLContext:
        return service_ctx(pki, strict, TicketKeyRing.open(ring_name), **extra)

    def by_store(strict: bool) -> ssl.SSLContext:
        return service_ctx(pki, strict, None, store=store, tickets=False, **extra)

    return {"key file": by_key_file, "named ring": by_named_ring, "session store": by_store}


@pytest.mark.parametrize("mode", ["key file", "named ring", "session store"])
@VERSIONS
def test_session_from_open_service_never_resumes_on_strict_one(
    pki: Pki, key_file: str, mode: str, version: ssl.TLSVersion
) -> None:
    """Shared key file, shared named ring, shared store (session IDs in TLS 1.2,
    stateful tickets in TLS 1.3): B's session offered to A is not resumed and A still
    demands the certificate; sharing keeps working within each policy."""
    make = sharing_modes(key_file, pki, None)[mode]
    try:
        with two_services(make) as (a, b):
            was_refused, resumed = attack(a, b, pki, version)
            assert was_refused and not resumed
            controls(a, b, pki, version)
    finally:
        if mode == "named ring":
            pass  # the ring's name lives on only while a worker holds it


@pytest.mark.parametrize("mode", ["key file", "session store"])
@VERSIONS
def test_control_the_shared_python_value_reopens_the_hole(
    pki: Pki, key_file: str, mode: str, version: ssl.TLSVersion
) -> None:
    """Negative control: the same services, both given CPython's shared value
    (b"Python") explicitly, let B's session into A without a certificate, which is
    what happened before sessions were bound to their policy."""
    make = sharing_modes(key_file, pki, b"Python")[mode]
    with two_services(make) as (a, b):
        was_refused, resumed = attack(a, b, pki, version)
        assert not was_refused and resumed


@pytest.mark.skipif(not HAVE_OPENSSL, reason="needs the openssl command")
@VERSIONS
def test_s_client_replaying_the_open_services_session_is_refused(
    pki: Pki, key_file: str, version: ssl.TLSVersion
) -> None:
    """The attack as measured: ``openssl s_client -sess_out`` against B, then
    ``-sess_in`` against A (shared key file): no "Reused", no answer from A."""
    make = sharing_modes(key_file, pki, None)["key file"]
    flag = "-tls1_2" if version == TLS12 else "-tls1_3"
    with two_services(make) as (a, b), tempfile.TemporaryDirectory() as tmp:
        sess = os.path.join(tmp, "sess.pem")
        cafile = os.path.join(pki.dir, "server-ca.pem")

        def s_client(port: int, *extra: str) -> str:
            return subprocess.run(
                [
                    "openssl",
                    "s_client",
                    "-connect",
                    f"127.0.0.1:{port}",
                    "-servername",
                    "localhost",
                    "-CAfile",
                    cafile,
                    "-ign_eof",
                    flag,
                    *extra,
                ],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=20,
            ).stdout

        assert "New," in s_client(b.port, "-sess_out", sess)
        out = s_client(a.port, "-sess_in", sess)
        assert "Reused," not in out
        assert not any(line.strip().isdigit() for line in out.splitlines())  # not served
        # positive control: with the client certificate, A's own session resumes on A
        cert = os.path.join(pki.dir, "client.pem")
        s_client(a.port, "-sess_out", sess, "-cert", cert)
        assert "Reused," in s_client(a.port, "-sess_in", sess, "-cert", cert)


@pytest.mark.skipif(not redis_server_available(), reason="needs redis-server")
@pytest.mark.parametrize("legacy", [False, True], ids=["bound", "control-legacy"])
@pytest.mark.parametrize("tickets", [True, False], ids=["tickets", "session-ids"])
@VERSIONS
def test_redis_fleet_name_reused_across_services(
    pki: Pki, tickets: bool, legacy: bool, version: ssl.TLSVersion
) -> None:
    """Two services linked to one Redis under the same fleet name (shared fleet ring,
    shared session tier): B's session never resumes on A, and A's own sessions still
    resume. Negative control (legacy): with CPython's shared value B's session gets in."""
    from tlsresume.redis import connect_server

    def make(strict: bool, ring: TicketKeyRing, store: SessionStore) -> ssl.SSLContext:
        ctx = service_ctx(pki, strict, ring, store, tickets)
        if legacy:
            legacy_session_id_context(ctx)
        return ctx

    with RedisServer() as server, ExitStack() as stack:
        machines = []
        for strict in (True, False):
            ring, store = TicketKeyRing(), SessionStore("1M")
            stack.callback(ring.close)
            stack.callback(store.close)
            link = connect_server(
                server.url,
                ring=ring if tickets else None,
                store=store,
                name="reused",
                refresh=0.2,
                insecure_unsealed=True,
            )
            stack.callback(link.stop)
            machines.append((strict, ring, store))
        if tickets:  # both machines follow the one fleet ring
            assert wait_until(lambda: machines[0][1].keys() == machines[1][1].keys(), 10)
        fleets = [
            stack.enter_context(
                prefork(lambda s=strict, r=ring, st=store: make(s, r, st), workers=2)
            )
            for strict, ring, store in machines
        ]
        a, b = fleets
        open_client = client_ctx(pki, version, with_cert=False)
        session_b, _, _ = fetch(b.port, open_client)
        if not tickets:  # the session reaches Redis through the queued write
            assert wait_until(lambda: machines[1][2].stats()["stores"] >= 1, 5)
            assert wait_until(lambda: redis_has_sessions(server), 5)
        if legacy:
            assert fetch(a.port, open_client, session_b)[1]
            return
        assert refused(a.port, open_client, session_b)
        # control: a certificate-holding client's session from A resumes on A
        strict_client = client_ctx(pki, version, with_cert=True)
        session_a, _, _ = fetch(a.port, strict_client)
        assert fetch(a.port, strict_client, session_a)[1]


def redis_has_sessions(server: RedisServer) -> bool:
    client = server.client()
    try:
        return any(True for _ in client.scan_iter(count=100))
    finally:
        client.close()


# ---- one server: SNI-switched contexts -------------------------------------------


@VERSIONS
def test_sni_switch_to_a_strict_context_does_not_resume_open_sessions(
    pki: Pki, version: ssl.TLSVersion
) -> None:
    """One server, one ring, an SNI callback that switches to a context requiring
    client certificates for strict.test: a session made for open.test offered under
    strict.test gets a full handshake and is refused; strict.test's own sessions
    resume. Negative control: with one explicit value on both contexts it resumes."""

    def server(legacy: bool) -> Callable[[], ssl.SSLContext]:
        def make() -> ssl.SSLContext:
            ring = shared_ring
            strict = service_ctx(pki, True, ring)
            default = service_ctx(pki, False, ring)
            if legacy:
                for ctx in (strict, default):
                    legacy_session_id_context(ctx)

            def pick(sslobj: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
                if name == "strict.test":
                    sslobj.context = strict

            default.sni_callback = pick  # type: ignore[assignment]
            return default

        return make

    def get(
        port: int, client: ssl.SSLContext, host: str, session: ssl.SSLSession | None = None
    ) -> tuple[ssl.SSLSession, bool]:
        import socket

        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            client.wrap_socket(raw, server_hostname=host, session=session) as tls,
        ):
            tls.recv(64)
            resumed, sess = tls.session_reused, tls.session
            tls.unwrap()
        assert sess is not None
        return sess, resumed

    open_client = client_ctx(pki, version, with_cert=False)
    with TicketKeyRing() as shared_ring:
        with prefork(server(False), workers=2) as fleet:
            session, _ = get(fleet.port, open_client, "open.test")
            # OpenSSL keeps the first context's verify mode across an SNI switch, so
            # the full handshake that follows asks for no certificate here; what
            # tlsresume owns is that the open session does not resume.
            _, resumed = get(fleet.port, open_client, "strict.test", session)
            assert not resumed
            strict_client = client_ctx(pki, version, with_cert=True)
            session, _ = get(fleet.port, strict_client, "strict.test")
            for _ in range(4):
                session, resumed = get(fleet.port, strict_client, "strict.test", session)
                assert resumed
        with prefork(server(True), workers=2) as fleet:  # negative control
            session, _ = get(fleet.port, open_client, "open.test")
            _, resumed = get(fleet.port, open_client, "strict.test", session)
            assert resumed


# ---- reloads, service names, explicit values (in memory: real handshakes) ---------


@VERSIONS
def test_reload_with_another_client_ca_does_not_resume_old_sessions(
    pki: Pki, version: ssl.TLSVersion
) -> None:
    """A context rebuilt to trust another client CA (a reload that revoked the old
    one) does not resume sessions made under the old CA, and the old client is
    refused; an unchanged rebuild still resumes them."""
    other_ca = trustme.CA()
    client = client_ctx(pki, version, with_cert=True)
    with TicketKeyRing() as ring:
        before = service_ctx(pki, True, ring)
        session, _ = memory_pair(before, client)
        same = service_ctx(pki, True, ring)
        _, resumed = memory_pair(same, client, session)
        assert resumed  # control: the unchanged reload
        changed = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        pki.leaf.configure_cert(changed)
        changed.verify_mode = ssl.CERT_REQUIRED
        other_ca.configure_trust(changed)
        tlsresume.install(changed, ring)
        with pytest.raises(ssl.SSLError):
            memory_pair(changed, client, session)


def test_policy_change_after_install_takes_effect(pki: Pki) -> None:
    """Verification tightened after install() (verify_mode, a CA loaded later) moves
    the session ID context at the next handshake: old sessions no longer resume."""
    client = client_ctx(pki, TLS12, with_cert=True)
    with TicketKeyRing() as ring:
        ctx = service_ctx(pki, False, ring)
        session, _ = memory_pair(ctx, client)
        before = tlsresume.session_id_context(ctx)
        ctx.verify_mode = ssl.CERT_REQUIRED
        pki.client_ca.configure_trust(ctx)
        assert tlsresume.session_id_context(ctx) != before
        session2, resumed = memory_pair(ctx, client, session)
        assert not resumed
        assert memory_pair(ctx, client, session2)[1]  # control: the new policy's own


def test_service_names_keep_identical_services_apart(pki: Pki) -> None:
    """Two services configured alike but named apart do not resume each other's
    sessions; the same name does."""
    client = client_ctx(pki, TLS13, with_cert=False)
    with TicketKeyRing() as ring:
        shop = service_ctx(pki, False, ring, service="shop")
        admin = service_ctx(pki, False, ring, service="admin")
        shop2 = service_ctx(pki, False, ring, service="shop")
        session, _ = memory_pair(shop, client)
        assert not memory_pair(admin, client, session)[1]
        assert memory_pair(shop2, client, session)[1]


def test_server_certificate_is_part_of_the_policy(pki: Pki) -> None:
    """A context serving another certificate (a renewal, another virtual host) does
    not resume sessions made under the old one; the same certificate does."""
    client = client_ctx(pki, TLS12, with_cert=False)
    renewed = pki.server_ca.issue_cert("localhost")
    with TicketKeyRing() as ring:
        old = service_ctx(pki, False, ring)
        session, _ = memory_pair(old, client)
        new = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        renewed.configure_cert(new)
        tlsresume.install(new, ring)
        assert not memory_pair(new, client, session)[1]
        assert memory_pair(service_ctx(pki, False, ring), client, session)[1]


def test_default_session_id_context_is_not_pythons() -> None:
    """What tlsresume sets is a 32-byte digest, never CPython's shared b"Python"."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tlsresume.install(ctx, session_cache="1M")
    value = tlsresume.session_id_context(ctx)
    assert value is not None and len(value) == 32 and value != b"Python\0"


def test_explicit_value_joins_only_what_it_is_told_to(pki: Pki) -> None:
    """session_id_context= joins contexts with equal verification (they resume each
    other's sessions); one that verifies differently is refused with
    PolicyConflictError; a verifying context gets a warning spelling out the risk."""
    client = client_ctx(pki, TLS12, with_cert=False)
    value = f"join-{uuid.uuid4().hex[:8]}".encode()
    with TicketKeyRing() as ring:
        one = service_ctx(pki, False, ring, session_id_context=value)
        two = service_ctx(pki, False, ring, session_id_context=value)
        assert tlsresume.session_id_context(one) == value
        session, _ = memory_pair(one, client)
        assert memory_pair(two, client, session)[1]
        strict = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        pki.leaf.configure_cert(strict)
        strict.verify_mode = ssl.CERT_REQUIRED
        pki.client_ca.configure_trust(strict)
        with pytest.raises(PolicyConflictError, match="verifies clients differently"):
            tlsresume.install(strict, ring, session_id_context=value)
        with pytest.warns(tlsresume.TLSResumeWarning, match="client-certificate check"):
            tlsresume.install(strict, ring, session_id_context=value + b"-strict")
        # a value not joined with anything else: no conflict, still its own
        other = service_ctx(pki, False, ring)
        assert not memory_pair(other, client, session)[1]


@pytest.mark.parametrize(
    "bad, error", [(b"", ValueError), (b"x" * 33, ValueError), ("text", TypeError)]
)
def test_explicit_value_is_checked(bad: object, error: type[Exception]) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with pytest.raises(error):
        tlsresume.install(ctx, session_cache="1M", session_id_context=bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not both"):
        tlsresume.install(ctx, session_cache="1M", service="a", session_id_context=b"a")


# ---- tlsresume check --against ------------------------------------------------------


def http_prefork(make: Callable[[], ssl.SSLContext]) -> Any:
    return prefork(make, workers=2, answer=answer_http)


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_check_against_reports_a_cross_policy_session_as_critical(pki: Pki, version: str) -> None:
    """``tlsresume check A --against B``: CRITICAL first when A resumes B's session
    while refusing certificate-less clients (the legacy shared value), "does not
    resume" with tlsresume's default, "info" between two open services."""
    from tlsresume.tools.check import run_check

    from .support import tlsresume_cmd

    cafile = os.path.join(pki.dir, "server-ca.pem")
    with TicketKeyRing() as ring:

        def make(strict: bool, legacy: bool) -> Callable[[], ssl.SSLContext]:
            def build() -> ssl.SSLContext:
                ctx = service_ctx(pki, strict, ring)
                if legacy:
                    legacy_session_id_context(ctx)
                return ctx

            return build

        with http_prefork(make(True, True)) as a, http_prefork(make(False, True)) as b:
            result = run_check(
                "127.0.0.1",
                a.port,
                1,
                tls_version=version,
                cafile=cafile,
                servername="localhost",
                server_stats=False,
                against=("127.0.0.1", b.port),
            )
            assert result.against is not None
            assert result.against.severity == "critical", result.against
            assert result.against.target_admits_anonymous is False
            assert result.verdict.startswith("CRITICAL")
            cli = subprocess.run(
                tlsresume_cmd(
                    "check",
                    f"127.0.0.1:{a.port}",
                    "-n",
                    "1",
                    f"--tls{version}",
                    "--cafile",
                    cafile,
                    "--servername",
                    "localhost",
                    "--no-server-stats",
                    "--against",
                    f"127.0.0.1:{b.port}",
                ),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert cli.returncode == 1
            assert cli.stdout.splitlines()[0].startswith("CRITICAL"), cli.stdout
        with http_prefork(make(True, False)) as a, http_prefork(make(False, False)) as b:
            result = run_check(
                "127.0.0.1",
                a.port,
                1,
                tls_version=version,
                cafile=cafile,
                servername="localhost",
                server_stats=False,
                against=("127.0.0.1", b.port),
            )
            assert result.against is not None and result.against.severity == "ok"
            assert not result.against.resumed
        with http_prefork(make(False, False)) as a, http_prefork(make(False, False)) as b:
            result = run_check(
                "127.0.0.1",
                a.port,
                2,
                tls_version=version,
                cafile=cafile,
                servername="localhost",
                server_stats=False,
                against=("127.0.0.1", b.port),
            )
            assert result.against is not None and result.against.severity == "info"


def test_resumption_service_name_travels_to_spawned_workers(pki: Pki) -> None:
    """``Resumption(service=...)`` (and ``TLSRESUME_SERVICE``) reaches install(), also
    in the pickled copy a spawned worker gets: the same name resumes, another not."""
    import pickle

    from tlsresume.integrations import Resumption

    client = client_ctx(pki, TLS13, with_cert=False)

    def ctx_from(res: Resumption) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        pki.leaf.configure_cert(ctx)
        return res.install(ctx)

    shop = Resumption(spawn=True, service="shop")
    worker = pickle.loads(pickle.dumps(shop))
    assert worker.service == "shop"
    admin = Resumption.from_environ(
        {
            "TLSRESUME_RING": shop.ring.name,  # type: ignore[union-attr]
            "TLSRESUME_SERVICE": "admin",
        }
    )
    session, _ = memory_pair(ctx_from(shop), client)
    assert memory_pair(ctx_from(worker), client, session)[1]
    assert not memory_pair(ctx_from(admin), client, session)[1]
