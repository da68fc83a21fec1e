"""The ``tlsresume`` command line: keygen's file safety, usage errors, and ``demo``
end to end (including Ctrl-C) with no process left behind."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tlsresume import keyfile
from tlsresume.tools.cli import main

from .support import child_env, pids_with_env_marker, tlsresume_cmd, wait_gone

ALL_FORMATS = list(keyfile.FORMATS) + sorted(keyfile.ALIASES)


def _run(*args: str, timeout: float = 60, **kw: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        tlsresume_cmd(*args),
        capture_output=True,
        timeout=timeout,
        env=kw.pop("env", None) or child_env(),
        **kw,  # type: ignore[arg-type]
    )


# --------------------------------------------------------------------------------------
# keygen
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_keygen_writes_a_parseable_private_file(tmp_path: Path, fmt: str) -> None:
    """keygen writes a file of the named format, readable back, with mode 0600."""
    out = tmp_path / f"keys.{fmt}"
    proc = _run("keygen", "--format", fmt, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b""  # nothing secret on stdout
    assert (out.stat().st_mode & 0o777) == 0o600
    keyset = keyfile.read(out, fmt)
    assert len(keyset.keys) == (3 if keyfile.canonical_format(fmt) == "haproxy" else 1)
    # stderr names the keys (names are public), never the secrets
    assert keyset.encrypting_key.name_hex in proc.stderr.decode()
    assert keyset.encrypting_key.hmac_key.hex() not in proc.stderr.decode()


def test_keygen_count_for_haproxy(tmp_path: Path) -> None:
    """--count sets how many keys a multi-key format gets."""
    out = tmp_path / "k"
    assert main(["keygen", "--format", "haproxy", "--count", "5", "--out", str(out)]) == 0
    assert len(keyfile.read(out, "haproxy").keys) == 5


def test_keygen_refuses_count_a_format_cannot_hold(tmp_path: Path) -> None:
    """--count 2 for a one-key-per-file format is refused instead of dropping a key."""
    out = tmp_path / "k"
    assert main(["keygen", "--format", "openssl80", "--count", "2", "--out", str(out)]) == 2
    assert not out.exists()


def test_keygen_needs_an_explicit_destination() -> None:
    """Without --out nothing is written anywhere, even to a pipe."""
    proc = _run("keygen", "--format", "openssl80")
    assert proc.returncode == 2
    assert proc.stdout == b""
    assert b"--out" in proc.stderr


def test_keygen_to_stdout_on_purpose() -> None:
    """--out - writes the key file to stdout (a pipe here), parseable as the format."""
    proc = _run("keygen", "--format", "haproxy", "--out", "-")
    assert proc.returncode == 0, proc.stderr
    assert len(keyfile.parse(proc.stdout, "haproxy").keys) == 3
    proc = _run("keygen", "--format", "openssl80", "--out", "-")
    assert proc.returncode == 0 and len(proc.stdout) == 80


def _run_on_terminal(*args: str) -> tuple[int, bytes]:
    """Run tlsresume with stdout on a pseudo-terminal; return (exit code, tty output)."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            tlsresume_cmd(*args),
            stdout=slave,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=child_env(),
        )
        os.close(slave)
        slave = -1
        _, _err = proc.communicate(timeout=60)
        seen = b""
        while select.select([master], [], [], 0.2)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the terminal's other end is closed
                break
            if not chunk:
                break
            seen += chunk
        return proc.returncode, seen
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)


@pytest.mark.parametrize(
    "args",
    [
        ("keygen", "--format", "openssl80"),
        ("keygen", "--format", "openssl80", "--out", "-"),
        ("keygen", "--format", "nginx48", "--out", "-"),
    ],
)
def test_keygen_refuses_to_print_keys_to_a_terminal(args: tuple[str, ...]) -> None:
    """Key bytes never land on a terminal: no --out, or a binary format to a tty,
    is refused with exit 2 and nothing printed there."""
    code, seen = _run_on_terminal(*args)
    assert code == 2
    assert seen == b""


def test_keygen_does_not_overwrite_without_force(tmp_path: Path) -> None:
    """An existing file is kept unless --force is given."""
    out = tmp_path / "k"
    out.write_bytes(b"precious")
    assert main(["keygen", "--format", "openssl80", "--out", str(out)]) == 2
    assert out.read_bytes() == b"precious"
    assert main(["keygen", "--format", "openssl80", "--out", str(out), "--force"]) == 0
    assert len(out.read_bytes()) == 80 and (out.stat().st_mode & 0o777) == 0o600


def test_keygen_unknown_format_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown format exits 2 with a message naming it."""
    assert main(["keygen", "--format", "pkcs12", "--out", "/nonexistent/k"]) == 2
    assert "pkcs12" in capsys.readouterr().err


# --------------------------------------------------------------------------------------
# Usage
# --------------------------------------------------------------------------------------


def test_module_entry_point_lists_subcommands() -> None:
    """`python -m tlsresume --help` works and lists every subcommand."""
    proc = _run("--help")
    assert proc.returncode == 0
    for name in ("keygen", "serve", "check", "demo"):
        assert name.encode() in proc.stdout


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["serve", "--cert", "c.pem"],
        ["serve", "--workers", "0"],
        ["serve", "--port", "70000"],
        ["serve", "--rotate", "0"],
        ["serve", "--tls-max", "1.1"],
        ["demo", "-n", "1"],
    ],
)
def test_usage_errors_exit_2(argv: list[str]) -> None:
    """Bad arguments exit 2 before anything is bound or started."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code or 0)
    assert code == 2


# --------------------------------------------------------------------------------------
# demo
# --------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.interop
def test_demo_end_to_end_leaves_nothing_behind() -> None:
    """`tlsresume demo` prints both servers side by side: nothing resumes across
    workers without sharing, everything does with it; no process survives it."""
    marker = f"TLSRESUME_TEST_{uuid.uuid4().hex}"
    start = time.monotonic()
    proc = _run("demo", timeout=90, env=child_env(**{marker: "1"}))
    elapsed = time.monotonic() - start
    out = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr.decode()
    assert elapsed < 60
    assert "without sharing" in out and "with tlsresume" in out
    resumed_rows = [line.split() for line in out.splitlines() if " resumed " in line[:20]]
    assert len(resumed_rows) == 2  # TLS 1.2 and TLS 1.3
    for row in resumed_rows:
        unshared, shared = row[-2], row[-1]
        assert shared == "19/19", out
        assert int(unshared.split("/")[0]) <= 5, out
    assert "do not share ticket keys" in out
    assert "shared ring stats:" in out
    assert wait_gone(pids_with_env_marker(marker), 10.0) == []


@pytest.mark.slow
@pytest.mark.interop
def test_demo_json() -> None:
    """`demo --json` gives both checks per TLS version as data."""
    proc = _run("demo", "--json", "-n", "6", "--workers", "3", timeout=90)
    assert proc.returncode == 0, proc.stderr.decode()
    data = json.loads(proc.stdout)
    assert set(data["checks"]) == {"1.2", "1.3"}
    for pair in data["checks"].values():
        assert pair["shared"]["resumed"] == 5
        assert len(pair["shared"]["key_names"]) == 1
        assert len(pair["no-share"]["key_names"]) >= 2


@pytest.mark.slow
def test_demo_interrupted_stops_its_servers() -> None:
    """Ctrl-C (SIGINT) during the demo exits 130 and stops both servers and all
    their workers."""
    marker = f"TLSRESUME_TEST_{uuid.uuid4().hex}"
    proc = subprocess.Popen(
        tlsresume_cmd("demo", "-n", "400"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=child_env(**{marker: "1"}),
    )
    try:
        assert proc.stderr is not None
        seen = b""
        deadline = time.monotonic() + 30
        while b"checking" not in seen and time.monotonic() < deadline:
            if select.select([proc.stderr], [], [], 0.2)[0]:
                chunk = os.read(proc.stderr.fileno(), 4096)
                if not chunk:
                    break
                seen += chunk
        assert b"checking" in seen, seen
        servers = [p for p in pids_with_env_marker(marker) if p != proc.pid]
        assert len(servers) >= 2 * 5  # two masters and their 4 workers each
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
        assert proc.returncode == 130
        assert wait_gone(servers, 10.0) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
