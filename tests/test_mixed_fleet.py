"""One key file across a mixed fleet, from the command line: ``serve --key-file``,
``serve --session-id-context``, and ``check A --against B`` telling an operator
whether two endpoints resume each other's sessions and, when not, why.

The peers are real: ``tlsresume serve`` instances, nginx and HAProxy (system
packages) on loopback, all reading key files these tests write.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tlsresume.inspect import ticket_key_name

from .support import client_context, https_get, tlsresume_cmd
from .test_fleet_interop import haproxy, needs_haproxy, needs_nginx, nginx


def check_against(a: int, b: int, cafile: str, *extra: str) -> tuple[int, dict, str]:  # type: ignore[type-arg]
    """``tlsresume check 127.0.0.1:A --against 127.0.0.1:B --json``: (exit code,
    the JSON, stderr)."""
    proc = subprocess.run(
        tlsresume_cmd(
            "check",
            f"127.0.0.1:{a}",
            "--against",
            f"127.0.0.1:{b}",
            "--cafile",
            cafile,
            "--servername",
            "localhost",
            "-n",
            "2",
            "--no-server-stats",
            "--json",
            *extra,
        ),
        capture_output=True,
        timeout=120,
    )
    return proc.returncode, json.loads(proc.stdout), proc.stderr.decode()


def tickets(result: dict, source: int, target: int) -> list[dict]:  # type: ignore[type-arg]
    """The ticket crossings from ``source`` to ``target`` (TLS 1.2 and 1.3)."""
    rows = [
        c
        for c in result["crossings"]
        if c["source"].endswith(f":{source}") and c["target"].endswith(f":{target}")
    ]
    assert rows, result["crossings"]
    return [c for c in rows if c["mode"] == "ticket"]


def key_file(tmp: Path, label: str) -> Path:
    """A fresh 80-byte nginx key (name | hmac | aes), written byte by byte."""
    path = tmp / f"{label}.key"
    path.write_bytes(os.urandom(80))
    path.chmod(0o600)
    return path


def test_two_serves_sharing_a_key_file_accept_each_other(serve, server_cert, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Two instances reading one key file: each resumes the other's tickets, TLS 1.2
    and 1.3, and --require-shared exits 0. Their session IDs do not cross (no shared
    store), and the report says so."""
    keys = key_file(tmp_path, "fleet")
    args = ("--workers", "2", "--key-file", str(keys), "--key-format", "nginx80")
    a, b = serve(*args), serve(*args)
    code, result, err = check_against(a.port, b.port, server_cert.cafile, "--require-shared")
    assert code == 0, (err, result["crossings"])
    name = keys.read_bytes()[:16].hex()
    for source, target in ((a.port, b.port), (b.port, a.port)):
        rows = tickets(result, source, target)
        assert len(rows) == 2 and all(c["resumed"] for c in rows), rows
        assert all(c["source_key"] == c["target_key"] == name for c in rows), rows
    ids = [c for c in result["crossings"] if c["mode"] == "session ID"]
    assert ids and not any(c["resumed"] for c in ids)
    assert all("share no session cache" in c["reason"] for c in ids), ids


def test_two_serves_with_different_key_files_are_told_apart(serve, server_cert, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Negative control: different key files. Nothing crosses, each row names the two
    different key names, and --require-shared exits 1."""
    k1, k2 = key_file(tmp_path, "one"), key_file(tmp_path, "two")
    a = serve("--workers", "2", "--key-file", str(k1), "--key-format", "nginx80")
    b = serve("--workers", "2", "--key-file", str(k2), "--key-format", "nginx80")
    code, result, _ = check_against(a.port, b.port, server_cert.cafile, "--require-shared")
    assert code == 1
    n1, n2 = k1.read_bytes()[:16].hex(), k2.read_bytes()[:16].hex()
    for source, target, want in ((a.port, b.port, (n1, n2)), (b.port, a.port, (n2, n1))):
        for c in tickets(result, source, target):
            assert c["resumed"] is False, c
            assert c["reason"].startswith("different ticket keys"), c
            assert (c["source_key"], c["target_key"]) == want, c
            assert want[0] in c["reason"] and want[1] in c["reason"], c


def test_serve_reloads_its_key_file(serve, server_cert, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """serve --key-file issues tickets under the file's key, and under the new key
    once the file is rewritten (within the poll interval), on every worker."""
    keys = key_file(tmp_path, "reload")
    server = serve(
        "--workers", "2", "--key-file", str(keys), "--key-format", "nginx80", "--key-poll", "0.2"
    )
    ctx = client_context(server_cert.cafile, "1.2")

    def names() -> set[bytes | None]:
        return {ticket_key_name(https_get(server.host, server.port, ctx).session) for _ in range(4)}

    assert names() == {keys.read_bytes()[:16]}
    fresh = tmp_path / "fresh.key"
    fresh.write_bytes(os.urandom(80))
    os.replace(fresh, keys)  # an atomic rewrite, as an operator's rotation does
    deadline = time.monotonic() + 10
    while names() != {keys.read_bytes()[:16]}:
        assert time.monotonic() < deadline, "the new key was never used"
        time.sleep(0.1)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--key-file", "K"], "--key-file needs --key-format"),
        (["--key-file", "K", "--key-format", "nginx80", "--rotate", "60"], "do not go together"),
        (["--key-file", "K", "--key-format", "nginx80", "--no-share"], "do not go together"),
        (["--key-format", "nginx80"], "give --key-file PATH"),
        (["--key-file", "K", "--key-format", "bogus"], "bogus"),
        (["--session-id-context", "x" * 33], "OpenSSL takes 1 to 32"),
        (["--session-id-context", "hex:zz"], "hex digits"),
        (["--session-id-context", "nginx"], "give --cert and --key"),
        (["--key-file", "/nonexistent/ticket.key", "--key-format", "nginx80"], "ticket.key"),
    ],
)
def test_serve_key_options_fail_clearly(tmp_path, args, message) -> None:  # type: ignore[no-untyped-def]
    """Bad --key-file / --key-format / --session-id-context combinations exit
    non-zero with one line naming the option and the fix."""
    keys = key_file(tmp_path, "bad")
    argv = [str(keys) if a == "K" else a for a in args]
    proc = subprocess.run(
        tlsresume_cmd("serve", "--port", "0", *argv), capture_output=True, timeout=60
    )
    err = proc.stderr.decode()
    assert proc.returncode != 0
    assert message in err, err
    assert "Traceback" not in err, err


# ---- nginx and HAProxy --------------------------------------------------------------

PEERS = {
    "nginx": pytest.param("nginx", marks=needs_nginx),
    "haproxy": pytest.param("haproxy", marks=needs_haproxy),
}


@pytest.mark.parametrize("kind", PEERS.values())
@pytest.mark.parametrize("with_context", [True, False], ids=["context", "no-context"])
def test_serve_joins_a_real_fleet(serve, server_cert, tmp_path, kind, with_context) -> None:  # type: ignore[no-untyped-def]
    """serve reading nginx's (80-byte) or HAProxy's key file with the fleet's
    session ID context (--session-id-context nginx / haproxy): check --against
    reports that each accepts the other's tickets, TLS 1.2 and 1.3. Without the
    setting (the negative control) nothing crosses, and the reason given is the
    context (the same key name, not resumed)."""
    if kind == "nginx":
        keys, fmt = key_file(tmp_path, "nginx"), "nginx80"
    else:
        keys, fmt = tmp_path / "haproxy.keys", "haproxy"
        import base64

        keys.write_text("".join(base64.b64encode(os.urandom(80)).decode() + "\n" for _ in range(3)))
    context = ["--session-id-context", kind] if with_context else []
    python = serve("--workers", "2", "--key-file", str(keys), "--key-format", fmt, *context)
    start = nginx if kind == "nginx" else haproxy
    with start(tmp_path, server_cert, keys) as peer:
        code, result, err = check_against(
            python.port, peer.port, server_cert.cafile, "--require-shared"
        )
    rows = tickets(result, python.port, peer.port) + tickets(result, peer.port, python.port)
    assert len(rows) == 4, result["crossings"]
    if with_context:
        assert code == 0, (err, rows)
        assert all(c["resumed"] for c in rows), rows
    else:
        assert code == 1
        for c in rows:
            assert c["resumed"] is False and c["source_key"] == c["target_key"], c
            assert "session ID contexts differ" in c["reason"], c


@needs_nginx
def test_serve_with_another_key_file_does_not_join_nginx(serve, server_cert, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Negative control: nginx's session ID context but a different key file:
    nothing crosses, and the reason is the keys."""
    mine, theirs = key_file(tmp_path, "mine"), key_file(tmp_path, "theirs")
    python = serve(
        "--workers", "2", "--key-file", str(mine), "--key-format", "nginx80",
        "--session-id-context", "nginx",
    )  # fmt: skip
    with nginx(tmp_path, server_cert, theirs) as peer:
        code, result, _ = check_against(python.port, peer.port, server_cert.cafile)
    assert code == 0  # without --require-shared the report is information
    rows = tickets(result, python.port, peer.port) + tickets(result, peer.port, python.port)
    assert rows and all(c["resumed"] is False for c in rows), rows
    assert all(c["reason"].startswith("different ticket keys") for c in rows), rows
