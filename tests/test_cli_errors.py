"""Every error a user can reach from the command line is one line on stderr that
names the thing at fault and the fix: no traceback, no bare OpenSSL reason.

Each test runs the real command (``python -m tlsresume ...``) in a subprocess
against real files, real servers on loopback, and reads what it printed.
"""

from __future__ import annotations

import http.server
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

import tlsresume

from .support import child_env, tlsresume_cmd


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        tlsresume_cmd(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(),
        stdin=subprocess.DEVNULL,
    )


def _one_error_line(proc: subprocess.CompletedProcess[str], prefix: str = "tlsresume") -> str:
    """The command failed with exactly one error line and no traceback."""
    assert proc.returncode != 0, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"{prefix}: error: "), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def key_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A certificate and its key, and a second key of another certificate."""
    d = tmp_path_factory.mktemp("pem")
    ca = trustme.CA()
    leaf, other = ca.issue_cert("localhost"), ca.issue_cert("other.example")
    files = {
        "cert": d / "cert.pem",
        "key": d / "key.pem",
        "other_key": d / "other-key.pem",
    }
    leaf.cert_chain_pems[0].write_to_path(str(files["cert"]))
    leaf.private_key_pem.write_to_path(str(files["key"]))
    other.private_key_pem.write_to_path(str(files["other_key"]))
    return files


# --------------------------------------------------------------------------------------
# check
# --------------------------------------------------------------------------------------


def test_check_cafile_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    line = _one_error_line(_run("check", "--cafile", str(missing), "127.0.0.1:1"))
    print(line)
    assert str(missing) in line and "does not exist" in line


def test_check_cafile_that_is_a_private_key(key_files: dict[str, Path]) -> None:
    line = _one_error_line(_run("check", "--cafile", str(key_files["key"]), "127.0.0.1:1"))
    print(line)
    assert str(key_files["key"]) in line
    assert "holds no CA certificate" in line and "private key" in line


def test_check_untrusted_server_names_the_reason_and_the_fix(serve, server_cert) -> None:  # type: ignore[no-untyped-def]
    """A server whose CA the client does not trust: verification failed, OpenSSL's
    reason, and the two ways forward; with --cafile the same server checks fine."""
    server = serve("--workers", "1")
    target = f"127.0.0.1:{server.port}"
    line = _one_error_line(_run("check", target, "-n", "2", "--servername", "localhost"))
    print(line)
    assert "certificate verification failed" in line and target in line
    assert "unable to get local issuer certificate" in line  # OpenSSL's verify message
    assert "--cafile" in line and "--insecure" in line
    trusted = _run("check", target, "-n", "2", "--cafile", server_cert.cafile)
    assert trusted.returncode == 0, trusted.stderr


@pytest.fixture
def plain_http() -> Iterator[int]:
    """A plain-HTTP server on loopback (no TLS), its port."""
    httpd = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def test_check_plain_http_port_says_it_does_not_speak_tls(plain_http: int) -> None:
    line = _one_error_line(_run("check", f"127.0.0.1:{plain_http}", "-n", "2"))
    print(line)
    assert f"127.0.0.1:{plain_http} does not speak TLS" in line
    assert "plain HTTP" in line
    assert "WRONG_VERSION_NUMBER" not in line


def test_check_nothing_listening() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    line = _one_error_line(_run("check", f"127.0.0.1:{port}", "-n", "2"))
    print(line)
    assert "nothing listens" in line and str(port) in line


# --------------------------------------------------------------------------------------
# serve
# --------------------------------------------------------------------------------------


def test_serve_cert_that_does_not_exist(key_files: dict[str, Path]) -> None:
    cmd = ("serve", "--port", "0", "--cert", "/nonexistent/cert.pem", "--key")
    line = _one_error_line(_run(*cmd, str(key_files["key"])), "tlsresume serve")
    print(line)
    assert "/nonexistent/cert.pem" in line and "does not exist" in line


def test_serve_swapped_cert_and_key(key_files: dict[str, Path]) -> None:
    cert, key = str(key_files["cert"]), str(key_files["key"])
    line = _one_error_line(
        _run("serve", "--port", "0", "--cert", key, "--key", cert), "tlsresume serve"
    )
    print(line)
    assert "swapped" in line and f"--cert {cert} --key {key}" in line
    assert "PEM lib" not in line


def test_serve_key_of_another_certificate(key_files: dict[str, Path]) -> None:
    cert, other = str(key_files["cert"]), str(key_files["other_key"])
    line = _one_error_line(
        _run("serve", "--port", "0", "--cert", cert, "--key", other), "tlsresume serve"
    )
    print(line)
    assert f"--key {other} is not the private key of the certificate" in line


def test_serve_certificate_given_as_key(key_files: dict[str, Path]) -> None:
    cert = str(key_files["cert"])
    line = _one_error_line(
        _run("serve", "--port", "0", "--cert", cert, "--key", cert), "tlsresume serve"
    )
    print(line)
    assert f"--key {cert} holds no private key" in line


def test_serve_busy_port_fails_before_making_a_certificate() -> None:
    """A port in use is named with the fix, and no throwaway certificate is made
    (nothing on stdout: the self-signed path announces its certificate there)."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = _run("serve", "--port", str(port))
    line = _one_error_line(proc, "tlsresume serve")
    print(line)
    assert f"port {port} on 127.0.0.1 is already in use" in line and "--port 0" in line
    assert "self-signed" not in proc.stdout and proc.stdout == ""


# --------------------------------------------------------------------------------------
# keygen, stats, --version
# --------------------------------------------------------------------------------------


def test_keygen_unwritable_path_says_path_and_reason_only(tmp_path: Path) -> None:
    out = tmp_path / "no-such-dir" / "ticket.keys"
    line = _one_error_line(_run("keygen", "--format", "haproxy", "--out", str(out)))
    print(line)
    assert line == f"tlsresume: error: {out}: cannot write: No such file or directory"


def test_stats_prometheus_unknown_name() -> None:
    proc = _run("stats", "--prometheus", "nosuch-firsttouch")
    line = _one_error_line(proc)
    print(line)
    assert "nosuch-firsttouch" in line and "no key ring or session store" in line
    assert "'tlsresume stats' without a NAME lists" in line
    assert proc.stdout == ""


def test_version_names_package_and_openssl() -> None:
    import ssl

    proc = _run("--version")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"tlsresume {tlsresume.__version__}"
    assert ssl.OPENSSL_VERSION in lines
    assert "C core: attached" in lines
