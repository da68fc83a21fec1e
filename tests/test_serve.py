"""``tlsresume serve``: a real pre-fork server in a subprocess, real clients.

The resumption tests are the project's headline claim: four workers, each with its
own ``SSLContext``, behind one socket; a resuming client lands on a different worker
almost every time. With the shared ring nearly every reconnection resumes; with
``--no-share`` (the negative control) almost none do, so a pass is not luck.

One file (over 500 lines): ``tlsresume serve``'s behaviours against the same
started servers.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from tlsresume.regions import region_path
from tlsresume.tools.serve import Request, build_response, parse_request_head

from .support import (
    STATS_PATH,
    InProcessServer,
    ServeProcess,
    child_env,
    client_context,
    https_get,
    pid_alive,
    resuming_client,
    server_stats,
    tlsresume_cmd,
    wait_gone,
)

TLS = ("1.2", "1.3")


# --------------------------------------------------------------------------------------
# Pure HTTP helpers
# --------------------------------------------------------------------------------------


def test_parse_request_head_accepts_http10_and_11() -> None:
    """Request lines of HTTP/1.0 and 1.1 parse into method, target and version."""
    assert parse_request_head(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == Request(
        "GET", "/", "HTTP/1.1"
    )
    assert parse_request_head(b"HEAD /a?b HTTP/1.0\n\n") == Request("HEAD", "/a?b", "HTTP/1.0")


@pytest.mark.parametrize(
    "head",
    [b"", b"garbage", b"GET /\r\n", b"GET / HTTP/2.0\r\n", b"PRI * HTTP/2.0\r\n", b"\x16\x03\x01"],
)
def test_parse_request_head_rejects_garbage(head: bytes) -> None:
    """Anything that is not METHOD TARGET HTTP/1.x is garbage (None), never an exception."""
    assert parse_request_head(head) is None


def test_build_response_names_worker_and_closes() -> None:
    """A 200 names the worker in body and X-Worker, and says Connection: close."""
    resp = build_response(Request("GET", "/", "HTTP/1.0"), 1234, reused=True)
    head, body = resp.split(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.0 200 OK"
    assert "Content-Type: text/plain" in lines
    assert "Connection: close" in lines
    assert "X-Worker: 1234" in lines
    assert "X-Session-Reused: yes" in lines
    assert f"Content-Length: {len(body)}" in lines
    assert body == b"worker 1234\n"


def test_build_response_head_and_garbage() -> None:
    """HEAD gets headers only; garbage gets a 400; an oversized head a 431."""
    assert build_response(Request("HEAD", "/", "HTTP/1.1"), 1).endswith(b"\r\n\r\n")
    assert build_response(None, 1).startswith(b"HTTP/1.1 400 ")
    assert build_response(None, 1, too_large=True).startswith(b"HTTP/1.1 431 ")


# --------------------------------------------------------------------------------------
# Serving
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def baseline(serve_module) -> ServeProcess:  # type: ignore[no-untyped-def]
    """Four forked workers without tlsresume (module-wide)."""
    return serve_module("--workers", "4", "--no-share")


@pytest.mark.parametrize("version", TLS)
@pytest.mark.parametrize("http", ["HTTP/1.0", "HTTP/1.1"])
def test_answers_http_with_worker_pid(baseline, server_cert, version, http) -> None:  # type: ignore[no-untyped-def]
    """Every request gets 200, `worker <pid>` of one of the workers, then close_notify."""
    ctx = client_context(server_cert.cafile, version)
    request = f"GET / {http}\r\nHost: localhost\r\n\r\n".encode()
    r = https_get(baseline.host, baseline.port, ctx, request=request)
    assert r.version == f"TLSv{version}"
    assert r.status_line == f"{http} 200 OK"
    pid = int(r.headers["x-worker"])
    assert pid in baseline.pids
    assert r.body == f"worker {pid}\n".encode()
    assert r.headers["content-type"] == "text/plain"
    assert r.headers["connection"] == "close"
    assert int(r.headers["content-length"]) == len(r.body)
    assert r.clean_close, "server closed without close_notify"


def test_connections_go_round_robin(baseline, server_cert) -> None:  # type: ignore[no-untyped-def]
    """Sequential connections are spread over all workers by the blocking accept."""
    ctx = client_context(server_cert.cafile)
    seen = [https_get(baseline.host, baseline.port, ctx).headers["x-worker"] for _ in range(8)]
    assert len(set(seen)) == 4, seen


def _all_workers_answer(server: ServeProcess, cafile: str) -> set[int]:
    ctx = client_context(cafile)
    return {
        int(https_get(server.host, server.port, ctx).headers["x-worker"])
        for _ in range(3 * len(server.pids))
    }


def test_silent_and_garbage_clients_do_not_kill_workers(serve, server_cert) -> None:  # type: ignore[no-untyped-def]
    """Clients that close at once, send plaintext, or send a garbage request leave
    every worker alive and serving."""
    server = serve("--workers", "4", "--no-share")
    ctx = client_context(server_cert.cafile)
    for _ in range(8):
        # TCP connect and close: no ClientHello at all.
        socket.create_connection((server.host, server.port), timeout=5).close()
        # Handshake, then close without a request (`openssl s_client < /dev/null`).
        with socket.create_connection((server.host, server.port), timeout=5) as raw:
            ctx.wrap_socket(raw, server_hostname="localhost").close()
        # Plaintext HTTP on the TLS port.
        with socket.create_connection((server.host, server.port), timeout=5) as raw:
            raw.sendall(b"GET / HTTP/1.1\r\n\r\n")
            raw.settimeout(5)
            try:
                raw.recv(100)
            except OSError:
                pass
    garbage = https_get(server.host, server.port, ctx, request=b"\x00\xffnot http\r\n\r\n")
    assert garbage.status_line == "HTTP/1.1 400 Bad Request"
    huge = https_get(server.host, server.port, ctx, request=b"GET / HTTP/1.1\r\nX: " + b"a" * 70000)
    assert huge.status_line.startswith("HTTP/1.1 431")
    assert _all_workers_answer(server, server_cert.cafile) == set(server.pids)
    assert all(pid_alive(p) for p in server.pids)


def test_slow_client_does_not_stall_a_worker(serve, server_cert) -> None:  # type: ignore[no-untyped-def]
    """A client that connects and sends nothing ties up one thread, not its worker."""
    server = serve("--workers", "2", "--no-share")
    ctx = client_context(server_cert.cafile)
    idle = [socket.create_connection((server.host, server.port), timeout=5) for _ in range(4)]
    try:
        start = time.monotonic()
        seen = {https_get(server.host, server.port, ctx).headers["x-worker"] for _ in range(6)}
        assert time.monotonic() - start < 5.0
        assert len(seen) == 2
    finally:
        for s in idle:
            s.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("mode", ["fork", "spawn"])
def test_signal_stops_all_workers(serve, sig, mode) -> None:  # type: ignore[no-untyped-def]
    """SIGTERM or SIGINT to the master stops every worker and exits 0."""
    args = ["--workers", "3", "--no-share"] + (["--spawn"] if mode == "spawn" else [])
    server = serve(*args)
    assert len(server.pids) == 3 and all(pid_alive(p) for p in server.pids)
    assert server.stop(sig) == 0
    assert wait_gone(server.pids, 5.0) == []
    assert f"stopped on {signal.Signals(sig).name}" in server.stdout_text


def test_workers_exit_when_master_dies(serve) -> None:  # type: ignore[no-untyped-def]
    """Workers notice a master killed with SIGKILL and exit by themselves."""
    server = serve("--workers", "2", "--no-share")
    server.proc.kill()
    server.proc.wait(timeout=10)
    assert wait_gone(server.pids, 10.0) == []


def test_dead_worker_is_replaced(serve, server_cert) -> None:  # type: ignore[no-untyped-def]
    """A worker that dies is replaced, and the pool keeps its size."""
    server = serve("--workers", "2", "--no-share")
    os.kill(server.pids[0], signal.SIGKILL)
    # A connection the dying worker accepted in its last moments is reset; that is
    # the kill, not the server. Connect only once it is gone.
    assert wait_gone(server.pids[:1], 5.0) == []
    deadline = time.monotonic() + 10
    answering: set[int] = set()
    while time.monotonic() < deadline:
        answering = _all_workers_answer(server, server_cert.cafile)
        if len(answering) == 2 and server.pids[0] not in answering:
            break
        time.sleep(0.2)
    assert len(answering) == 2 and server.pids[0] not in answering


def test_self_signed_when_no_cert(serve) -> None:  # type: ignore[no-untyped-def]
    """Without --cert/--key it makes a throwaway certificate, says where, and removes
    it on exit."""
    server = serve("--workers", "1", "--no-share", cert=False)
    line = next(x for x in server.stdout_text.splitlines() if "self-signed" in x)
    cert = Path(line.split("certificate ", 1)[1].split()[0])
    assert cert.exists()
    assert (cert.parent.stat().st_mode & 0o777) == 0o700
    assert ((cert.parent / "key.pem").stat().st_mode & 0o777) == 0o600
    ctx = client_context(cert)  # it is its own trust anchor
    assert https_get(server.host, server.port, ctx, server_hostname="127.0.0.1").body
    server.stop()
    assert not cert.parent.exists()


def test_ciphers_and_tls_max(serve, server_cert) -> None:  # type: ignore[no-untyped-def]
    """--tls-max 1.2 caps the version and --ciphers picks the TLS 1.2 cipher."""
    server = serve(
        "--workers",
        "1",
        "--no-share",
        "--tls-max",
        "1.2",
        "--ciphers",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
    )
    ctx = client_context(server_cert.cafile)
    with socket.create_connection((server.host, server.port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.version() == "TLSv1.2"
            cipher = tls.cipher()
            assert cipher is not None and cipher[0] == "ECDHE-ECDSA-AES128-GCM-SHA256"


def test_bad_certificate_fails_fast(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A missing certificate file is one clear error and exit 1, not dying workers."""
    missing = str(tmp_path / "nope.pem")
    proc = subprocess.run(
        tlsresume_cmd("serve", "--port", "0", "--no-share", "--cert", missing, "--key", missing),
        capture_output=True,
        text=True,
        timeout=30,
        env=child_env(),
    )
    assert proc.returncode == 1
    assert "error" in proc.stderr


# --------------------------------------------------------------------------------------
# Resumption across workers: the headline
# --------------------------------------------------------------------------------------


@pytest.mark.interop
@pytest.mark.parametrize("version", TLS)
@pytest.mark.parametrize("mode", ["fork", "spawn"])
def test_shared_ring_resumes_across_workers(serve, server_cert, version, mode) -> None:  # type: ignore[no-untyped-def]
    """With the shared ring, >= 39 of 40 reconnections resume across >= 3 workers."""
    args = ["--workers", "4"] + (["--spawn"] if mode == "spawn" else [])
    server = serve(*args)
    assert server.fields["sharing"] != "off"
    ctx = client_context(server_cert.cafile, version)
    resumed, workers, *_ = resuming_client(server.host, server.port, ctx, 40)
    assert resumed >= 39, (resumed, workers)
    assert len(workers) >= 3, workers


@pytest.mark.interop
@pytest.mark.parametrize("version", TLS)
@pytest.mark.parametrize("mode", ["fork", "spawn"])
def test_no_share_negative_control(serve, server_cert, version, mode) -> None:  # type: ignore[no-untyped-def]
    """Without sharing nothing resumes across workers: only returns to the session's
    own worker do (at most a quarter of 40 at random, none with round-robin)."""
    args = ["--workers", "4", "--no-share"] + (["--spawn"] if mode == "spawn" else [])
    server = serve(*args)
    ctx = client_context(server_cert.cafile, version)
    r = resuming_client(server.host, server.port, ctx, 40)
    assert r.only_same_worker_resumed, r
    assert len(r.workers) >= 3, r


# --------------------------------------------------------------------------------------
# Real peers: openssl s_client and curl
# --------------------------------------------------------------------------------------

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl binary")
needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="no curl binary")


def _s_client(server: ServeProcess, cafile: str, version: str, *flags: str) -> str:
    """One `openssl s_client` request with extra ``flags`` (e.g. ``-sess_in F``);
    returns its output (stdout + stderr)."""
    proc = subprocess.run(
        [
            "openssl",
            "s_client",
            "-connect",
            f"{server.host}:{server.port}",
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
    return (proc.stdout + proc.stderr).decode("utf-8", "replace")


def _s_client_runs(
    server: ServeProcess, cafile: str, version: str, tmp: Path
) -> tuple[int, set[str]]:
    """-sess_out once, then -sess_in 8 times; returns (Reused count, workers)."""
    sess = tmp / f"sess-{version}.pem"
    first = _s_client(server, cafile, version, "-sess_out", str(sess))
    assert "worker " in first, first
    assert sess.exists() and sess.stat().st_size > 0
    reused, workers = 0, set()
    for _ in range(8):
        out = _s_client(server, cafile, version, "-sess_in", str(sess))
        assert f"TLSv{version}" in out, out
        reused += any(line.startswith("Reused,") for line in out.splitlines())
        workers.update(line.split()[1] for line in out.splitlines() if line.startswith("worker "))
    return reused, workers


@pytest.mark.interop
@needs_openssl
@pytest.mark.parametrize("version", TLS)
def test_openssl_s_client_reuses_across_workers(serve, server_cert, tmp_path, version) -> None:  # type: ignore[no-untyped-def]
    """`s_client -sess_in` reports Reused on all 8 runs, across workers."""
    server = serve("--workers", "4")
    reused, workers = _s_client_runs(server, server_cert.cafile, version, tmp_path)
    assert reused == 8
    assert len(workers) >= 3, workers


@pytest.mark.interop
@needs_openssl
@pytest.mark.parametrize("version", TLS)
def test_openssl_s_client_no_share_control(serve, server_cert, tmp_path, version) -> None:  # type: ignore[no-untyped-def]
    """Without sharing, s_client's saved session is reused only on its own worker."""
    server = serve("--workers", "4", "--no-share")
    reused, workers = _s_client_runs(server, server_cert.cafile, version, tmp_path)
    assert reused <= 4, reused
    assert len(workers) >= 3, workers


def _curl(port: int, host: str, cafile: str, version: str, fetches: int) -> tuple[int, int, str]:
    """curl fetching the same URL `fetches` times in one invocation.

    Returns:
        (fetches the server reports resumed, times curl offered a cached session,
        curl's verbose output)
    """
    url = f"https://localhost:{port}/"
    proc = subprocess.run(
        [
            "curl",
            "-sS",
            "-v",
            "--cacert",
            cafile,
            f"--tlsv{version}",
            "--tls-max",
            version,
            "--resolve",
            f"localhost:{port}:{host}",
            "--max-time",
            "20",
            *[url] * fetches,
        ],
        capture_output=True,
        timeout=30,
    )
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 0, err
    # "X-Session-Reused" is the server's word (serve sets it from session_reused):
    # curl's own "re-using session ID" only says it offered one.
    return err.count("X-Session-Reused: yes"), err.count("SSL re-using session ID"), err


@pytest.mark.interop
@needs_curl
def test_curl_tls13_reuses_its_session_across_workers(serve, server_cert) -> None:  # type: ignore[no-untyped-def]
    """curl (TLS 1.3) resumes every refetch although each lands on another worker."""
    server = serve("--workers", "4")
    resumed, offered, err = _curl(server.port, server.host, server_cert.cafile, "1.3", 8)
    assert offered == 7, err
    assert resumed == 7, err
    assert len(set(re.findall(r"X-Worker: (\d+)", err))) >= 3, err


@pytest.mark.interop
@needs_curl
def test_curl_tls13_no_share_control(serve, server_cert) -> None:  # type: ignore[no-untyped-def]
    """Without sharing curl still offers its tickets, but other workers refuse them."""
    server = serve("--workers", "4", "--no-share")
    resumed, offered, err = _curl(server.port, server.host, server_cert.cafile, "1.3", 8)
    assert offered == 7, err
    assert resumed <= 2, err


@pytest.mark.interop
@needs_curl
def test_curl_tls12_resumes_because_server_sends_close_notify(serve, server_cert) -> None:  # type: ignore[no-untyped-def]
    """curl (TLS 1.2) resumes every refetch from one worker: serve's close_notify
    keeps curl's session resumable."""
    server = serve("--workers", "1")
    resumed, offered, err = _curl(server.port, server.host, server_cert.cafile, "1.2", 8)
    assert offered == 7, err
    assert resumed == 7, err


@pytest.mark.interop
@needs_curl
def test_curl_tls12_drops_session_without_close_notify(server_cert) -> None:  # type: ignore[no-untyped-def]
    """Negative control: one server process that just closes the socket (no
    close_notify) resumes none of curl's TLS 1.2 refetches."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(server_cert.cert, server_cert.key)
    with InProcessServer(ctx, close_notify=False) as bare:
        resumed, _offered, err = _curl(bare.port, "127.0.0.1", server_cert.cafile, "1.2", 8)
    # curl still offers the session here; OpenSSL's server evicts it from its cache
    # when a connection is freed without close_notify (docs/design.md, "Unclean close evicts").
    assert resumed == 0 and bare.resumed == 0, err


@pytest.mark.interop
@needs_curl
@pytest.mark.parametrize("args", [[], ["--session-cache", "1M"]], ids=["defaults", "1M"])
def test_curl_tls12_across_workers_with_session_cache(serve, server_cert, args) -> None:  # type: ignore[no-untyped-def]
    """curl (TLS 1.2, which asks for no tickets) resumes 9 of 9 refetches by session
    ID across workers through the shared session store, which serve makes by
    default."""
    server = serve("--workers", "4", *args)
    assert server.store_name is not None
    resumed, offered, err = _curl(server.port, server.host, server_cert.cafile, "1.2", 10)
    assert "Newsession Ticket" not in err  # curl asked for no ticket: session IDs only
    assert offered == 9, err
    assert resumed == 9, err
    assert len(set(re.findall(r"X-Worker: (\d+)", err))) >= 3, err
    stats = server_stats(server.host, server.port, server_cert.cafile)
    assert stats["store"]["stats"]["hits"] >= 9, stats["store"]
    # Session-ID resumptions are the store's hits, not ticket resumptions.
    ring = stats["ring"]["stats"]
    assert ring["resumed_current"] == ring["resumed_older_key"] == 0, ring


@pytest.mark.interop
@needs_curl
@pytest.mark.parametrize("control", ["--no-session-cache", "--no-share"])
def test_curl_tls12_across_workers_without_session_cache(serve, server_cert, control) -> None:  # type: ignore[no-untyped-def]
    """Negative controls: the shared key ring alone (--no-session-cache) or no
    tlsresume at all (--no-share) cannot help curl's TLS 1.2 session IDs: no refetch
    that lands on another worker than the previous one resumes."""
    server = serve("--workers", "4", control)
    assert server.store_name is None
    resumed, offered, err = _curl(server.port, server.host, server_cert.cafile, "1.2", 10)
    assert offered == 9, err
    fetches = list(
        zip(
            re.findall(r"X-Worker: (\d+)", err),
            (r == "yes" for r in re.findall(r"X-Session-Reused: (\w+)", err)),
            strict=True,
        )
    )
    moves = [(a[0] != b[0], b[1]) for a, b in zip(fetches, fetches[1:], strict=False)]
    assert sum(moved for moved, _ in moves) >= 2, fetches  # the control means something
    assert not any(moved and was_resumed for moved, was_resumed in moves), fetches
    assert resumed <= 3, err


# --------------------------------------------------------------------------------------
# The shared session store (--session-cache, --no-tickets, --single-use)
# --------------------------------------------------------------------------------------


def _s_client_chain(
    server: ServeProcess, cafile: str, version: str, tmp: Path, reconnections: int, *flags: str
) -> tuple[int, set[str]]:
    """s_client once, then ``reconnections`` times, each run offering the session the
    previous run saved (``-sess_in F -sess_out F``). Returns (Reused count, workers)."""
    sess = tmp / f"chain-{version}.pem"
    sess.unlink(missing_ok=True)
    reused, workers = 0, set()
    for i in range(reconnections + 1):
        args = [*flags, "-sess_out", str(sess)] + (["-sess_in", str(sess)] if i else [])
        out = _s_client(server, cafile, version, *args)
        assert f"TLSv{version}" in out and "worker " in out, out
        if i:
            reused += any(line.startswith("Reused,") for line in out.splitlines())
        workers.update(line.split()[1] for line in out.splitlines() if line.startswith("worker "))
    return reused, workers


@pytest.mark.interop
@needs_openssl
@pytest.mark.parametrize("mode", ["fork", "spawn"])
def test_session_cache_resumes_session_ids_across_workers(
    serve, server_cert, tmp_path, mode
) -> None:  # type: ignore[no-untyped-def]
    """Tickets off, TLS 1.2: `s_client -no_ticket` resumes >= 39 of 40 reconnections by
    session ID across >= 3 workers through the shared store."""
    args = ["--workers", "4", "--session-cache", "1M", "--no-tickets"]
    server = serve(*args, *(["--spawn"] if mode == "spawn" else []))
    assert server.ring_name is None and server.store_name is not None
    reused, workers = _s_client_chain(server, server_cert.cafile, "1.2", tmp_path, 40, "-no_ticket")
    assert reused >= 39, (reused, workers)
    assert len(workers) >= 3, workers
    store = server_stats(server.host, server.port, server_cert.cafile)["store"]["stats"]
    assert store["hits"] >= 39, store


@pytest.mark.interop
@needs_openssl
@pytest.mark.parametrize(
    "control", [["--no-tickets", "--no-session-cache"], ["--no-share", "--no-tickets"]]
)
def test_session_ids_without_session_cache_control(serve, server_cert, tmp_path, control) -> None:  # type: ignore[no-untyped-def]
    """Negative control: without the store (ring only, or no tlsresume at all) the
    same s_client resumes at most a quarter of 40 reconnections."""
    server = serve("--workers", "4", *control)
    assert server.store_name is None
    reused, workers = _s_client_chain(server, server_cert.cafile, "1.2", tmp_path, 40, "-no_ticket")
    assert reused <= 10, (reused, workers)
    assert len(workers) >= 3, workers


@pytest.mark.interop
def test_tls13_stateful_tickets_resume_across_workers(serve, server_cert) -> None:  # type: ignore[no-untyped-def]
    """Tickets off, TLS 1.3: a Python client resumes >= 39 of 40 reconnections across
    workers with stateful tickets (IDs into the shared store)."""
    server = serve("--workers", "4", "--session-cache", "1M", "--no-tickets")
    ctx = client_context(server_cert.cafile, "1.3")
    resumed, workers, *_ = resuming_client(server.host, server.port, ctx, 40)
    assert resumed >= 39, (resumed, workers)
    assert len(workers) >= 3, workers
    stats = server_stats(server.host, server.port, server_cert.cafile)
    assert stats["ring"] is None and stats["tickets"] is False
    assert stats["store"]["stats"]["hits"] >= 39, stats["store"]


@pytest.mark.interop
def test_tls13_stateful_tickets_without_session_cache_control(serve, server_cert) -> None:  # type: ignore[no-untyped-def]
    """Negative control: tickets off and no store, each worker's stateful tickets
    name sessions only it holds: at most a quarter resume."""
    server = serve("--workers", "4", "--no-tickets", "--no-session-cache")
    ctx = client_context(server_cert.cafile, "1.3")
    r = resuming_client(server.host, server.port, ctx, 40)
    assert r.only_same_worker_resumed, r
    assert len(r.workers) >= 3, r


@pytest.mark.interop
@needs_openssl
@pytest.mark.parametrize("single_use", [True, False], ids=["single-use", "reusable"])
def test_single_use_ticket_replay(serve, server_cert, tmp_path, single_use) -> None:  # type: ignore[no-untyped-def]
    """--single-use: a saved TLS 1.3 stateful ticket resumes once; replaying it on
    another worker gets a full handshake. Without it (control) the replay resumes."""
    flags = ["--single-use"] if single_use else []
    server = serve("--workers", "4", "--session-cache", "1M", "--no-tickets", *flags)
    sess = tmp_path / "sess.pem"
    cafile = server_cert.cafile
    first = _s_client(server, cafile, "1.3", "-sess_out", str(sess))
    assert "New, TLSv1.3" in first, first
    use = _s_client(server, cafile, "1.3", "-sess_in", str(sess))
    replay = _s_client(server, cafile, "1.3", "-sess_in", str(sess))
    assert "Reused, TLSv1.3" in use, use
    workers = [re.search(r"^worker (\d+)", out, re.M) for out in (use, replay)]
    assert all(workers) and workers[0][1] != workers[1][1]  # type: ignore[index]
    if single_use:
        assert "New, TLSv1.3" in replay, replay
    else:
        assert "Reused, TLSv1.3" in replay, replay
    store = server_stats(server.host, server.port, cafile)["store"]
    assert store["settings"]["single_use"] is single_use
    assert (store["stats"]["consumed"] >= 1) is single_use


# --------------------------------------------------------------------------------------
# Named regions and the stats URL
# --------------------------------------------------------------------------------------


def _shm(kind: str, name: str) -> Path:
    return Path(region_path(kind, name))


@pytest.mark.parametrize("mode", ["fork", "spawn"])
def test_regions_are_named_and_removed_at_shutdown(serve, mode) -> None:  # type: ignore[no-untyped-def]
    """The ring and store are named serve-<master pid> while serving; stopping the
    server prints both stats lines and removes both names."""
    server = serve(
        "--workers", "2", "--session-cache", "1M", *(["--spawn"] if mode == "spawn" else [])
    )
    assert server.ring_name == server.store_name == f"serve-{server.proc.pid}"
    paths = [_shm("ring", server.ring_name), _shm("store", server.store_name)]
    assert all(p.exists() for p in paths)
    assert all((p.stat().st_mode & 0o777) == 0o600 for p in paths)
    assert server.stop() == 0
    assert not any(p.exists() for p in paths)
    assert "ring stats: tickets_issued=" in server.stdout_text
    assert "store stats: lookups=" in server.stdout_text


def test_leftover_region_with_our_name_gets_a_fresh_name(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A region left under the master's name (an earlier server with the same pid,
    killed) is left alone, and the server takes a fresh name and says so."""
    import io

    import tlsresume
    from tlsresume.tools.serve import ServerConfig
    from tlsresume.tools.serve.master import _Master

    leftover = tlsresume.SessionStore("64K", name=f"serve-{os.getpid()}")
    try:
        out = io.StringIO()
        master = _Master(ServerConfig(session_cache="64K"), out)
        master._make_regions()
        try:
            assert master.ring is not None and master.store is not None
            fresh = master.store.name
            assert fresh is not None and fresh.startswith(f"serve-{os.getpid()}-")
            assert master.ring.name == fresh
            assert "left by an earlier server" in out.getvalue()
        finally:
            master.stop()
        assert not _shm("store", fresh).exists() and not _shm("ring", fresh).exists()
        assert _shm("store", f"serve-{os.getpid()}").exists()  # not ours to remove
    finally:
        leftover.unlink()
        leftover.close()


def test_stats_url_reports_ring_and_store(serve, server_cert) -> None:  # type: ignore[no-untyped-def]
    """GET /.well-known/tlsresume/stats answers JSON with the master pid, worker count
    and the ring and store counters, which move with resumptions."""
    server = serve("--workers", "3", "--session-cache", "1M")
    before = server_stats(server.host, server.port, server_cert.cafile)
    assert before["server"] == "tlsresume serve"
    assert before["pid"] == server.proc.pid and before["workers"] == 3
    assert before["worker"] in server.pids and before["tickets"] is True
    assert before["ring"]["name"] == server.ring_name
    assert before["store"]["name"] == server.store_name
    ctx = client_context(server_cert.cafile, "1.3")
    resumed, *_ = resuming_client(server.host, server.port, ctx, 6)
    assert resumed == 6
    after = server_stats(server.host, server.port, server_cert.cafile)
    ring_before, ring_after = before["ring"]["stats"], after["ring"]["stats"]
    assert ring_after["resumed_current"] - ring_before["resumed_current"] == 6
    assert ring_after["tickets_issued"] > ring_before["tickets_issued"]


def test_stats_url_without_sharing_and_head(serve, server_cert) -> None:  # type: ignore[no-untyped-def]
    """With --no-share the stats URL still answers, with no ring and no store; HEAD
    gets the headers only; a query string does not matter."""
    server = serve("--workers", "1", "--no-share")
    stats = server_stats(server.host, server.port, server_cert.cafile)
    assert stats["ring"] is None and stats["store"] is None
    ctx = client_context(server_cert.cafile)
    head = https_get(
        server.host, server.port, ctx, request=f"HEAD {STATS_PATH}?x=1 HTTP/1.0\r\n\r\n".encode()
    )
    assert head.status_line == "HTTP/1.0 200 OK" and head.body == b""
    assert head.headers["content-type"] == "application/json"
    assert https_get(server.host, server.port, ctx).headers["content-type"] == "text/plain"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--no-share", "--session-cache", "1M"], "--no-share"),
        (["--single-use", "--no-session-cache"], "--single-use needs --session-cache"),
        (["--single-use"], "--no-tickets"),
        (["--session-cache", "1M", "--single-use"], "--no-tickets"),
        (["--no-tickets", "--rotate", "5"], "--rotate"),
        (["--session-cache", "lots"], "--session-cache"),
        (["--session-cache", "1K"], "64K"),
    ],
)
def test_inconsistent_session_cache_options_are_usage_errors(args, message, capsys) -> None:  # type: ignore[no-untyped-def]
    """Options that would silently do nothing (or contradict) exit 2 before anything
    is bound or forked, naming the option."""
    from tlsresume.tools.cli import main

    assert main(["serve", "--port", "0", *args]) == 2
    assert message in capsys.readouterr().err
