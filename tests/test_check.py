"""``tlsresume check``: its counts and verdict against real servers, with controls.

The shared server must show every reconnection resumed under one ticket key name;
the ``--no-share`` server must show several key names (one per worker) and the
"workers do not share ticket keys" verdict. A ticketless in-process server pins the
ticket / session-ID classification; a ``serve --session-cache --no-tickets`` pins
TLS 1.3 stateful tickets (which ``has_ticket`` alone would call tickets) and the
server-side counters check reads from the stats URL. Cache files: two separate
``tlsresume check`` processes against one server, the second resuming its first
connection from the file the first saved, against the same run without ``--load``
and with the wrong key.

One file (over 500 lines): every ``tlsresume check`` behaviour against the same
module-wide servers.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

import tlsresume
from tlsresume.tools.check import (
    Attempt,
    CheckResult,
    parse_hostport,
    run_check,
    server_report,
    ticket_kind,
    verdict,
)

from .conftest import ServerCert
from .support import InProcessServer, ServeProcess, child_env, tlsresume_cmd

TLS = ("1.2", "1.3")


@pytest.fixture(scope="module")
def shared(serve_module) -> ServeProcess:  # type: ignore[no-untyped-def]
    """Four forked workers sharing one key ring, no store (module-wide)."""
    return serve_module("--workers", "4", "--no-session-cache")


@pytest.fixture(scope="module")
def unshared(serve_module) -> ServeProcess:  # type: ignore[no-untyped-def]
    """Four forked workers, each with its own ticket keys (module-wide)."""
    return serve_module("--workers", "4", "--no-share")


@pytest.fixture(scope="module")
def two_workers(serve_module) -> ServeProcess:  # type: ignore[no-untyped-def]
    """Two forked workers sharing one key ring, for the cache-file runs (module-wide)."""
    return serve_module("--workers", "2", "--no-session-cache")


@pytest.fixture(scope="module")
def stateful(serve_module) -> ServeProcess:  # type: ignore[no-untyped-def]
    """Four workers, tickets off, one shared session store (module-wide)."""
    return serve_module("--workers", "4", "--session-cache", "1M", "--no-tickets")


@pytest.fixture(scope="module")
def stateful_unshared(serve_module) -> ServeProcess:  # type: ignore[no-untyped-def]
    """Four workers, tickets off, no store: each worker's cache is its own."""
    return serve_module("--workers", "4", "--no-tickets", "--no-session-cache")


# --------------------------------------------------------------------------------------
# Against real servers
# --------------------------------------------------------------------------------------


@pytest.mark.interop
@pytest.mark.parametrize("version", TLS)
def test_shared_server_resumes_everything_under_one_key_name(shared, server_cert, version) -> None:  # type: ignore[no-untyped-def]
    """Against shared keys: n-1 of n resumed by ticket, across workers, one key name."""
    r = run_check(
        shared.host, shared.port, 20, tls_version=version, cafile=server_cert.cafile,
        servername="localhost",
    )  # fmt: skip
    assert r.errors == 0, r.attempts
    assert r.protocol == f"TLSv{version}"
    assert (r.possible, r.resumed, r.by_ticket, r.by_session_id) == (19, 19, 19, 0)
    assert r.key_names is not None and len(r.key_names) == 1
    assert len(r.workers) >= 3
    assert set(r.workers) <= {str(p) for p in shared.pids}
    assert r.ticket_lifetime_hint and r.ticket_lifetime_hint > 0
    assert r.ticket_kind == "stateless"
    assert "resumption works" in r.verdict
    # The server's side: the ring resumed exactly these 19 (no other client here).
    assert r.server is not None and r.server["store"] is None
    assert r.server["pid"] == shared.proc.pid and r.server["workers"] == 4
    assert r.server["ring"]["during_check"]["resumed_current"] == 19
    # The client cache saw the 20 check connections only: the stats requests go
    # through a context without it.
    c = r.cache
    assert (c["connections"], c["offered"], c["resumed"], c["misses"]) == (20, 19, 19, 1)
    assert [a.offered for a in r.attempts] == [False] + [True] * 19


@pytest.mark.interop
@pytest.mark.parametrize("version", TLS)
def test_unshared_server_shows_one_key_name_per_worker(unshared, server_cert, version) -> None:  # type: ignore[no-untyped-def]
    """Against --no-share: few resumptions, > 1 key names, and the verdict says why."""
    r = run_check(
        unshared.host, unshared.port, 20, tls_version=version, cafile=server_cert.cafile,
        servername="localhost",
    )  # fmt: skip
    assert r.errors == 0, r.attempts
    assert r.resumed <= 5
    assert r.key_names is not None and len(r.key_names) >= 3
    assert len(r.workers) >= 3
    assert "do not share ticket keys" in r.verdict
    assert f"{len(r.key_names)} different ticket key names" in r.verdict


@pytest.mark.interop
def test_rotation_shows_a_new_key_name_per_period(serve, server_cert) -> None:  # type: ignore[no-untyped-def]
    """With --rotate 1, key names change between periods but stay one per period."""
    server = serve("--workers", "4", "--rotate", "1")

    def names() -> list[str]:
        r = run_check(
            server.host, server.port, 6, cafile=server_cert.cafile, servername="localhost"
        )
        assert r.errors == 0 and r.resumed == r.possible, r
        assert r.key_names is not None and 1 <= len(r.key_names) <= 2  # 2 if one rolled
        return r.key_names

    first = names()
    time.sleep(2.2)
    second = names()
    assert set(second) - set(first), (first, second)


def test_ticketless_server_resumes_by_session_id(server_cert) -> None:  # type: ignore[no-untyped-def]
    """A server that issues no tickets (TLS 1.2, OP_NO_TICKET) is counted as
    resuming by session ID, with no ticket key names and no lifetime hint."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(server_cert.cert, server_cert.key)
    ctx.options |= ssl.OP_NO_TICKET
    with InProcessServer(ctx) as server:
        r = run_check(
            server.host, server.port, 5, tls_version="1.2", cafile=server_cert.cafile,
            servername="localhost",
        )  # fmt: skip
    assert (r.resumed, r.by_ticket, r.by_session_id) == (4, 0, 4)
    assert r.key_names == []
    assert r.ticket_lifetime_hint is None
    assert r.ticket_kind is None
    assert "session IDs" in r.verdict
    assert r.server is None  # not a tlsresume serve: its "worker 0" answer is ignored


@pytest.mark.interop
def test_session_cache_tls12_resumes_by_session_id(stateful, server_cert) -> None:  # type: ignore[no-untyped-def]
    """Tickets off, TLS 1.2: every reconnection resumes by session ID, and the
    server's store counted exactly those lookups and hits."""
    r = run_check(
        stateful.host, stateful.port, 20, tls_version="1.2", cafile=server_cert.cafile,
        servername="localhost",
    )  # fmt: skip
    assert r.errors == 0, r.attempts
    assert (r.resumed, r.by_ticket, r.by_stateful_ticket, r.by_session_id) == (19, 0, 0, 19)
    assert r.ticket_kind is None and r.key_names == []
    assert len(r.workers) >= 3
    assert r.server is not None and r.server["ring"] is None and r.server["tickets"] is False
    during = r.server["store"]["during_check"]
    assert (during["lookups"], during["hits"], during["misses"]) == (19, 19, 0)
    assert "session IDs" in r.verdict and "resumption works" in r.verdict


@pytest.mark.interop
def test_session_cache_tls13_counts_stateful_tickets_honestly(stateful, server_cert) -> None:  # type: ignore[no-untyped-def]
    """Tickets off, TLS 1.3: Python sees has_ticket, but the 32-byte tickets are IDs
    into the server's store: counted as stateful tickets, with no bogus key names,
    and matched one for one by the store's hits."""
    r = run_check(
        stateful.host, stateful.port, 20, tls_version="1.3", cafile=server_cert.cafile,
        servername="localhost",
    )  # fmt: skip
    assert r.errors == 0, r.attempts
    assert all(a.offered_ticket for a in r.attempts[1:])  # what has_ticket says
    assert (r.resumed, r.by_ticket, r.by_stateful_ticket, r.by_session_id) == (19, 0, 19, 0)
    assert r.ticket_kind == "stateful"
    assert r.key_names == []
    assert r.server is not None
    during = r.server["store"]["during_check"]
    assert (during["lookups"], during["hits"]) == (19, 19)
    assert "stateful tickets" in r.verdict and "resumption works" in r.verdict


@pytest.mark.interop
def test_stateful_tickets_without_shared_cache_control(stateful_unshared, server_cert) -> None:  # type: ignore[no-untyped-def]
    """Negative control: tickets off and no store, TLS 1.3 stateful tickets resume
    only on their own worker; the verdict blames the unshared cache, not ticket keys."""
    r = run_check(
        stateful_unshared.host, stateful_unshared.port, 20, tls_version="1.3",
        cafile=server_cert.cafile, servername="localhost",
    )  # fmt: skip
    assert r.errors == 0, r.attempts
    assert r.resumed <= 5 and r.by_ticket == 0
    assert r.ticket_kind == "stateful" and r.key_names == []
    assert "cache is not shared" in r.verdict
    assert r.server is not None and r.server["ring"] is None and r.server["store"] is None
    assert "shares nothing" in r.summary()


def test_server_stats_can_be_turned_off(stateful, server_cert) -> None:  # type: ignore[no-untyped-def]
    """server_stats=False leaves the server's counters out (and the URL unasked)."""
    r = run_check(
        stateful.host, stateful.port, 2, tls_version="1.2", cafile=server_cert.cafile,
        servername="localhost", server_stats=False,
    )  # fmt: skip
    assert r.resumed == 1 and r.server is None


def test_verification_is_on_by_default(shared) -> None:  # type: ignore[no-untyped-def]
    """Without --cafile or --insecure an untrusted certificate fails every connection;
    --insecure gets through (so the failure is the verification, nothing else)."""
    r = run_check(shared.host, shared.port, 2)
    assert r.errors == 2 and "CERTIFICATE_VERIFY_FAILED" in (r.attempts[0].error or "")
    assert "could not complete" in r.verdict
    r = run_check(shared.host, shared.port, 2, insecure=True)
    assert r.errors == 0 and r.resumed == 1


def test_unreachable_port_is_reported_not_raised() -> None:
    """A port nobody listens on gives errors == n and a clear verdict."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connection refused
        r = run_check("127.0.0.1", port, 3, insecure=True, timeout=2)
    assert r.errors == 3 and r.resumed == 0
    assert "could not complete" in r.verdict


def test_result_is_json_serialisable(shared, server_cert) -> None:  # type: ignore[no-untyped-def]
    """CheckResult round-trips through JSON with its per-connection attempts."""
    r = run_check(shared.host, shared.port, 3, cafile=server_cert.cafile, servername="localhost")
    data = json.loads(r.to_json())
    assert data["resumed"] == r.resumed == 2
    assert len(data["attempts"]) == 3 and data["attempts"][0]["offered"] is False
    assert data["attempts"][1]["resumed"] is True


# --------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return _cli_env(child_env(), *args)


def _cli_env(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        tlsresume_cmd("check", *args), capture_output=True, text=True, timeout=60, env=env
    )


@pytest.mark.interop
def test_cli_check_json_against_both_servers(shared, unshared, server_cert) -> None:  # type: ignore[no-untyped-def]
    """`tlsresume check --json` tells the shared pool from the unshared one."""
    out = {}
    for name, server in (("shared", shared), ("unshared", unshared)):
        proc = _cli(
            f"localhost:{server.port}", "-n", "12", "--tls1.2", "--cafile", server_cert.cafile,
            "--json",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        out[name] = json.loads(proc.stdout)
    assert out["shared"]["resumed"] == 11 and len(out["shared"]["key_names"]) == 1
    assert out["unshared"]["resumed"] <= 3 and len(out["unshared"]["key_names"]) >= 3
    assert out["shared"]["tls_version"] == "1.2"


def test_cli_check_text_output(shared, server_cert) -> None:  # type: ignore[no-untyped-def]
    """The human output names the counts and ends with the verdict."""
    proc = _cli(f"localhost:{shared.port}", "-n", "4", "--tls1.3", "--cafile", server_cert.cafile)
    assert proc.returncode == 0, proc.stderr
    assert "resumed          3/3 reconnections" in proc.stdout
    assert "ticket key names 1" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1].startswith("verdict")


def test_cli_check_shows_server_counters(stateful, server_cert) -> None:  # type: ignore[no-untyped-def]
    """Text output names the server and its store counters next to the client's
    counts; --json carries the same under "server"."""
    target = f"localhost:{stateful.port}"
    proc = _cli(target, "-n", "5", "--tls1.3", "--cafile", server_cert.cafile)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "  by ID ticket   4 (TLS 1.3 stateful tickets" in out
    assert f"server           tlsresume serve pid {stateful.proc.pid}, 4 workers" in out
    assert "  store          lookups 4, hits 4, misses 0," in out
    proc = _cli(target, "-n", "5", "--tls1.2", "--cafile", server_cert.cafile, "--json")
    data = json.loads(proc.stdout)
    assert data["by_session_id"] == 4
    assert data["server"]["store"]["during_check"]["hits"] == 4
    proc = _cli(target, "-n", "2", "--cafile", server_cert.cafile, "--no-server-stats", "--json")
    assert json.loads(proc.stdout)["server"] is None


def test_cli_check_exit_codes(shared) -> None:  # type: ignore[no-untyped-def]
    """Bad usage exits 2; a check where no connection succeeds exits 1."""
    assert _cli("localhost:notaport").returncode == 2
    assert _cli(f"localhost:{shared.port}", "-n", "0").returncode == 2
    assert _cli(f"localhost:{shared.port}", "--tls1.2", "--tls1.3").returncode == 2
    assert _cli(f"localhost:{shared.port}", "-n", "1").returncode == 1  # not trusted


# --------------------------------------------------------------------------------------
# Cache files: resumption across runs
# --------------------------------------------------------------------------------------


def _key_file(tmp_path: Path, name: str = "cache.key") -> str:
    path = tmp_path / name
    path.write_text(tlsresume.generate_cache_key().hex() + "\n")
    return str(path)


def _cache_run(
    server: ServeProcess, version: str, cafile: str, *args: str, env: dict[str, str] | None = None
) -> tuple[dict[str, Any], str]:
    """One `tlsresume check -n 3 --json` process; its JSON result and stderr."""
    proc = subprocess.run(
        tlsresume_cmd(
            "check", f"localhost:{server.port}", "-n", "3", f"--tls{version}", "--cafile",
            cafile, "--no-server-stats", "--json", *args,
        ),
        capture_output=True, text=True, timeout=60, env=env or child_env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), proc.stderr


def _saved_run(
    server: ServeProcess, version: str, cafile: str, tmp_path: Path
) -> tuple[dict[str, Any], str, str]:
    """A first run that saves its cache: (its result, the cache file, the key file)."""
    cache_file, key_file = str(tmp_path / "sessions.bin"), _key_file(tmp_path)
    first, _ = _cache_run(
        server, version, cafile, "--save", cache_file, "--cache-key-file", key_file
    )
    assert first["cache_load"] is None and first["possible"] == 2
    assert not first["attempts"][0]["offered"] and not first["attempts"][0]["resumed"]
    assert first["resumed"] == 2 and first["cache_saved"] >= 1
    return first, cache_file, key_file


@pytest.mark.interop
@pytest.mark.parametrize("version", TLS)
def test_cli_cache_file_resumes_the_first_connection_of_the_next_run(
    two_workers: ServeProcess, server_cert: ServerCert, tmp_path: Path, version: str
) -> None:
    """A second process loading the first one's sealed file resumes all 3 of 3 connections."""
    first, cache_file, key_file = _saved_run(two_workers, version, server_cert.cafile, tmp_path)
    assert os.stat(cache_file).st_mode & 0o777 == 0o600
    assert b"localhost" not in Path(cache_file).read_bytes()  # sealed, not plaintext
    second, stderr = _cache_run(
        two_workers, version, server_cert.cafile, "--load", cache_file,
        "--cache-key-file", key_file,
    )  # fmt: skip
    assert stderr == ""
    assert second["cache_load"] == cache_file
    assert [a["offered"] for a in second["attempts"]] == [True, True, True]
    assert [a["resumed"] for a in second["attempts"]] == [True, True, True]
    assert (second["possible"], second["resumed"], second["by_ticket"]) == (3, 3, 3)
    assert second["cache"]["loaded"] >= 1 and second["cache"]["misses"] == 0
    # The loaded ticket is one the first run received: the same shared key name.
    assert second["attempts"][0]["offered_key_name"] in first["key_names"]
    assert "first connection resumed from the loaded cache" in second["verdict"]


@pytest.mark.interop
@pytest.mark.parametrize("version", TLS)
def test_cli_without_load_the_first_connection_is_full_control(
    two_workers: ServeProcess, server_cert: ServerCert, tmp_path: Path, version: str
) -> None:
    """Negative control: the same second run without --load offers nothing at first."""
    _, _, key_file = _saved_run(two_workers, version, server_cert.cafile, tmp_path)
    second, _ = _cache_run(two_workers, version, server_cert.cafile, "--cache-key-file", key_file)
    assert second["cache_load"] is None and second["possible"] == 2
    assert not second["attempts"][0]["offered"] and not second["attempts"][0]["resumed"]
    assert second["resumed"] == 2  # the reconnections still resume: the server is fine
    assert second["cache"]["loaded"] == 0 and second["cache"]["misses"] == 1


@pytest.mark.interop
@pytest.mark.parametrize("version", TLS)
def test_cli_wrong_cache_key_warns_and_starts_empty(
    two_workers: ServeProcess, server_cert: ServerCert, tmp_path: Path, version: str
) -> None:
    """A wrong key (from TLSRESUME_CACHE_KEY) warns, loads nothing, and still exits 0."""
    _, cache_file, _ = _saved_run(two_workers, version, server_cert.cafile, tmp_path)
    wrong = child_env(TLSRESUME_CACHE_KEY=tlsresume.generate_cache_key().hex())
    second, stderr = _cache_run(
        two_workers, version, server_cert.cafile, "--load", cache_file, env=wrong
    )
    assert "tlsresume: warning:" in stderr and "wrong key" in stderr, stderr
    assert second["possible"] == 3 and second["cache"]["loaded"] == 0
    assert not second["attempts"][0]["offered"] and not second["attempts"][0]["resumed"]
    assert second["resumed"] == 2
    assert "gave the first connection no session" in second["verdict"]


def test_cli_plaintext_cache_needs_the_opt_in(two_workers, server_cert, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Without a key --save is a usage error naming the master secrets; the opt-in works."""
    cache_file = str(tmp_path / "plain.json")
    target = f"localhost:{two_workers.port}"
    common = ["-n", "2", "--tls1.2", "--cafile", server_cert.cafile, "--no-server-stats"]
    env = child_env()
    env.pop("TLSRESUME_CACHE_KEY", None)
    proc = _cli_env(env, target, *common, "--save", cache_file)
    assert proc.returncode == 2 and "master secrets" in proc.stderr
    assert not os.path.exists(cache_file)
    proc = _cli_env(env, target, *common, "--save", cache_file, "--insecure-plaintext-cache")
    assert proc.returncode == 0, proc.stderr
    assert b"localhost" in Path(cache_file).read_bytes()  # really plaintext
    proc = _cli_env(env, target, *common, "--load", cache_file, "--insecure-plaintext-cache")
    assert proc.returncode == 0, proc.stderr
    assert "resumed          2/2 connections (the first resumed from the loaded cache)" in (
        proc.stdout
    )
    assert "client cache     offered 2, resumed 2, rejected 0, misses 0," in proc.stdout
    assert f"cache file       loaded 1 session from {cache_file}" in proc.stdout


def test_cli_cache_key_usage_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A bad TLSRESUME_CACHE_KEY or an unreadable key file exits 2 before connecting."""
    target, cache_file = "localhost:1", str(tmp_path / "c")
    proc = _cli_env(child_env(TLSRESUME_CACHE_KEY="abcd"), target, "--load", cache_file)
    assert proc.returncode == 2 and "64 hex digits" in proc.stderr
    missing = str(tmp_path / "missing.key")
    proc = _cli(target, "--load", cache_file, "--cache-key-file", missing)
    assert proc.returncode == 2 and "cache-key-file" in proc.stderr


def test_cli_save_failure_exits_1_after_the_report(shared, server_cert, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An unwritable --save path prints the check, then fails with exit status 1."""
    cache_file = str(tmp_path / "no-such-dir" / "c")
    proc = _cli(
        f"localhost:{shared.port}", "-n", "2", "--cafile", server_cert.cafile,
        "--save", cache_file, "--cache-key-file", _key_file(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 1
    assert "resumed          1/1 reconnections" in proc.stdout
    assert "session cache not saved" in proc.stderr


def test_run_check_cache_file_in_process(shared, server_cert, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """run_check(save=, load=, cache_key=): a new check resumes from the saved file."""
    key, cache_file = tlsresume.generate_cache_key(), tmp_path / "c"
    common: dict[str, Any] = dict(
        tls_version="1.3", cafile=server_cert.cafile, servername="localhost",
        server_stats=False, cache_key=key,
    )  # fmt: skip
    with pytest.raises(ValueError, match="master secrets"):
        run_check(shared.host, shared.port, 2, load=cache_file, **{**common, "cache_key": None})
    r = run_check(shared.host, shared.port, 2, save=cache_file, **common)
    assert r.cache_save == str(cache_file) and r.cache_saved and r.cache_error is None
    r = run_check(shared.host, shared.port, 2, load=cache_file, **common)
    assert (r.possible, r.resumed) == (2, 2) and r.attempts[0].resumed


# --------------------------------------------------------------------------------------
# Pure pieces
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("example.com:8443", ("example.com", 8443)),
        ("127.0.0.1:1", ("127.0.0.1", 1)),
        ("[::1]:443", ("::1", 443)),
        ("[::1]", ("::1", 443)),
        ("example.com", ("example.com", 443)),
    ],
)
def test_parse_hostport(text: str, expected: tuple[str, int]) -> None:
    """HOST:PORT, [IPv6]:PORT and bare hosts (port 443) parse."""
    assert parse_hostport(text) == expected


@pytest.mark.parametrize("text", ["", ":443", "host:0", "host:99999", "host:x", "[::1", "[::1]x"])
def test_parse_hostport_rejects(text: str) -> None:
    """Malformed targets raise ValueError naming the input."""
    with pytest.raises(ValueError):
        parse_hostport(text)


def _result(**kw: object) -> CheckResult:
    base: dict[str, object] = dict(host="h", port=1, n=20, tls_version=None, possible=19)
    base.update(kw)
    return CheckResult(**base)  # type: ignore[arg-type]


def test_ticket_kind() -> None:
    """Up to 32 bytes is an ID (stateful), longer is a stateless ticket, None unknown."""
    assert ticket_kind(b"\x00" * 32) == "stateful"
    assert ticket_kind(b"\x00" * 33) == "stateless"
    assert ticket_kind(b"\x00" * 176) == "stateless"
    assert ticket_kind(None) == "unknown"


def test_server_report_deltas() -> None:
    """Counters are the change between snapshots, gauges the later value; without a
    first snapshot, or if the region changed name (a restart), no change is claimed."""
    before = {"ring": None, "store": {"name": "s", "stats": {"hits": 2, "entries": 5}}}
    after = {
        "pid": 7,
        "workers": 4,
        "tickets": False,
        "ring": None,
        "store": {
            "name": "s",
            "settings": {"single_use": True},
            "stats": {"hits": 9, "entries": 6},
        },
    }
    report = server_report(before, after)
    assert report["pid"] == 7 and report["ring"] is None
    assert report["store"]["during_check"] == {"hits": 7, "entries": 6}
    assert report["store"]["total"] == {"hits": 9, "entries": 6}
    assert server_report(None, after)["store"]["during_check"] is None
    renamed = {**before, "store": {"name": "other", "stats": {"hits": 0}}}
    assert server_report(renamed, after)["store"]["during_check"] is None


def test_verdict_after_a_cache_file_speaks_of_the_first_connection() -> None:
    """With a loaded cache the verdict says how the first went, then judges the rest."""
    full = [Attempt(i, resumed=True, offered=True, offered_ticket=True) for i in range(3)]
    loaded = dict(n=3, possible=3, key_names=["a"], cache_load="f")
    v = verdict(_result(resumed=3, by_ticket=3, attempts=full, **loaded))
    assert v.startswith("the first connection resumed from the loaded cache file; all 2 ")
    assert v.endswith("resumption works")
    refused = [Attempt(0, offered=True, offered_ticket=True), *full[1:]]
    v = verdict(_result(resumed=2, by_ticket=2, attempts=refused, **loaded))
    assert v.startswith("the server did not resume the session loaded") and "all 2 " in v
    empty = [Attempt(0), *full[1:]]
    v = verdict(_result(resumed=2, by_ticket=2, attempts=empty, **loaded))
    assert v.startswith("the cache file gave the first connection no session")


def test_summary_of_unknown_key_names() -> None:
    """A result without key names (None) says "unknown", not 0."""
    assert "ticket key names unknown" in _result(key_names=None).summary()


def test_verdict_rules() -> None:
    """The verdict names the cause an operator needs, from the counts alone."""
    assert "do not share ticket keys" in verdict(
        _result(resumed=4, by_ticket=4, key_names=["a", "b", "c", "d"], workers=["1", "2"])
    )
    assert "resumption works" in verdict(
        _result(resumed=19, by_ticket=19, key_names=["a"], workers=["1", "2", "3"])
    )
    assert "rotations" in verdict(_result(resumed=19, by_ticket=19, key_names=["a", "b"]))
    assert "no session tickets" in verdict(_result(resumed=0, key_names=[]))
    assert "could not complete" in verdict(_result(errors=20))
    assert "-n 2" in verdict(_result(n=1, possible=0))
    assert "stateful tickets" in verdict(
        _result(resumed=19, by_stateful_ticket=19, key_names=[], ticket_kind="stateful")
    )
    assert "cache is not shared" in verdict(
        _result(resumed=0, key_names=[], ticket_kind="stateful", ticket_lifetime_hint=7200,
                workers=["1", "2", "3"])
    )  # fmt: skip
    assert "same worker" in verdict(
        _result(resumed=3, by_ticket=3, key_names=None, ticket_lifetime_hint=7200,
                workers=["1", "2"])
    )  # fmt: skip
    partial_stateful = verdict(
        _result(resumed=2, by_stateful_ticket=2, key_names=[], ticket_kind="stateful",
                ticket_lifetime_hint=7200, workers=["1", "2", "3", "4"])
    )  # fmt: skip
    assert "cache is not shared" in partial_stateful and "same worker" in partial_stateful
