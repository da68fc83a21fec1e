"""The ``tlsresume bench`` command line (also ``python -m tlsresume.tools.bench``)."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------
from .benchmark import run
from .config import (
    _FULL_DURATION,
    _FULL_ROUNDS,
    _FULL_WARMUP,
    _QUICK_DURATION,
    _QUICK_ROUNDS,
    _QUICK_WARMUP,
    CONFIGS,
    EXIT_FAIL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    MODES,
    PROG,
    PROTOCOLS,
    BenchConfig,
    BenchError,
)
from .report import _load_pyplot, plot, render_markdown, render_table
from .servers import availability


def _csv(choices: Sequence[str], option: str) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        items = tuple(dict.fromkeys(x.strip() for x in text.split(",") if x.strip()))
        bad = [x for x in items if x not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(
                f"{option}: unknown {', '.join(bad) or 'empty list'}; choose from "
                f"{', '.join(choices)} (comma-separated)"
            )
        return items

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Measure TLS handshakes per second on loopback, side by side: plain CPython "
            "pre-fork workers (baseline), tlsresume's shared tickets and session cache, "
            "and as references, when installed, nginx with the same workers (shared "
            "ticket key file; shared session cache), a Node.js cluster (rr and none "
            "scheduling) and openssl s_server (one process). "
            "For each: TLS 1.2 and 1.3, full and resumed handshakes, from a C load "
            "generator in separate processes. Reports connections/s, resumption %%, "
            "server CPU time per connection, and ratios against the baseline of the "
            "same run."
        ),
    )
    p.add_argument(
        "--configs",
        type=_csv(tuple(CONFIGS), "--configs"),
        default=tuple(CONFIGS),
        metavar="LIST",
        help=f"configurations to run, comma-separated (default all: {','.join(CONFIGS)})",
    )
    p.add_argument("--workers", type=int, default=2, metavar="N", help="server workers (2)")
    p.add_argument(
        "--duration",
        type=float,
        metavar="S",
        help=f"seconds per cell and round ({_FULL_DURATION:g}; --quick {_QUICK_DURATION:g})",
    )
    p.add_argument(
        "--rounds",
        type=int,
        metavar="R",
        help=f"rounds, the median is reported ({_FULL_ROUNDS}; --quick {_QUICK_ROUNDS})",
    )
    p.add_argument(
        "--warmup",
        type=float,
        metavar="S",
        help="seconds of unmeasured load per server and cell before the first round "
        f"({_FULL_WARMUP:g}; --quick {_QUICK_WARMUP:g}; 0: none)",
    )
    p.add_argument("--quick", action="store_true", help="short run, under a minute on 2 cores")
    p.add_argument(
        "--clients", type=int, default=2, metavar="N", help="load generator processes (2)"
    )
    p.add_argument(
        "--sessions",
        type=int,
        default=16,
        metavar="N",
        help="virtual clients per load generator process, each with its own session (16)",
    )
    p.add_argument(
        "--tls",
        type=_csv(PROTOCOLS, "--tls"),
        default=PROTOCOLS,
        metavar="LIST",
        help="TLS versions (1.2,1.3)",
    )
    p.add_argument(
        "--modes",
        type=_csv(MODES, "--modes"),
        default=MODES,
        metavar="LIST",
        help="handshake kinds (full,resumed)",
    )
    p.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="PATH",
        help="write the report as JSON to PATH, or to standard output without PATH "
        "(the table then goes to standard error)",
    )
    p.add_argument(
        "--plot", metavar="PNG", help="draw a chart to PNG (needs matplotlib: tlsresume[plot])"
    )
    p.add_argument(
        "--markdown", action="store_true", help="print the table as Markdown (for RESULTS.md)"
    )
    p.add_argument(
        "--list", action="store_true", help="list the configurations and whether they can run"
    )
    p.add_argument(
        "--from",
        dest="from_json",
        metavar="JSON",
        help="do not measure: render a report written earlier by --json (table, --plot)",
    )
    p.add_argument(
        "--target",
        type=_host_port,
        metavar="HOST:PORT",
        help="measure a server you run instead of starting the configurations (the same "
        "load, rounds and table; its certificate is not verified)",
    )
    p.add_argument("--sni", metavar="NAME", help="server name sent to --target (its host)")
    p.add_argument(
        "--path", default="/", help="path requested from --target, which must answer 200 (/)"
    )
    p.add_argument(
        "--server-pid",
        type=int,
        metavar="PID",
        help="the --target server's process: report its CPU time per connection (it and "
        "its descendants)",
    )
    p.add_argument("-q", "--no-progress", action="store_true", help="no progress on stderr")
    p.add_argument(
        "--client-libs",
        action="store_true",
        help="measure only HTTPS clients (httpx, urllib3, requests), stock against "
        "tlsresume, with --conns, --rounds, --tls, --json, --markdown",
    )
    p.add_argument(
        "--conns", type=int, metavar="N", help="--client-libs: new connections per round (200)"
    )
    return p


def _default(value: float | None, default: float) -> float:
    """An option's value, or its default when not given (0 is a value: no warm-up)."""
    return default if value is None else value


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {text!r}")
    return host.strip("[]"), int(port)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt, so that ``kill`` cleans up like Ctrl-C."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _guarded(measure: Callable[[], dict[str, Any]], stopped: str) -> dict[str, Any] | int:
    """``measure()``'s report, or the exit code when it was interrupted (Ctrl-C,
    SIGTERM) or raised :class:`BenchError` (said on standard error)."""
    try:
        with _sigterm_as_interrupt():
            return measure()
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; {stopped}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BenchError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_FAIL


def _write_text(path: str, text: str) -> None:
    if path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        Path(path).write_text(text, encoding="utf-8")


def _load_report(path: str) -> dict[str, Any]:
    """A report written by ``--json``.

    Raises:
        BenchError: the file cannot be read or is not such a report.
    """
    try:
        with open(path, encoding="utf-8") as f:
            report = json.load(f)
    except (OSError, ValueError) as exc:
        raise BenchError(f"--from {path}: {exc}") from None
    if not isinstance(report, dict) or report.get("tool") != PROG or "results" not in report:
        raise BenchError(f"--from {path}: not a report written by {PROG} --json")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``tlsresume bench``.

    Args:
        argv: arguments without the program name (default ``sys.argv[1:]``).

    Returns:
        0 when every available configuration ran, 1 when one failed to start or
        a cell completed no connection (the report is still written), 2 on bad
        usage, 130 when interrupted (Ctrl-C or SIGTERM; everything started is
        stopped first).
    """
    args = build_parser().parse_args(argv)
    if args.client_libs:
        from .clientlibs import main as clients_main

        return clients_main(args)
    if args.list:
        for name, a in availability().items():
            state = "available" if a.available else f"unavailable: {a.reason}"
            extra = f" ({a.version})" if a.version else ""
            print(f"{name:<18} {state}{extra}\n{'':<18} {CONFIGS[name]}")
        return EXIT_OK
    config = BenchConfig(
        configs=args.configs,
        workers=args.workers,
        duration=args.duration or (_QUICK_DURATION if args.quick else _FULL_DURATION),
        rounds=args.rounds or (_QUICK_ROUNDS if args.quick else _FULL_ROUNDS),
        warmup=_default(args.warmup, _QUICK_WARMUP if args.quick else _FULL_WARMUP),
        clients=args.clients,
        sessions=args.sessions,
        protocols=args.tls,
        modes=args.modes,
        quick=args.quick,
        progress=None if args.no_progress else sys.stderr,
        target=args.target,
        target_sni=args.sni,
        target_pid=args.server_pid,
        target_path=args.path,
    )
    try:
        config.validate()
        if args.plot:
            _load_pyplot()  # fail before a long run, not after it
        if args.from_json:
            report = _load_report(args.from_json)
    except (ValueError, BenchError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not args.from_json:
        got = _guarded(lambda: run(config), "every server and client was stopped")
        if isinstance(got, int):
            return got
        report = got

    table_out: IO[str] = sys.stderr if args.json == "-" else sys.stdout
    table = render_markdown(report) if args.markdown else render_table(report)
    print(table, file=table_out, end="", flush=True)
    if args.json:
        _write_text(args.json, json.dumps(report, indent=2) + "\n")
    if args.plot:
        plot(report, args.plot)
        print(f"{PROG}: chart written to {args.plot}", file=sys.stderr)
    failed = [n for n, c in report["configurations"].items() if c["status"] == "failed"]
    empty = [r for r in report["results"] if r["completed"] == 0]
    if failed or empty:
        for n in failed:
            print(f"{PROG}: {n} failed: {report['configurations'][n]['reason']}", file=sys.stderr)
        for r in empty:
            print(
                f"{PROG}: {r['config']} TLS {r['protocol']} {r['mode']}: no connection "
                f"completed ({'; '.join(r['errors']) or 'no error recorded'})",
                file=sys.stderr,
            )
        return EXIT_FAIL
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
