"""``tlsresume bench``: the orchestrator end to end, the C load generator, the pure parts.

The end-to-end test runs ``python -m tlsresume.tools.bench --quick --json`` once as a
real subprocess (every server and load generator is a real process) and checks
what is deterministic: which configurations ran, how many handshakes resumed (the
shared configurations all, the per-worker baseline about half at 2 workers, no
full handshake ever), and that nothing was left behind. Speed is never asserted.

The load generator tests drive ``tlsr_loadgen_*`` against in-process servers whose
behaviour is known, including the negative controls (nothing listening, a non-200
answer, a close without close_notify).

One file (over 500 lines): the bench end to end, its load generator and its
pure parts are tested together against one quick run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tlsresume.regions import region_dir
from tlsresume.tools import bench as benchmark
from tlsresume.tools.bench import (
    Sample,
    add_ratios,
    loadgen,
    parse_proc_stat,
    render_markdown,
    render_table,
    servers,
    summarize,
    tree_cpu_seconds,
)
from tlsresume.tools.bench.config import label

from .support import InProcessServer, child_env, pids_with_env_marker, wait_gone

TLSRESUME = ("tickets", "session-cache")
#: The references that share (or are one process), so they resume every handshake.
REFERENCES = (
    "openssl-s_server",
    "nginx-tickets",
    "nginx-cache",
    "node-cluster-rr",
    "node-cluster-none",
)
REQUEST = benchmark.REQUEST


def expected_configs() -> set[str]:
    """The configurations that can run on this machine."""
    names = {"baseline", "tickets", "session-cache"}
    if shutil.which("openssl"):
        names.add("openssl-s_server")
    if shutil.which("nginx") or os.path.exists("/usr/sbin/nginx"):
        names.update(("nginx-tickets", "nginx-cache"))
    if shutil.which("node"):
        names.update(("node-cluster-rr", "node-cluster-none"))
    return names


# --------------------------------------------------------------------------------------
# End to end: one quick run, inspected by several tests
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """``python -m tlsresume.tools.bench --quick --json PATH`` as a subprocess."""
    out = tmp_path_factory.mktemp("bench") / "report.json"
    marker = f"test-bench-{os.getpid()}-{time.monotonic_ns()}"
    env = child_env(TLSRESUME_BENCH_TEST=marker)
    t0 = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "tlsresume.tools.bench", "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=150,
        stdin=subprocess.DEVNULL,
    )
    elapsed = time.monotonic() - t0
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    report = json.loads(out.read_text())
    report["_test"] = {
        "stdout": done.stdout,
        "stderr": done.stderr,
        "elapsed": elapsed,
        "marker": marker,
    }
    yield report


@pytest.mark.slow
def test_quick_run_reports_every_configuration_that_can_run_here(
    quick_run: dict[str, Any],
) -> None:
    """Every configuration installed here ran all four cells (TLS 1.2/1.3 x full/resumed)
    and completed connections; none failed to start."""
    confs = quick_run["configurations"]
    ran = {name for name, c in confs.items() if c["status"] == "ok"}
    assert ran == expected_configs(), confs
    for name in set(benchmark.CONFIGS) - ran:
        assert confs[name]["status"] == "unavailable" and confs[name]["reason"], confs[name]
    cells = {(r["config"], r["protocol"], r["mode"]) for r in quick_run["results"]}
    assert cells == {
        (name, p, m) for name in ran for p in benchmark.PROTOCOLS for m in benchmark.MODES
    }
    for r in quick_run["results"]:
        label = f"{r['config']} TLS {r['protocol']} {r['mode']}"
        assert r["completed"] > 0 and r["conn_per_s"] > 0, label
        assert r["failed"] <= max(2, r["completed"] // 100), (label, r["errors"])
        assert r["server_cpu_us_per_conn"] is not None and r["server_cpu_us_per_conn"] > 0
    assert quick_run["settings"]["quick"] and quick_run["settings"]["workers"] == 2


@pytest.mark.slow
def test_quick_run_resumption_shared_configs_resume_and_baseline_does_not(
    quick_run: dict[str, Any],
) -> None:
    """Resumed mode: tlsresume's shared ring and store resume >= 99%; the per-worker
    baseline <= 60% at 2 workers (about half: a session resumes only on the worker
    that issued it); s_server (one process) and Node's cluster (shared keys) resume
    all. Full mode offers no session, so nothing resumes (the control)."""
    pct = {(r["config"], r["protocol"], r["mode"]): r["resumed_pct"] for r in quick_run["results"]}
    for protocol in benchmark.PROTOCOLS:
        for name in TLSRESUME:
            assert pct[name, protocol, "resumed"] >= 99, (name, protocol, pct)
        assert pct["baseline", protocol, "resumed"] <= 60, (protocol, pct)
        for name in (
            "openssl-s_server",
            "nginx-tickets",
            "nginx-cache",
            "node-cluster-rr",
            "node-cluster-none",
        ):
            if (name, protocol, "resumed") in pct:
                assert pct[name, protocol, "resumed"] >= 99, (name, protocol, pct)
    for (name, protocol, mode), value in pct.items():
        if mode == "full":
            assert value == 0, (name, protocol, value)


@pytest.mark.slow
def test_quick_run_ratios_and_table(quick_run: dict[str, Any]) -> None:
    """Ratios are against the baseline of the same cell; the table shows every row."""
    by = {(r["config"], r["protocol"], r["mode"]): r for r in quick_run["results"]}
    for (_name, protocol, mode), r in by.items():
        base = by["baseline", protocol, mode]
        assert r["ratio"] == pytest.approx(r["conn_per_s"] / base["conn_per_s"], rel=1e-2)
    assert all(r["ratio"] == 1.0 for r in quick_run["results"] if r["config"] == "baseline")
    table = quick_run["_test"]["stdout"]
    for name in expected_configs():
        assert label(name) in table
    assert "openssl s_server (one process)" in table or "openssl-s_server" not in expected_configs()
    assert "TLS 1.2, resumed handshakes" in table
    cells = 4 * len(expected_configs())
    assert f"[{cells}/{cells}]" in quick_run["_test"]["stderr"]


@pytest.mark.slow
def test_quick_run_leaves_nothing_behind(quick_run: dict[str, Any]) -> None:
    """No server, worker or load generator survives the run, and tlsresume serve's
    shared-memory regions are gone."""
    marker = quick_run["_test"]["marker"]
    assert wait_gone(pids_with_env_marker(marker), 5.0) == []
    for c in quick_run["configurations"].values():
        pid = c.get("pid")
        if pid is not None:
            leftovers = [f for f in os.listdir(region_dir()) if f.endswith(f".serve-{pid}")]
            assert leftovers == [], leftovers


def _default_sigint() -> None:
    # A runner may start us with SIGINT ignored (a background job); Python then
    # installs no KeyboardInterrupt handler in the child. Give it the default back.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_stops_every_server_and_client(sig: signal.Signals) -> None:
    """Ctrl-C (SIGINT) or SIGTERM in the middle of a run: exit 130 within seconds,
    every process the benchmark started is gone."""
    marker = f"test-bench-int-{os.getpid()}-{time.monotonic_ns()}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tlsresume.tools.bench",
            "--duration",
            "30",
            "--rounds",
            "1",
            "--configs",
            "baseline,tickets",
            "--tls",
            "1.2",
            "--modes",
            "resumed",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(TLSRESUME_BENCH_TEST=marker),
        preexec_fn=_default_sigint,
    )
    try:
        # Wait until the first cell is being measured (its servers are up).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(pids_with_env_marker(marker)) < 7:
            time.sleep(0.2)
        time.sleep(1.0)
        assert proc.poll() is None
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert wait_gone(pids_with_env_marker(marker), 5.0) == []


# --------------------------------------------------------------------------------------
# The C load generator against servers whose behaviour is known
# --------------------------------------------------------------------------------------


def _server_ctx(cert: Any) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert.cert, cert.key)
    return ctx


def _loadgen(
    port: int, protocol: str, resume: bool, *, sessions: int = 2, n: int = 10
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Warm up and run n connections; return (warm, run) counters."""
    from tlsresume._extra import bench, ctx_pointer

    ffi, lib = bench()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    version = ssl.TLSVersion.TLSv1_2 if protocol == "1.2" else ssl.TLSVersion.TLSv1_3
    ctx.minimum_version = ctx.maximum_version = version
    gen = lib.tlsr_loadgen_new(
        ctx_pointer(ffi, ctx),
        b"127.0.0.1",
        port,
        b"localhost",
        REQUEST,
        len(REQUEST),
        sessions,
        int(resume),
        5000,
        7,
    )
    assert gen != ffi.NULL
    try:
        out = ffi.new("tlsr_loadgen_result *")

        def counters() -> dict[str, Any]:
            d = {f: int(getattr(out, f)) for f in loadgen._RESULT_FIELDS}
            d["first_error"] = ffi.string(out.first_error).decode()
            return d

        assert lib.tlsr_loadgen_warm(gen, out) == 1
        warm = counters()
        assert lib.tlsr_loadgen_run(gen, n, 10_000, out) == 1
        return warm, counters()
    finally:
        lib.tlsr_loadgen_free(gen)


@pytest.mark.parametrize("protocol", ["1.2", "1.3"])
def test_loadgen_resumes_against_one_context(server_cert: Any, protocol: str) -> None:
    """Against one server context every offered session resumes, and the generator
    keeps working sessions (TLS 1.3: the newest ticket after reading to EOF)."""
    with InProcessServer(_server_ctx(server_cert)) as server:
        warm, run = _loadgen(server.port, protocol, resume=True, n=12)
    assert warm["completed"] == 2 and warm["resumed"] == 0
    assert run["connections"] == run["completed"] == run["offered"] == 12, run
    assert run["resumed"] == 12, run
    assert run["version"] == (0x0303 if protocol == "1.2" else 0x0304)
    assert run["first_error"] == "" and run["bytes_read"] > 0


@pytest.mark.parametrize("protocol", ["1.2", "1.3"])
def test_loadgen_full_mode_offers_nothing(server_cert: Any, protocol: str) -> None:
    """Full mode: no session offered, no handshake resumed (the control)."""
    with InProcessServer(_server_ctx(server_cert)) as server:
        _, run = _loadgen(server.port, protocol, resume=False, n=6)
    assert run["completed"] == 6 and run["offered"] == 0 and run["resumed"] == 0, run


def test_loadgen_counts_refused_connections_and_stops() -> None:
    """Nothing listening: every connect fails, the run stops after the failure
    streak limit instead of spinning until the deadline, and says why."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connect is refused
        _, run = _loadgen(port, "1.2", resume=True, n=0)
    assert run["completed"] == 0 and run["aborted"] == 1, run
    assert run["failed_connect"] == run["connections"] > 0
    assert run["first_error"].startswith("connect:"), run["first_error"]


def test_loadgen_counts_unclean_close_as_failure(server_cert: Any) -> None:
    """A server that closes without close_notify fails the read (an OpenSSL client
    would not reuse such a session), counted as an I/O failure."""
    with InProcessServer(_server_ctx(server_cert), close_notify=False) as server:
        _, run = _loadgen(server.port, "1.2", resume=False, n=3)
    assert run["completed"] == 0 and run["failed_io"] == 3, run
    assert run["first_error"].startswith("read:"), run["first_error"]


def test_loadgen_counts_non_200_answers(server_cert: Any) -> None:
    """An answer that is not ``HTTP/1.x 200`` is a bad response, not a completion."""
    ctx = _server_ctx(server_cert)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            conn.settimeout(5)
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(4096)
                    tls.sendall(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                    tls.unwrap()
            except OSError:
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        _, run = _loadgen(listener.getsockname()[1], "1.2", resume=False, n=3)
    finally:
        stop.set()
        thread.join(5)
        listener.close()
    assert run["completed"] == 0 and run["bad_response"] == 3, run


def test_loadgen_refuses_bad_arguments() -> None:
    """Bad arguments give NULL, never a crash."""
    from tlsresume._extra import bench, ctx_pointer

    ffi, lib = bench()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    p = ctx_pointer(ffi, ctx)
    assert lib.tlsr_loadgen_new(p, b"not-an-ip", 443, ffi.NULL, b"x", 1, 1, 1, 100, 1) == ffi.NULL
    assert lib.tlsr_loadgen_new(p, b"127.0.0.1", 0, ffi.NULL, b"x", 1, 1, 1, 100, 1) == ffi.NULL
    assert lib.tlsr_loadgen_new(p, b"127.0.0.1", 443, ffi.NULL, b"x", 1, 0, 1, 100, 1) == ffi.NULL
    assert lib.tlsr_loadgen_new(p, b"::1", 443, ffi.NULL, b"", 0, 1, 1, 100, 1) == ffi.NULL
    gen = lib.tlsr_loadgen_new(p, b"::1", 443, ffi.NULL, b"x", 1, 1, 1, 100, 1)
    assert gen != ffi.NULL
    lib.tlsr_loadgen_free(gen)


# --------------------------------------------------------------------------------------
# Pure parts: CPU accounting, aggregation, rendering, the command line
# --------------------------------------------------------------------------------------


def test_parse_proc_stat_handles_odd_command_names() -> None:
    """The command name may hold spaces and parentheses; fields are counted from
    the last ")"; ticks = utime + stime + cutime + cstime."""
    line = "42 (a) b (c)) S 7 42 42 0 -1 4194560 1 0 0 0 100 20 3 4 20 0 1 0 5 6 7\n"
    assert parse_proc_stat(line) == (7, 42, 127)
    with pytest.raises(ValueError):
        parse_proc_stat("garbage")


def test_tree_cpu_counts_children() -> None:
    """A child that burns CPU shows up in its parent's tree."""
    before = tree_cpu_seconds(os.getpid())
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nt=time.process_time()\nwhile time.process_time()-t<0.3: pass\n"
            "print(flush=True)\ntime.sleep(30)",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        child.stdout.readline()  # it has burnt its 0.3 s and is still alive
        after = tree_cpu_seconds(os.getpid())
    finally:
        child.kill()
        child.wait()
    assert after - before >= 0.25
    assert tree_cpu_seconds(2**22 + 12345) == 0.0  # no such process


def _sample(rate: float, completed: int, resumed: int, cpu: float) -> Sample:
    return Sample(completed, resumed, 0, 1.0, rate, cpu, cpu / 2)


def test_summarize_takes_medians_and_pools_resumption() -> None:
    """Rate and CPU per connection are medians over rounds; the resumption rate is
    over every connection of every round."""
    s = summarize(
        [_sample(100, 100, 50, 0.05), _sample(300, 300, 300, 0.06), _sample(200, 200, 0, 0.2)]
    )
    assert s["conn_per_s"] == 200
    assert s["resumed_pct"] == pytest.approx(100 * 350 / 600, abs=0.01)
    assert s["server_cpu_us_per_conn"] == 500.0  # median of 500, 200, 1000
    assert s["completed"] == 600 and len(s["rounds"]) == 3


def test_summarize_gives_the_spread_of_the_rounds() -> None:
    """Every median comes with the ``[min, max]`` of the rounds it is the median of."""
    s = summarize(
        [_sample(100, 100, 50, 0.05), _sample(300, 300, 300, 0.06), _sample(200, 200, 0, 0.2)]
    )
    assert s["conn_per_s_range"] == [100, 300]
    assert s["server_cpu_us_per_conn_range"] == [200.0, 1000.0]
    assert s["resumed_pct_range"] == [0.0, 100.0]
    assert summarize([])["conn_per_s_range"] is None


def _rounds_row(config: str, rates: list[float], cpus: list[float]) -> dict[str, Any]:
    return {
        "config": config,
        "protocol": "1.2",
        "mode": "resumed",
        "rounds": [
            {"conn_per_s": r, "resumed_pct": 100.0, "server_cpu_us_per_conn": c}
            for r, c in zip(rates, cpus, strict=True)
        ],
    }


def test_warmup_check_flags_a_cold_first_round_but_not_the_machine_drift() -> None:
    """A configuration whose first round is 40 % dearer than its third is cold; a
    load change that slows every configuration of the cell alike is not."""
    rows = [
        _rounds_row("baseline", [800, 1000, 1000], [500, 400, 400]),  # the machine: -20 %
        _rounds_row("tickets", [1600, 2000, 2000], [250, 200, 200]),
        _rounds_row("node-cluster-rr", [500, 900, 1000], [900, 600, 500]),  # cold too
    ]
    check = benchmark.warmup_check(rows)
    assert check["checked"] and [c["config"] for c in check["cold"]] == ["node-cluster-rr"]
    cold = check["cold"][0]
    assert cold["conn_per_s"] == pytest.approx(0.5 / 0.8, abs=1e-3)
    assert rows[0]["warmup"]["cold"] is False and rows[2]["warmup"]["cold"] is True
    assert rows[0]["warmup"]["drift_conn_per_s"] == pytest.approx(0.8)
    # within the tolerance (10 %) after the drift: not cold
    assert (
        benchmark.warmup_check([_rounds_row("tickets", [950, 1000, 1000], [210, 200, 200])])["cold"]
        == []
    )
    assert benchmark.warmup_check([_rounds_row("tickets", [1, 2], [2, 1])])["checked"] is False


def test_the_table_marks_the_spread_the_better_direction_and_s_server_as_one_process() -> None:
    """Medians with [min-max], which way is better, and s_server named as one process
    in the table and the Markdown; the warm-up check's verdict is under the table."""
    results = [
        {"config": name, "protocol": "1.2", "mode": "resumed", **summarize(samples)}
        for name, samples in (
            ("baseline", [_sample(600, 600, 300, 0.3), _sample(700, 700, 350, 0.3)]),
            ("openssl-s_server", [_sample(2000, 2000, 2000, 0.4)] * 2),
        )
    ]
    add_ratios(results)
    report = _report()
    report["results"] = results
    report["configurations"]["openssl-s_server"] = {"status": "ok"}
    report["warmup_check"] = benchmark.warmup_check(results)
    text = render_table(report)
    assert "600 [600-700]" not in text and "650 [600-700]" in text
    assert "higher is better" in text and "lower is better" in text
    assert "openssl s_server (one process)" in text and "openssl-s_server" not in text
    assert "warm-up check: not made" in text
    md = render_markdown(report)
    assert "| openssl s_server (one process) |" in md and "650 [600-700]" in md


def test_nginx_references_share_keys_or_cache_across_the_same_workers(tmp_path: Path) -> None:
    """The nginx configurations run N workers with one ticket key file, or with
    tickets off and one shared cache; everything nginx writes stays in its prefix."""
    from tlsresume.tools.bench.servers import nginx_conf

    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    tickets = nginx_conf("nginx-tickets", tmp_path, 4433, 3, cert, key)
    assert "worker_processes 3;" in tickets and "master_process on;" in tickets
    assert f'ssl_session_ticket_key "{tmp_path}/ticket.key";' in tickets
    assert "ssl_session_cache off;" in tickets
    cache = nginx_conf("nginx-cache", tmp_path, 4433, 2, cert, key)
    assert "ssl_session_tickets off;" in cache and "shared:SSL:10m" in cache
    assert "ticket_key" not in cache
    with pytest.raises(benchmark.BenchError, match="cannot be given"):
        nginx_conf("nginx-cache", Path('/tmp/a"b'), 4433, 2, cert, key)


def test_warmup_is_validated() -> None:
    with pytest.raises(ValueError, match="--warmup"):
        benchmark.BenchConfig(warmup=-1).validate()


def test_add_ratios_against_the_same_cell_of_the_baseline() -> None:
    """Ratios compare like with like (same protocol and mode); no baseline, no ratio."""
    rows = [
        {
            "config": "baseline",
            "protocol": "1.2",
            "mode": "resumed",
            "conn_per_s": 500.0,
            "server_cpu_us_per_conn": 400.0,
        },
        {
            "config": "tickets",
            "protocol": "1.2",
            "mode": "resumed",
            "conn_per_s": 1500.0,
            "server_cpu_us_per_conn": 200.0,
        },
        {
            "config": "tickets",
            "protocol": "1.3",
            "mode": "resumed",
            "conn_per_s": 900.0,
            "server_cpu_us_per_conn": 300.0,
        },
    ]
    add_ratios(rows)
    assert rows[0]["ratio"] == 1.0 and rows[1]["ratio"] == 3.0
    assert rows[1]["server_cpu_ratio"] == 0.5
    assert rows[2]["ratio"] is None and rows[2]["server_cpu_ratio"] is None


def _report() -> dict[str, Any]:
    results = [
        {"config": name, "protocol": "1.2", "mode": "resumed", **summarize([s])}
        for name, s in (
            ("baseline", _sample(600, 600, 300, 0.3)),
            ("tickets", _sample(1800, 1800, 1800, 0.4)),
        )
    ]
    add_ratios(results)
    return {
        "settings": {"workers": 2, "clients": 2, "sessions": 16, "rounds": 1, "duration": 1.0},
        "machine": {"python": "3.x", "openssl": "OpenSSL 3", "cpus": 2},
        "configurations": {
            "baseline": {"status": "ok"},
            "tickets": {"status": "ok"},
            "node-cluster-rr": {"status": "unavailable", "reason": "node is not on PATH"},
        },
        "results": results,
    }


def test_render_table_and_markdown() -> None:
    """Both renderings show every row with its ratio and why a config did not run."""
    text = render_table(_report())
    assert "TLS 1.2, resumed handshakes" in text
    assert "3.00x" in text and "node is not on PATH" in text
    md = render_markdown(_report())
    assert md.count("\n") == 4 and "| 1.2 | resumed | tickets | 1,800 | 3.00 | 100.0% |" in md


def test_cli_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    """Bad options exit 2 with a message naming the option, before anything starts."""
    with pytest.raises(SystemExit) as exc:
        benchmark.main(["--configs", "baseline,nginx"])
    assert exc.value.code == 2 and "nginx" in capsys.readouterr().err
    assert benchmark.main(["--workers", "0"]) == 2
    assert "--workers" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        benchmark.main(["--target", "no-port-here"])
    assert exc.value.code == 2 and "HOST:PORT" in capsys.readouterr().err
    assert benchmark.main(["--target", "127.0.0.1:443", "--path", "x"]) == 2
    assert "--path" in capsys.readouterr().err


def test_cli_plot_without_matplotlib_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """--plot without matplotlib fails at once (not after the run) and says what to
    install."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import raises ImportError
    assert benchmark.main(["--quick", "--plot", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "matplotlib" in err and "tlsresume[plot]" in err


def test_cli_list(capsys: pytest.CaptureFixture[str]) -> None:
    """--list names every configuration and whether it can run here."""
    assert benchmark.main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in benchmark.CONFIGS:
        assert name in out
    for name in expected_configs():
        assert f"{name:<18} available" in out


def test_node_script_ships_with_the_package() -> None:
    """node_cluster.js sits next to the module (package data), where the bench looks."""
    assert benchmark.node_script().is_file()


def test_session_cache_unavailable_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tlsresume serve without --session-cache makes that configuration
    "unavailable" with the reason; the others are unaffected."""
    monkeypatch.setattr(servers, "_serve_has_session_cache", lambda: False)
    got = benchmark.availability(["baseline", "tickets", "session-cache"])
    assert got["baseline"].available and got["tickets"].available
    assert not got["session-cache"].available
    assert "--session-cache" in (got["session-cache"].reason or "")


def test_from_json_renders_without_measuring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--from re-renders a saved report (Markdown here, a chart when matplotlib is
    installed) without starting anything; a file that is not a report is refused."""
    report = {"tool": benchmark.PROG, **_report()}
    saved = tmp_path / "report.json"
    saved.write_text(json.dumps(report))
    assert benchmark.main(["--from", str(saved), "--markdown"]) == 0
    assert "| 1.2 | resumed | tickets |" in capsys.readouterr().out
    (tmp_path / "other.json").write_text("{}")
    assert benchmark.main(["--from", str(tmp_path / "other.json")]) == 2
    assert "not a report" in capsys.readouterr().err
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    png = tmp_path / "chart.png"
    assert benchmark.main(["--from", str(saved), "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------------------
# --target: the same load against a server the user runs
# --------------------------------------------------------------------------------------


def _bench_target(port: int, pid: int, out: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "tlsresume.tools.bench", "--target", f"127.0.0.1:{port}"]
        + ["--server-pid", str(pid), "--duration", "0.5", "--rounds", "1"]
        + ["--tls", "1.2", "--modes", "resumed", "--json", str(out), "-q"],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "target" in done.stdout, done.stdout
    report: dict[str, Any] = json.loads(out.read_text())
    return report


def test_target_measures_a_running_server(serve: Any, tmp_path: Path) -> None:
    """``--target`` against a running ``tlsresume serve --workers 2``: every resumed
    handshake resumes (>= 99 %), with the server's CPU per connection from its pid.
    Control: the same against ``serve --no-share`` (per-worker contexts) resumes
    about half (25-60 %: clients land on both workers, neither takes them all),
    so the figure is the server's, not the load generator's."""
    shared = serve("--workers", "2")
    report = _bench_target(shared.port, shared.proc.pid, tmp_path / "shared.json")
    (result,) = report["results"]
    assert result["config"] == "target" and result["completed"] > 0, result
    assert result["resumed_pct"] >= 99.0, result
    assert result["server_cpu_us_per_conn"] and result["server_cpu_us_per_conn"] > 0
    plain = serve("--workers", "2", "--no-share")
    (control,) = _bench_target(plain.port, plain.proc.pid, tmp_path / "plain.json")["results"]
    assert control["completed"] > 0 and 25.0 <= control["resumed_pct"] <= 60.0, control
