"""``tlsresume bench --client-libs``: httpx, urllib3 and requests, stock against
tlsresume, over real TLS on loopback.

One short run through the command line's ``main()`` (``--conns 6 --rounds 1``) is
inspected by several tests: every installed library has its two clients per TLS
version, the tlsresume clients resume every measured connection (they all come
after the warm-up's first), the stock clients resume none (the negative control).
The client builders are also driven directly against a server whose CA they do
not trust: verification stays strict. Timings are never asserted.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tlsresume.tools.bench import clientlibs
from tlsresume.tools.bench.cli import main

from .support import child_env, pids_with_env_marker, wait_gone

INSTALLED = [lib for lib in clientlibs.LIBRARIES if importlib.util.find_spec(lib) is not None]
PROTOCOLS = ("1.2", "1.3")
CONNS = 6


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("clients") / "report.json"
    argv = ["--client-libs", "--conns", str(CONNS), "--rounds", "1", "--json", str(out), "-q"]
    assert main(argv) == 0
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def _rows(report: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r for r in report["clients"] if r["client"] == kind]


def test_every_installed_library_has_both_clients_per_tls_version(report: dict[str, Any]) -> None:
    assert INSTALLED, "the test extras install httpx, urllib3 and requests"
    assert report["section"] == "clients"
    got = {(r["library"], r["client"], r["protocol"]) for r in report["clients"]}
    want = {(lib, kind, p) for lib in INSTALLED for kind in clientlibs.CLIENTS for p in PROTOCOLS}
    assert got == want
    for r in report["clients"]:
        assert r["error"] is None, r
        assert r["completed"] == CONNS
        assert r["wall_min_s"] <= r["wall_s"] <= r["wall_max_s"]
        assert r["cpu_us_per_conn"] > 0
    for lib in INSTALLED:
        assert report["libraries"][lib]["available"]


def test_tlsresume_clients_resume_every_connection_after_the_first(
    report: dict[str, Any],
) -> None:
    for r in _rows(report, "tlsresume"):
        assert r["resumed_pct"] >= 99.0, r
        # The client's own cache agrees with the server: it offered, and it resumed.
        assert r["cache"]["resumed"] >= r["resumed"], r


def test_stock_clients_resume_nothing(report: dict[str, Any]) -> None:
    """Negative control: the same server, clients without a session cache."""
    for r in _rows(report, "stock"):
        assert r["resumed_pct"] <= 5.0, r
        assert r["cache"] is None
        assert r["ratio"] == 1.0


def test_tables_name_every_row(report: dict[str, Any]) -> None:
    table = clientlibs.render_clients_table(report)
    markdown = clientlibs.render_clients_markdown(report)
    for r in report["clients"]:
        assert f"| {r['library']} | {r['client']} | {r['protocol']} |" in markdown
        assert any(
            line.split()[:3] == [r["library"], r["client"], r["protocol"]]
            for line in table.splitlines()
        )
    for text in (table, markdown):
        assert "Lower wall time and CPU per connection are better" in text


# --------------------------------------------------------------------------------------
# Verification stays strict
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Path]]:
    """A server, the bundle that trusts it and one (certifi + another CA) that does not."""
    right = tmp_path_factory.mktemp("right-ca")
    wrong = tmp_path_factory.mktemp("wrong-ca")
    cert, key, bundle = clientlibs.write_ca(right)
    _, _, other = clientlibs.write_ca(wrong)
    with clientlibs.serving("1.3", cert, key, right) as url:
        yield url, bundle, other


@pytest.mark.parametrize("library", INSTALLED)
@pytest.mark.parametrize("kind", clientlibs.CLIENTS)
def test_a_wrong_ca_fails_every_client(
    server: tuple[str, Path, Path], library: str, kind: str
) -> None:
    url, bundle, wrong = server
    good = clientlibs.make_client(library, kind, str(bundle))
    try:
        assert good.get(url) is False  # the first connection: a full handshake
        assert good.get(url) is (kind == "tlsresume")
    finally:
        good.close()
    bad = clientlibs.make_client(library, kind, str(wrong))
    try:
        for _ in range(2):  # the second, too: no session of another client is offered
            with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):
                bad.get(url)
    finally:
        bad.close()
    if bad.cache is not None:
        assert bad.cache.stats()["resumed"] == 0


def test_a_client_that_fails_is_reported_and_the_others_measured(
    server: tuple[str, Path, Path],
) -> None:
    url, bundle, wrong = server
    config = clientlibs.ClientsConfig(conns=2, rounds=1, warmup=1)
    cells = [clientlibs._Cell(lib, "tlsresume", "1.3") for lib in INSTALLED]
    clientlibs._measure_protocol(config, cells[:1], url, str(wrong))
    clientlibs._measure_protocol(config, cells[1:], url, str(bundle))
    assert "CERTIFICATE_VERIFY_FAILED" in (cells[0].error or "")
    assert cells[0].rounds == []
    assert all(c.error is None and len(c.rounds) == 1 for c in cells[1:])
    row = clientlibs._row(cells[0], 2)
    assert row["error"] and row["completed"] == 0 and row["wall_s"] is None


def test_bad_usage_is_refused() -> None:
    assert main(["--client-libs", "--conns", "0", "-q"]) == 2


def test_sigterm_mid_run_leaves_nothing_behind_and_exits_130(tmp_path: Path) -> None:
    """SIGTERM while clients run: exit 130, no server process and no file left.
    (The server would also go with the bench through PR_SET_PDEATHSIG, so this
    checks the outcome, not which of the two stopped it.)"""
    marker = f"test-bench-clients-{os.getpid()}-{time.monotonic_ns()}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tlsresume.tools.bench", "--client-libs", "--conns", "5000"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(TLSRESUME_BENCH_TEST=marker, TMPDIR=str(tmp_path)),
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # the server is up once a TLS version's rounds begin
            if "clients x" in line:
                break
        assert pids_with_env_marker(marker), "the server should be running"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert wait_gone(pids_with_env_marker(marker), 5.0) == []
    assert list(tmp_path.iterdir()) == []  # the CA, the key and the logs are gone


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_serving_pins_the_version_and_stops_its_server(
    protocol: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = f"test-bench-serving-{os.getpid()}-{time.monotonic_ns()}"
    monkeypatch.setenv("TLSRESUME_BENCH_TEST", marker)  # the server inherits it
    cert, key, bundle = clientlibs.write_ca(tmp_path)
    with clientlibs.serving(protocol, cert, key, tmp_path) as url:
        assert pids_with_env_marker(marker)
        assert clientlibs.negotiated(url, bundle) == f"TLSv{protocol}"
    assert wait_gone(pids_with_env_marker(marker), 5.0) == []
