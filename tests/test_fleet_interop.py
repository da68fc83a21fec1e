"""Real peers on loopback: what the ring's counters call a resumption, and tickets
crossing between tlsresume, nginx and HAProxy reading one key file.

Sessions travel as ``openssl s_client -sess_out/-sess_in`` PEM files, so a session
made against one server is offered to another, or offered after a byte of its
ticket was flipped.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import ssl
import subprocess
import time
import warnings
from pathlib import Path

import pytest

import tlsresume
import tlsresume.interop

from .conftest import ServerCert
from .handshake import prefork, reconnect_detail
from .support import InProcessServer

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl binary")
VERSIONS = pytest.mark.parametrize("version", ["1.2", "1.3"])


def s_client(port: int, cafile: str, version: str, *flags: str) -> str:
    """One ``openssl s_client`` HTTP/1.0 request to 127.0.0.1:port (SNI localhost);
    returns its output (stdout + stderr)."""
    proc = subprocess.run(
        [
            "openssl",
            "s_client",
            "-connect",
            f"127.0.0.1:{port}",
            "-servername",
            "localhost",
            "-CAfile",
            cafile,
            "-verify_return_error",
            f"-tls{version.replace('.', '_')}",
            *flags,
            "-ign_eof",
        ],
        input=b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n",
        capture_output=True,
        timeout=20,
    )
    out = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    assert f"TLSv{version}" in out, out
    return out


def reused(out: str) -> bool:
    """Whether s_client reports the session resumed ("Reused," vs "New,")."""
    return any(line.startswith("Reused,") for line in out.splitlines())


def new_session(port: int, cafile: str, version: str, path: Path) -> Path:
    """A full handshake that saves its session (with the server's ticket) to path."""
    out = s_client(port, cafile, version, "-sess_out", str(path))
    assert not reused(out) and path.stat().st_size > 0, out
    return path


def _pem_der(path: Path) -> bytes:
    body = "".join(line for line in path.read_text().splitlines() if "-----" not in line)
    return base64.b64decode(body)


def _write_pem(path: Path, der: bytes) -> None:
    b64 = base64.encodebytes(der).decode().replace("\n", "")
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    path.write_text(
        "-----BEGIN SSL SESSION PARAMETERS-----\n"
        + "\n".join(lines)
        + "\n-----END SSL SESSION PARAMETERS-----\n"
    )


def tamper(src: Path, dst: Path, key_name: bytes, where: str) -> None:
    """Copy session file src to dst with one byte of its ticket flipped: ``"body"``
    (the encrypted state, just after name and IV) or ``"hmac"`` (the last byte).
    The ticket is the DER OCTET STRING that starts with the ring's key name."""
    der = bytearray(_pem_der(src))
    at = der.find(key_name)
    assert at > 0 and der.count(key_name) == 1, "ticket not found in the session"
    if der[at - 2] == 0x04:
        length = der[at - 1]
    elif der[at - 3] == 0x04 and der[at - 2] == 0x81:
        length = der[at - 1]
    else:
        assert der[at - 4] == 0x04 and der[at - 3] == 0x82, "unexpected DER"
        length = der[at - 2] << 8 | der[at - 1]
    assert length > 16 + 16 + 32, length
    der[at + 32 if where == "body" else at + length - 1] ^= 0x01
    _write_pem(dst, bytes(der))


def ring_server(
    cert: ServerCert, ring: tlsresume.TicketKeyRing, version: str, **kwargs: object
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert.cert, cert.key)
    ctx.minimum_version = ctx.maximum_version = (
        ssl.TLSVersion.TLSv1_2 if version == "1.2" else ssl.TLSVersion.TLSv1_3
    )
    return tlsresume.install(ctx, ring, **kwargs)  # type: ignore[arg-type]


# ---- counters --------------------------------------------------------------------


@needs_openssl
@VERSIONS
def test_tampered_tickets_are_not_counted_as_resumed(server_cert, tmp_path, version) -> None:  # type: ignore[no-untyped-def]
    """Tickets with a valid key name but a flipped byte (body or HMAC) get a full
    handshake and count only as ticket_key_found_current, never as resumed; the
    untampered ticket (the positive control) resumes and counts as resumed."""
    with tlsresume.TicketKeyRing() as ring:
        name = bytes.fromhex(next(k.name for k in ring.keys() if k.role == "current"))
        with InProcessServer(ring_server(server_cert, ring, version)) as server:
            good = new_session(server.port, server_cert.cafile, version, tmp_path / "s.pem")
            bad = tmp_path / "bad.pem"
            before = ring.stats()
            for where in ("body", "hmac") * 4:
                tamper(good, bad, name, where)
                assert not reused(
                    s_client(server.port, server_cert.cafile, version, "-sess_in", str(bad))
                )
            after_tampered = ring.stats()
            assert reused(s_client(server.port, server_cert.cafile, version, "-sess_in", str(good)))
            after = ring.stats()
    found = after_tampered["ticket_key_found_current"] - before["ticket_key_found_current"]
    assert found == 8, (before, after_tampered)
    assert after_tampered["resumed_current"] == before["resumed_current"]
    assert after["resumed_current"] == before["resumed_current"] + 1, after
    assert after["ticket_key_found_current"] == after_tampered["ticket_key_found_current"] + 1


# ---- nginx and HAProxy fleets ------------------------------------------------------

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
HAPROXY = shutil.which("haproxy") or (
    "/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None
)
needs_nginx = pytest.mark.skipif(NGINX is None, reason="no nginx binary (apt-get install nginx)")
needs_haproxy = pytest.mark.skipif(
    HAPROXY is None, reason="no haproxy binary (apt-get install haproxy)"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Peer:
    """A real nginx or HAProxy process in the foreground on 127.0.0.1, its config,
    pid file and logs in a tmp dir; always stopped (``with``)."""

    def __init__(self, argv: list[str], port: int, log: Path) -> None:
        self.port, self.log = port, log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(argv, stdout=self._out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.proc.poll() is not None:
                    raise AssertionError(f"{argv[0]} exited: {log.read_text()}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    return
                except OSError:
                    assert time.monotonic() < deadline, log.read_text()
                    time.sleep(0.05)
            except BaseException:
                self.__exit__()
                raise

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._out.close()


def nginx(tmp: Path, cert: ServerCert, keyfile: Path) -> Peer:
    port = _free_port()
    for d in ("logs", "temp"):
        (tmp / d).mkdir(exist_ok=True)
    conf = tmp / "nginx.conf"
    conf.write_text(f"""
daemon off;
master_process off;
pid {tmp}/nginx.pid;
error_log {tmp}/logs/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/temp/body;
    proxy_temp_path {tmp}/temp/proxy;
    fastcgi_temp_path {tmp}/temp/fastcgi;
    uwsgi_temp_path {tmp}/temp/uwsgi;
    scgi_temp_path {tmp}/temp/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name localhost;
        ssl_certificate {cert.cert};
        ssl_certificate_key {cert.key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_ticket_key {keyfile};
        location / {{ return 200 "nginx\\n"; }}
    }}
}}
""")
    return Peer(
        [str(NGINX), "-p", str(tmp), "-e", f"{tmp}/logs/error.log", "-c", str(conf)],
        port,
        tmp / "nginx.out",
    )


def haproxy(tmp: Path, cert: ServerCert, keyfile: Path) -> Peer:
    port = _free_port()
    pem = tmp / "haproxy.pem"
    pem.write_text(Path(cert.cert).read_text() + Path(cert.key).read_text())
    conf = tmp / "haproxy.cfg"
    versions = "ssl-min-ver TLSv1.2 ssl-max-ver TLSv1.3"
    conf.write_text(f"""
global
    pidfile {tmp}/haproxy.pid
defaults
    mode http
    timeout connect 5s
    timeout client 5s
    timeout server 5s
frontend fe
    bind 127.0.0.1:{port} ssl crt {pem} tls-ticket-keys {keyfile} {versions}
    http-request return status 200 content-type text/plain string "haproxy"
""")
    return Peer(
        [str(HAPROXY), "-db", "-f", str(conf), "-p", f"{tmp}/haproxy.pid"],
        port,
        tmp / "haproxy.out",
    )


def write_keys(tmp: Path, kind: str, size: int) -> tuple[Path, str]:
    """Fresh random ticket keys of ``size`` bytes in the peer's own file format,
    written here byte by byte (not by tlsresume): nginx one raw key, HAProxy three
    base64 lines (the penultimate encrypts). Returns (path, tlsresume format)."""
    path = tmp / f"ticket-{kind}-{size}.key"
    if kind == "nginx":
        path.write_bytes(os.urandom(size))
        return path, "nginx"
    path.write_text("".join(base64.b64encode(os.urandom(size)).decode() + "\n" for _ in range(3)))
    return path, "haproxy"


PEERS = {
    "nginx": pytest.param("nginx", marks=needs_nginx),
    "haproxy": pytest.param("haproxy", marks=needs_haproxy),
}


def _sid(kind: str, cert: ServerCert) -> bytes:
    if kind == "nginx":
        return tlsresume.interop.nginx_session_id_context([cert.cert])
    return tlsresume.interop.HAPROXY_SESSION_ID_CONTEXT


def cross(
    kind: str, cert: ServerCert, tmp: Path, version: str, size: int, fleet: bool
) -> tuple[int, int, dict[str, int], dict[str, int]]:
    """Two sessions each way between a Python server (``fleet``: with the peer's
    session ID context; else tlsresume's default) and the peer, one key file.

    Returns (Python→peer resumed, peer→Python resumed, ring stats before, after).
    """
    keyfile, fmt = write_keys(tmp, kind, size)
    start = nginx if kind == "nginx" else haproxy
    extra = {"session_id_context": _sid(kind, cert)} if fleet else {}
    with (
        tlsresume.TicketKeyRing.from_file(keyfile, fmt, poll_interval=None) as ring,
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("error")  # a non-verifying context: no warning expected
        ctx = ring_server(cert, ring, version, **extra)
        with InProcessServer(ctx) as py, start(tmp, cert, keyfile) as peer:
            before = ring.stats()
            to_peer = to_python = 0
            for i in range(2):
                s = new_session(py.port, cert.cafile, version, tmp / f"py{i}.pem")
                out = s_client(peer.port, cert.cafile, version, "-sess_in", str(s))
                assert kind in out, out  # the peer answered
                to_peer += reused(out)
                s = new_session(peer.port, cert.cafile, version, tmp / f"peer{i}.pem")
                out = s_client(py.port, cert.cafile, version, "-sess_in", str(s))
                assert "worker 0" in out, out
                to_python += reused(out)
            after = ring.stats()
    return to_peer, to_python, before, after


@needs_openssl
@pytest.mark.parametrize("size", [48, 80])
@VERSIONS
@pytest.mark.parametrize("kind", PEERS.values())
def test_tickets_cross_between_tlsresume_and_the_fleet(
    server_cert, tmp_path, kind, version, size
) -> None:  # type: ignore[no-untyped-def]
    """With the peer's session ID context (nginx_session_id_context for nginx,
    b"haproxy" for HAProxy) and the peer's key file, tickets cross both ways: every
    session made on one side resumes on the other, TLS 1.2 and 1.3, 48- and 80-byte
    keys; and the ring counts each resumption on its side."""
    to_peer, to_python, before, after = cross(kind, server_cert, tmp_path, version, size, True)
    assert (to_peer, to_python) == (2, 2)
    assert after["resumed_current"] - before["resumed_current"] == 2, (before, after)


@needs_openssl
@pytest.mark.parametrize("size", [48, 80])
@VERSIONS
@pytest.mark.parametrize("kind", PEERS.values())
def test_tickets_do_not_cross_without_the_fleet_session_id_context(
    server_cert, tmp_path, kind, version, size
) -> None:  # type: ignore[no-untyped-def]
    """Negative control: the same key file without the session ID context setting
    resumes nothing across, either way. The ring still finds its key in the peer's
    tickets (ticket_key_found_current) but does not count them as resumed."""
    to_peer, to_python, before, after = cross(kind, server_cert, tmp_path, version, size, False)
    assert (to_peer, to_python) == (0, 0)
    found = after["ticket_key_found_current"] - before["ticket_key_found_current"]
    assert found >= 2 and after["resumed_current"] == before["resumed_current"], (before, after)


def test_nginx_session_id_context_is_nginx_digest(server_cert) -> None:  # type: ignore[no-untyped-def]
    """The helper's value is SHA-1("HTTP" + SHA-1(leaf DER)), 20 bytes; "stream"
    digests "STREAM"; bad input is refused naming the fix."""
    leaf = ssl.PEM_cert_to_DER_cert(
        Path(server_cert.cert).read_text().split("-----END CERTIFICATE-----")[0]
        + "-----END CERTIFICATE-----\n"
    )
    import hashlib

    want = hashlib.sha1(b"HTTP" + hashlib.sha1(leaf).digest()).digest()
    assert tlsresume.interop.nginx_session_id_context(server_cert.cert) == want
    assert tlsresume.interop.nginx_session_id_context([server_cert.cert], module="stream") != want
    with pytest.raises(ValueError, match="ssl_certificate"):
        tlsresume.interop.nginx_session_id_context(server_cert.key)
    with pytest.raises(ValueError, match="module"):
        tlsresume.interop.nginx_session_id_context(server_cert.cert, module="mail")


# ---- install(ctx, ring): the ring's own store ---------------------------------------


def _session_id_client(server_cert) -> ssl.SSLContext:  # type: ignore[no-untyped-def]
    """A client that resumes by session ID only, as curl does over TLS 1.2."""
    client = ssl.create_default_context(cafile=server_cert.cafile)
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    client.options |= ssl.OP_NO_TICKET
    return client


@pytest.mark.parametrize("companion", [True, False], ids=["default", "session_cache=False"])
def test_install_with_a_ring_shares_the_rings_store(server_cert, companion) -> None:  # type: ignore[no-untyped-def]
    """The shortest call, install(ctx, ring), with the ring made before the fork:
    a client that resumes by session ID only resumes every reconnection, on other
    workers too (through the store made beside the ring), with workers that close
    without close_notify. Control: TicketKeyRing(session_cache=False) resumes none
    that reach another worker."""
    ring = tlsresume.TicketKeyRing(session_cache=companion)
    assert (ring.session_store is not None) is companion

    def make() -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(server_cert.cert, server_cert.key)
        tlsresume.install(ctx, ring)
        return ctx

    try:
        with prefork(make, workers=3, clean_close=False) as fleet:
            r = reconnect_detail(fleet.port, _session_id_client(server_cert), 12, False)
    finally:
        ring.close()
    assert len(r.pids or ()) >= 2, r
    if companion:
        assert r.resumed == 12 and r.cross_resumed >= 1, r
    else:
        assert r.cross_resumed == 0, r


def test_a_named_ring_and_its_attachers_share_its_store() -> None:
    """TicketKeyRing.open(name) makes a store named <name>.sessions; attach() finds it,
    so spawned workers share it too; unlink() removes both names; a ring made with
    session_cache=False has none and its attachers none."""
    name = f"companion-{os.getpid()}"
    with tlsresume.TicketKeyRing.open(name, session_cache="1M") as ring:
        assert ring.session_store is not None
        assert ring.session_store.name == f"{name}.sessions"
        assert ring.session_store.size == 1 << 20
        with tlsresume.TicketKeyRing.attach(name) as joined:
            assert joined.session_store is not None
            joined.session_store.put(b"\x01" * 32, b"x" * 40, time.time() + 60)
            assert ring.session_store.get(b"\x01" * 32) == b"x" * 40
        ring.unlink()
        with pytest.raises(tlsresume.SharedMemoryError):
            tlsresume.SessionStore.attach(f"{name}.sessions")
    long = "n" * 200  # the longest name a ring may have
    with tlsresume.TicketKeyRing.open(long, session_cache="1M") as ring:
        assert ring.session_store is not None and ring.session_store.name is not None
        assert ring.session_store.name.endswith(".sessions")
        assert len(ring.session_store.name) <= len(long)
        ring.unlink()
    with tlsresume.TicketKeyRing(name=name, session_cache=False) as bare:
        assert bare.session_store is None
        with tlsresume.TicketKeyRing.attach(name) as joined:
            assert joined.session_store is None
        bare.unlink()
    with pytest.raises(TypeError, match="session_cache"):
        tlsresume.TicketKeyRing(session_cache=object())  # type: ignore[arg-type]
