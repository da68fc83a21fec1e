"""The ``tlsresume`` command line: ``keygen``, ``serve``, ``check``, ``stats`` and ``demo``.

Each subcommand is a pair of functions: ``_add_NAME(subparsers)`` declares its
options and ``_cmd_NAME(args) -> int`` runs it; ``serve`` and ``check``, the large
ones, have theirs in :mod:`tlsresume.tools.commands`. The work itself lives in importable
modules (:mod:`tlsresume.tools.serve`, :mod:`tlsresume.tools.check`, :mod:`tlsresume.regions`,
:mod:`tlsresume.keyfile`); this file only translates arguments and exit codes.

The C core is imported lazily, so ``keygen``, ``serve --no-share`` and ``check``
work on a Python whose OpenSSL tlsresume cannot reach.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .commands._common import EXIT_FAIL, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, PROG, _fail
from .commands.check import _add_check
from .commands.serve import _add_serve

__all__ = ["main", "build_parser"]

# --------------------------------------------------------------------------------------
# keygen
# --------------------------------------------------------------------------------------


def _add_keygen(sub: Any) -> None:
    from tlsresume import keyfile

    p = sub.add_parser(
        "keygen",
        help="write fresh ticket key material in a named key-file format",
        description=(
            "Write fresh random session-ticket keys in one of the key-file layouts "
            "other servers read. Key material is never printed to a terminal: give "
            "--out PATH (created with mode 0600), or --out - to write to standard "
            "output on purpose (e.g. into a pipe)."
        ),
    )
    formats = list(keyfile.FORMATS) + sorted(getattr(keyfile, "ALIASES", {}))
    p.add_argument(
        "--format",
        required=True,
        metavar="F",
        help=f"key-file layout, one of: {', '.join(formats)}",
    )
    p.add_argument("--out", metavar="PATH", help="file to write (mode 0600), or - for stdout")
    p.add_argument(
        "--count",
        type=int,
        default=None,
        metavar="N",
        help="number of keys (haproxy: default 3 = previous, current, next; others hold 1)",
    )
    p.add_argument("--force", action="store_true", help="replace PATH if it exists")
    p.set_defaults(func=_cmd_keygen)


def _cmd_keygen(args: argparse.Namespace) -> int:
    from tlsresume import keyfile
    from tlsresume.errors import KeyFileError

    if args.out is None:
        return _fail(
            "refusing to write key material to standard output by default; give --out PATH "
            "(written with mode 0600) or --out - to write to stdout on purpose",
            EXIT_USAGE,
        )
    try:
        fmt = keyfile.canonical_format(args.format)
        keyset = keyfile.generate(fmt, args.count)
        data = keyfile.render(keyset, fmt)
        written = keyfile.parse(data, fmt, source="<generated>")
    except (KeyFileError, ValueError, TypeError) as exc:
        return _fail(str(exc), EXIT_USAGE)
    if args.count is not None and args.count > len(written.keys):
        return _fail(
            f"format {fmt!r} holds {len(written.keys)} key per file; --count {args.count} "
            "would silently drop keys (write one file per key instead)",
            EXIT_USAGE,
        )

    names = ", ".join(k.name_hex for k in written.keys)
    if args.out == "-":
        text_format = data.isascii() and data.endswith(b"\n")
        if sys.stdout.isatty() and not text_format:
            return _fail(
                f"format {fmt!r} is binary; refusing to write it to a terminal "
                "(redirect standard output to a file or a pipe)",
                EXIT_USAGE,
            )
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        if os.path.lexists(args.out) and not args.force:
            return _fail(f"{args.out} exists; give --force to replace it", EXIT_USAGE)
        try:
            keyfile.write(args.out, keyset, fmt)
        except KeyFileError as exc:
            return _fail(str(exc))
    where = "standard output" if args.out == "-" else f"{args.out} (mode 0600)"
    print(
        f"{PROG} keygen: wrote {len(written.keys)} key(s) in format {fmt} to {where}; "
        f"key names: {names}",
        file=sys.stderr,
    )
    return EXIT_OK


# --------------------------------------------------------------------------------------
# stats
# --------------------------------------------------------------------------------------


def _add_stats(sub: Any) -> None:
    p = sub.add_parser(
        "stats",
        help="show the counters of the key rings and session stores on this machine",
        description=(
            "List this user's tlsresume regions (key rings and session "
            "stores, e.g. those of a running 'tlsresume serve', named serve-<pid>), "
            "attach to each and print its counters, which are totals over every "
            "process using it. Regions that cannot be attached are skipped with a note. "
            "They live in this user's private directory on tmpfs: $TLSRESUME_RUNTIME_DIR, "
            "else /run/tlsresume for root, $XDG_RUNTIME_DIR/tlsresume, or "
            "/dev/shm/tlsresume-<uid>."
        ),
    )
    p.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="regions to show (a name such as serve-1234 means its ring and its store; "
        "tlsresume.store.serve-1234 means just that one); default: all of this user's",
    )
    form = p.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="print the result as JSON")
    form.add_argument(
        "--prometheus",
        action="store_true",
        help="print the counters in Prometheus text exposition format",
    )
    form.add_argument(
        "--cleanup",
        action="store_true",
        help="remove every region of this user that no process uses any more (no "
        "process maps the file or holds it open, per /proc/*/maps and /proc/*/fd): "
        "left by a killed 'tlsresume serve', or by programs that made named rings "
        "and stores and exited",
    )
    p.set_defaults(func=_cmd_stats)


def _cmd_stats(args: argparse.Namespace) -> int:
    import json

    from tlsresume.errors import TLSResumeError

    if args.cleanup:
        from tlsresume.regions import region_users, remove_leftovers

        users = region_users()
        try:
            removed = remove_leftovers(users=users)
        except (ImportError, TLSResumeError) as exc:
            return _fail(f"cannot clean up tlsresume regions: {exc}")
        for region in removed:
            print(f"removed {region.path} (no process maps it or holds it open)")
        if not removed:
            print("no leftover regions")
        if users.unreadable and removed:
            pids = " ".join(str(pid) for pid in users.unreadable[:8])
            print(
                f"note: the mappings of processes {pids} could not be read; one of them "
                "still using a removed region keeps it (only the name went)"
            )
        return EXIT_OK
    try:
        from tlsresume.regions import collect
        from tlsresume.tools.stats import render_text

        report = collect(args.names or None)
    except (ImportError, TLSResumeError) as exc:
        return _fail(f"cannot read tlsresume regions: {exc}")
    if args.json:
        print(json.dumps(report, indent=2))
    elif args.prometheus:
        from tlsresume.metrics import render_prometheus

        by_kind: dict[str, dict[str, Any]] = {}
        for region in report["regions"]:
            by_kind.setdefault(region["kind"], {})[region["name"]] = region["stats"]
        sys.stdout.write(render_prometheus(by_kind))
    else:
        print(render_text(report))
    if report["missing"]:
        if args.json or args.prometheus:  # the text form says it in its own output
            from tlsresume.tools.stats import not_found_line

            for name in report["missing"]:
                _fail(not_found_line(name, report["shm_dir"]))
        return EXIT_FAIL
    return EXIT_OK


# --------------------------------------------------------------------------------------
# demo
# --------------------------------------------------------------------------------------


def _add_demo(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="show the problem and the fix: two 4-worker servers, without and with sharing",
        description=(
            "Start 'tlsresume serve' twice on loopback (throwaway certificate, free "
            "ports), once without and once with shared ticket keys, run 'check' against "
            "both over TLS 1.2 and TLS 1.3, print the results side by side, and stop both."
        ),
    )
    p.add_argument("--workers", type=int, default=4, metavar="N", help="workers per server (4)")
    p.add_argument("-n", type=int, default=20, help="connections per check (default 20)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    import json

    if args.n < 2:
        return _fail(f"-n must be at least 2 to show resumption, not {args.n}", EXIT_USAGE)
    if not 1 <= args.workers <= 64:
        return _fail(f"--workers must be between 1 and 64, not {args.workers}", EXIT_USAGE)
    quiet = args.json

    def progress(message: str) -> None:
        if not quiet:
            print(f"{PROG} demo: {message}", file=sys.stderr, flush=True)

    from tlsresume.tools.demo import format_demo, run_demo

    try:
        result = run_demo(workers=args.workers, n=args.n, progress=progress)
    except RuntimeError as exc:
        return _fail(str(exc))
    if args.json:
        payload = {
            "workers": result.workers,
            "n": result.n,
            "ring_stats": result.ring_stats,
            "checks": {
                v: {label: r.to_dict() for label, r in pair.items()}
                for v, pair in result.checks.items()
            },
        }
        print(json.dumps(payload, indent=2))
    else:
        print(format_demo(result))
    return EXIT_OK


# --------------------------------------------------------------------------------------
# The parser
# --------------------------------------------------------------------------------------


# Subcommands in the order `--help` lists them. A new one (`stats`, `bench`, ...) is an
# `_add_NAME(sub)` that sets `func=_cmd_NAME`, appended here.
def _add_bench(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark handshakes: plain CPython vs tlsresume (and openssl, node) side by side",
        description="Run pre-fork servers on loopback with and without tlsresume (and "
        "openssl s_server and a Node.js cluster as references when installed), load them "
        "with full and resumed handshakes, and report connections/s, resumption and "
        "server CPU per handshake. Options: see 'tlsresume bench --help'.",
        add_help=False,
    )
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=_cmd_bench)


def _cmd_bench(args: argparse.Namespace) -> int:
    from tlsresume.tools import bench

    return int(bench.main(list(args.rest)))


_SUBCOMMANDS: tuple[Callable[[Any], None], ...] = (
    _add_keygen,
    _add_serve,
    _add_check,
    _add_stats,
    _add_bench,
    _add_demo,
)


def version_text() -> str:
    """``tlsresume <version>``, the OpenSSL this Python's ``ssl`` uses, and whether the
    C core can reach it. Works without the core: that is one of the things it reports."""
    import ssl

    import tlsresume

    try:
        from tlsresume import _binding  # noqa: F401  (binding the core is the test)
    except ImportError as exc:
        core = f"C core: not available ({exc})"
    else:
        core = "C core: attached"
    return f"{PROG} {tlsresume.__version__}\n{ssl.OPENSSL_VERSION}\n{core}"


class _VersionAction(argparse.Action):
    """``--version``, computed when asked (it may try to bind the core)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kw: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        print(version_text())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """The ``tlsresume`` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="TLS session resumption for Python servers with several worker processes.",
    )
    parser.add_argument(
        "--version",
        action=_VersionAction,
        help="print the version, the OpenSSL in use and whether the C core attaches",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in _SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tlsresume`` command line.

    Args:
        argv: arguments without the program name (default ``sys.argv[1:]``).

    Returns:
        The exit status: 0 success, 1 failure, 2 bad usage, 130 interrupted.
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["bench"]:
        # bench has its own parser (tlsresume.tools.bench); hand it everything after.
        from tlsresume.tools import bench

        return int(bench.main(args_list[1:]))
    parser = build_parser()
    args = parser.parse_args(args_list)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `tlsresume check ... | head`: the reader left; exit quietly like cat does.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAIL
    return code
