"""``tlsresume bench --client-libs``: what tlsresume buys an HTTPS client.

N sequential new HTTPS connections (``Connection: close``: each is a new TCP and
TLS connection) with httpx, urllib3 and requests, each as a ``stock`` client (the
library's own verifying setup) and a ``tlsresume`` one (:func:`tlsresume.client_context`,
or :class:`~tlsresume.integrations.requests.ResumingAdapter` for requests), against
``tlsresume serve`` on loopback (one per TLS version, a throwaway trustme CA), whose
``X-Session-Reused`` says whether each connection resumed. Warm-up, then interleaved
rounds; medians, ranges and ratios to stock; docs/bench.md tells how to read them.
Nothing about timings is asserted.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import socket
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TextIO

import tlsresume

from ..launch import serve_argv
from .config import EXIT_FAIL, EXIT_OK, EXIT_USAGE, HOST, PROG, BenchError
from .report import _num, _ratio
from .servers import _child_env, _serve_ready, _Server, _stop_servers

__all__ = ["LIBRARIES", "CLIENTS", "ClientsConfig", "make_client", "run_clients", "main"]

LIBRARIES = ("httpx", "urllib3", "requests")
CLIENTS = ("stock", "tlsresume")
WARMUP = 5
QUICK_CONNS, FULL_CONNS = 20, 200
SERVE_ARGS = ("--workers", "2", "--no-session-cache")  # shared ticket keys
TIMEOUT = 10.0
_CLOSE = {"Connection": "close"}


@dataclass
class ClientsConfig:
    """What :func:`run_clients` measures."""

    conns: int = FULL_CONNS
    rounds: int = 3
    protocols: tuple[str, ...] = ("1.2", "1.3")
    libraries: tuple[str, ...] = LIBRARIES
    warmup: int = WARMUP
    quick: bool = False
    progress: TextIO | None = None

    def validate(self) -> None:
        if not 1 <= self.conns <= 100_000:
            raise ValueError(f"--conns must be between 1 and 100000, not {self.conns}")
        if not 1 <= self.rounds <= 100:
            raise ValueError(f"--rounds must be between 1 and 100, not {self.rounds}")


# --------------------------------------------------------------------------------------
# The clients
# --------------------------------------------------------------------------------------


@dataclass
class Client:
    """One client: ``get(url)`` makes one request on a new connection and returns
    the server's ``X-Session-Reused`` (True: resumed); ``cache`` is tlsresume's
    session cache (None for stock clients)."""

    get: Callable[[str], bool]
    close: Callable[[], None]
    cache: Any = None


def _answer(status: int, reused: str | None) -> bool:
    if status != 200:
        raise BenchError(f"the server answered {status} instead of 200")
    return reused == "yes"


def _httpx_client(kind: str, bundle: str) -> Client:
    import httpx

    ctx = (
        tlsresume.client_context(cafile=bundle)
        if kind == "tlsresume"
        else ssl.create_default_context(cafile=bundle)  # what httpx does for verify=True
    )
    client = httpx.Client(verify=ctx, trust_env=False, timeout=TIMEOUT)

    def get(url: str) -> bool:
        r = client.get(url, headers=_CLOSE)
        return _answer(r.status_code, r.headers.get("x-session-reused"))

    return Client(get, client.close, getattr(ctx, "session_cache", None))


def _urllib3_client(kind: str, bundle: str) -> Client:
    import urllib3

    if kind == "tlsresume":
        ctx = tlsresume.client_context(cafile=bundle)
        pool = urllib3.PoolManager(ssl_context=ctx, timeout=TIMEOUT, retries=False)
        cache = ctx.session_cache
    else:
        pool = urllib3.PoolManager(ca_certs=bundle, timeout=TIMEOUT, retries=False)
        cache = None

    def get(url: str) -> bool:
        r = pool.request("GET", url, headers=_CLOSE)
        return _answer(r.status, r.headers.get("x-session-reused"))

    return Client(get, pool.clear, cache)


def _requests_client(kind: str, bundle: str) -> Client:
    import requests

    session = requests.Session()
    session.trust_env = False
    session.verify = bundle
    cache = None
    if kind == "tlsresume":
        from tlsresume.integrations.requests import ResumingAdapter

        adapter = ResumingAdapter()
        session.mount("https://", adapter)
        cache = adapter.cache

    def get(url: str) -> bool:
        r = session.get(url, headers=_CLOSE, timeout=TIMEOUT)
        return _answer(r.status_code, r.headers.get("x-session-reused"))

    return Client(get, session.close, cache)


_BUILDERS: dict[str, Callable[[str, str], Client]] = {
    "httpx": _httpx_client,
    "urllib3": _urllib3_client,
    "requests": _requests_client,
}


def make_client(library: str, kind: str, bundle: str) -> Client:
    """The ``kind`` (``"stock"`` or ``"tlsresume"``) client of ``library``,
    verifying servers against the CA bundle file ``bundle``."""
    if kind not in CLIENTS:
        raise ValueError(f"unknown client {kind!r}; choose from {', '.join(CLIENTS)}")
    return _BUILDERS[library](kind, bundle)


def library_versions(libraries: tuple[str, ...] = LIBRARIES) -> dict[str, dict[str, Any]]:
    """Per library: ``available``, ``version``, and why not (``reason``)."""
    out: dict[str, dict[str, Any]] = {}
    for name in libraries:
        try:
            mod = importlib.import_module(name)
        except ImportError as exc:
            out[name] = {"available": False, "version": None, "reason": f"not importable: {exc}"}
            continue
        version = getattr(mod, "__version__", None)
        out[name] = {"available": True, "version": version, "reason": None}
    if "requests" in out and out["requests"]["available"]:
        try:
            importlib.import_module("tlsresume.integrations.requests").ResumingAdapter()
        except (ImportError, RuntimeError) as exc:
            out["requests"].update(available=False, reason=str(exc))
    return out


# --------------------------------------------------------------------------------------
# The CA and the server
# --------------------------------------------------------------------------------------


def write_ca(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway trustme CA's leaf for localhost and 127.0.0.1 in ``folder``:
    ``(cert, key, bundle)``, the bundle being certifi's (when installed) with the CA
    appended, as a private CA is added to a system bundle. BenchError without trustme."""
    try:
        import trustme
    except ImportError:
        raise BenchError(
            "--client-libs needs trustme: pip install trustme (or 'tlsresume[test]')"
        ) from None
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", HOST)
    cert, key, bundle = folder / "cert.pem", folder / "key.pem", folder / "bundle.pem"
    leaf.private_key_pem.write_to_path(str(key))
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    try:
        import certifi

        base = Path(certifi.where()).read_bytes() + b"\n"
    except ImportError:
        base = b""
    bundle.write_bytes(base + ca.cert_pem.bytes())
    return cert, key, bundle


@contextmanager
def serving(protocol: str, cert: Path, key: Path, workdir: Path) -> Iterator[str]:
    """``tlsresume serve`` (2 workers, shared tickets, TLS ``protocol`` at most)
    on loopback; yields its URL, stops it on the way out. BenchError: it did not start."""
    args = ["--host", HOST, "--port", "0", *SERVE_ARGS, "--cert", str(cert), "--key", str(key)]
    if protocol == "1.2":
        args += ["--tls-max", "1.2"]
    token = f"{os.getpid()}-{time.monotonic_ns()}"
    server = _Server(
        f"serve-tls{protocol}",
        serve_argv(args),
        _serve_ready,
        2,
        env=_child_env(token),
        cwd=None,
        logdir=workdir,
        term_root_only=True,
        serve_args=args,
    )
    try:
        server.wait_ready(30.0)
        yield f"https://{HOST}:{server.port}/"
    finally:
        _stop_servers([server])


def negotiated(url: str, bundle: Path) -> str | None:
    """The TLS version a verifying client negotiates with the server at ``url``."""
    host, port = url.split("//", 1)[1].rstrip("/").rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=str(bundle))
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as tls:
            return tls.version()


# --------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------


@dataclass
class _Cell:
    library: str
    kind: str
    protocol: str
    client: Client | None = None
    rounds: list[tuple[float, float, int, int]] = field(default_factory=list)
    error: str | None = None

    @property
    def label(self) -> str:
        return f"{self.library} {self.kind} TLS {self.protocol}"


def _connections(client: Client, url: str, n: int) -> tuple[float, float, int, int]:
    """(wall s, CPU s, completed, resumed) of n new connections."""
    resumed = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        resumed += client.get(url)
    return time.perf_counter() - wall0, time.process_time() - cpu0, n, resumed


def _note(config: ClientsConfig, text: str) -> None:
    if config.progress is not None:
        config.progress.write(f"{PROG}: {text}\n")
        config.progress.flush()


def _measure_protocol(config: ClientsConfig, cells: list[_Cell], url: str, bundle: str) -> None:
    for cell in cells:
        try:
            cell.client = make_client(cell.library, cell.kind, bundle)
            _connections(cell.client, url, config.warmup)
        except Exception as exc:  # a client that cannot connect is reported, not fatal
            cell.error = f"{type(exc).__name__}: {exc}"
            _note(config, f"{cell.label}: failed in warm-up: {cell.error}")
    for r in range(config.rounds):
        live = [c for c in cells if c.error is None]
        shift = r % len(live) if live else 0
        for cell in live[shift:] + live[:shift]:
            assert cell.client is not None
            try:
                cell.rounds.append(_connections(cell.client, url, config.conns))
            except Exception as exc:
                cell.error = f"round {r + 1}: {type(exc).__name__}: {exc}"
                _note(config, f"{cell.label}: failed: {cell.error}")
        _note(config, f"TLS {cells[0].protocol if cells else '?'}: round {r + 1} done")
    for cell in cells:
        if cell.client is not None:
            cell.client.close()


def _row(cell: _Cell, conns: int) -> dict[str, Any]:
    walls = [w for w, _, _, _ in cell.rounds]
    done = sum(n for _, _, n, _ in cell.rounds)
    resumed = sum(k for _, _, _, k in cell.rounds)
    cpu = [1e6 * c / n for _, c, n, _ in cell.rounds if n]
    cache = cell.client.cache if cell.client is not None else None
    return {
        "library": cell.library,
        "client": cell.kind,
        "protocol": cell.protocol,
        "conns": conns,
        "wall_s": round(statistics.median(walls), 4) if walls else None,
        "wall_min_s": round(min(walls), 4) if walls else None,
        "wall_max_s": round(max(walls), 4) if walls else None,
        "cpu_us_per_conn": round(statistics.median(cpu), 1) if cpu else None,
        "resumed_pct": round(100.0 * resumed / done, 2) if done else None,
        "completed": done,
        "resumed": resumed,
        "rounds": [
            {"wall_s": round(w, 4), "cpu_us_per_conn": round(1e6 * c / n, 1), "resumed": k}
            for w, c, n, k in cell.rounds
        ],
        "cache": cache.stats() if cache is not None else None,
        "error": cell.error,
    }


def add_client_ratios(rows: list[dict[str, Any]]) -> None:
    """Set ``ratio`` (wall) and ``cpu_ratio`` on every row against the stock row of
    the same library and TLS version; ``None`` where there is none."""
    stock = {(r["library"], r["protocol"]): r for r in rows if r["client"] == "stock"}
    for r in rows:
        base = stock.get((r["library"], r["protocol"]))
        for key, name in (("wall_s", "ratio"), ("cpu_us_per_conn", "cpu_ratio")):
            b = base.get(key) if base else None
            r[name] = round(r[key] / b, 3) if b and r[key] is not None else None


def run_clients(config: ClientsConfig) -> dict[str, Any]:
    """Run the client section and return its report (a JSON-ready dict with
    ``settings``, ``machine``, ``libraries`` and ``clients``, one row per library,
    client and TLS version that was measured).

    Raises:
        ValueError: ``config`` is invalid.
        BenchError: the CA or a server could not be made.
    """
    from .benchmark import _machine, _package_version

    config.validate()
    libs = library_versions(config.libraries)
    for name, info in libs.items():
        if not info["available"]:
            _note(config, f"{name}: skipped ({info['reason']})")
    usable = [n for n in config.libraries if libs[n]["available"]]
    report: dict[str, Any] = {
        "tool": PROG,
        "section": "clients",
        "version": _package_version(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings": {
            "conns": config.conns,
            "rounds": config.rounds,
            "warmup": config.warmup,
            "protocols": list(config.protocols),
            "quick": config.quick,
            "server": "tlsresume serve " + " ".join(SERVE_ARGS),
        },
        "machine": _machine(),
        "libraries": libs,
        "clients": [],
    }
    workdir = Path(tempfile.mkdtemp(prefix="tlsresume-bench-clients-"))
    try:
        cert, key, bundle = write_ca(workdir)
        for protocol in config.protocols:
            cells = [_Cell(lib, kind, protocol) for lib in usable for kind in CLIENTS]
            with serving(protocol, cert, key, workdir) as url:
                got = negotiated(url, bundle)
                if got != f"TLSv{protocol}":
                    raise BenchError(f"the TLS {protocol} server negotiated {got}")
                _note(
                    config,
                    f"TLS {protocol}: {len(cells)} clients x {config.rounds} round(s) x "
                    f"{config.conns} connections",
                )
                _measure_protocol(config, cells, url, str(bundle))
            report["clients"] += [_row(c, config.conns) for c in cells]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    add_client_ratios(report["clients"])
    return report


# --------------------------------------------------------------------------------------
# Rendering and the command line
# --------------------------------------------------------------------------------------

_BETTER = (
    "Lower wall time and CPU per connection are better; "
    "ratios are to the same library's stock client."
)


def render_clients_table(report: dict[str, Any]) -> str:
    """The client section as a text table."""
    s, m = report["settings"], report["machine"]
    lines = [
        f"{PROG} --client-libs: {s['conns']} new connections x {s['rounds']} round(s) "
        f"per client (after {s['warmup']} warm-up), {s['server']}",
        f"Python {m['python']}, {m['openssl']}, {m['cpus']} CPUs",
    ]
    for name, info in report["libraries"].items():
        state = info["version"] if info["available"] else f"skipped: {info['reason']}"
        lines.append(f"{name}: {state}")
    widths = (-9, -10, -4, 7, 15, 10, 8, 14, 13)
    head = ("library", "client", "TLS", "wall s", "[min-max]", "CPU/conn", "resumed")
    lines += ["", _line(head + ("wall vs stock", "CPU vs stock"), widths)]
    for r in report["clients"]:
        cells = _cells(r)
        cells[4] = f"[{cells[4]}]" if r["wall_s"] is not None else "-"
        cells[5] += " us"
        lines.append(_line(cells, widths))
        if r["error"]:
            lines.append(f"      error: {r['error']}")
    lines += ["", _BETTER]
    return "\n".join(lines) + "\n"


def _cells(r: dict[str, Any]) -> list[str]:
    """One row's figures as text, in table order."""
    spread = "-" if r["wall_s"] is None else f"{r['wall_min_s']:.3f}-{r['wall_max_s']:.3f}"
    resumed = "-" if r["resumed_pct"] is None else f"{r['resumed_pct']:.1f}%"
    return [
        *(r["library"], r["client"], r["protocol"], _num(r["wall_s"], 3), spread),
        *(_num(r["cpu_us_per_conn"]), resumed, _ratio(r["ratio"]), _ratio(r["cpu_ratio"])),
    ]


def _line(cells: tuple[str, ...] | list[str], widths: tuple[int, ...]) -> str:
    """Cells padded to ``widths`` (negative: left-aligned)."""
    return "  " + " ".join(
        c.ljust(-w) if w < 0 else c.rjust(w) for c, w in zip(cells, widths, strict=True)
    )


def render_clients_markdown(report: dict[str, Any]) -> str:
    """The client section as one Markdown table."""
    lines = [
        "| library | client | TLS | wall s (median) | min-max | client CPU µs/conn | "
        "resumed | wall x stock | CPU x stock |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["clients"]:
        error = f" error: {r['error']}" if r["error"] else ""
        lines.append("| " + " | ".join(_cells(r)) + " |" + error)
    lines += ["", _BETTER]
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace) -> int:
    """``tlsresume bench --client-libs``, from the parsed command line.

    Returns:
        0 when every available client ran, 1 when one failed (the report is still
        written), 2 on bad usage, 130 when interrupted.
    """
    from .cli import _guarded, _write_text

    config = ClientsConfig(
        conns=(QUICK_CONNS if args.quick else FULL_CONNS) if args.conns is None else args.conns,
        rounds=(1 if args.quick else 3) if args.rounds is None else args.rounds,
        protocols=args.tls,
        quick=args.quick,
        progress=None if args.no_progress else sys.stderr,
    )
    try:
        config.validate()
    except ValueError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    got = _guarded(lambda: run_clients(config), "every server was stopped")
    if isinstance(got, int):
        return got
    report = got
    out: IO[str] = sys.stderr if args.json == "-" else sys.stdout
    render = render_clients_markdown if args.markdown else render_clients_table
    print(render(report), file=out, end="", flush=True)
    if args.json:
        _write_text(args.json, json.dumps(report, indent=2) + "\n")
    failed = [r for r in report["clients"] if r["error"]]
    for r in failed:
        print(
            f"{PROG}: {r['library']} {r['client']} TLS {r['protocol']}: {r['error']}",
            file=sys.stderr,
        )
    return EXIT_FAIL if failed else EXIT_OK
