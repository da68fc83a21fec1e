"""The ``tlsresume`` command line: ``keygen``, ``serve``, ``check``, ``stats`` and ``demo``.

Each subcommand is a pair of functions: ``_add_NAME(subparsers)`` declares its
options and ``_cmd_NAME(args) -> int`` runs it. The work itself lives in importable
modules (:mod:`tlsresume.serve`, :mod:`tlsresume.check`, :mod:`tlsresume.stats`,
:mod:`tlsresume.keyfile`); this file only translates arguments and exit codes.

The C core is imported lazily, so ``keygen``, ``serve --no-share`` and ``check``
work on a Python whose OpenSSL tlsresume cannot reach.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

__all__ = ["main", "build_parser", "run_demo", "DemoResult"]

PROG = "tlsresume"

# Exit codes: 0 success, 1 the operation failed, 2 bad usage (argparse's own), 130
# interrupted by Ctrl-C (the shell convention 128 + SIGINT).
EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _fail(message: str, code: int = EXIT_FAIL) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


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
# serve
# --------------------------------------------------------------------------------------


def _add_serve(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="run a pre-fork HTTPS server whose workers each build their own SSLContext",
        description=(
            "A pre-fork HTTPS server: one listening socket, N worker processes, each "
            "with its own SSLContext (as gunicorn or uvicorn --workers run). Every "
            "request is answered with 'worker <pid>', and GET "
            "/.well-known/tlsresume/stats with the shared counters as JSON. By default "
            "the workers share one tlsresume ticket key ring; --session-cache adds a "
            "shared session store (resumption by session ID, TLS 1.3 stateful tickets); "
            "--no-share is the baseline without tlsresume. The ring and store are named "
            "serve-<master pid> so 'tlsresume stats' can read them; they are removed "
            "when the server stops."
        ),
    )
    p.add_argument("--cert", metavar="C", help="PEM certificate chain (default: throwaway)")
    p.add_argument("--key", metavar="K", help="PEM private key for --cert")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument(
        "--port", type=int, default=8443, metavar="P", help="port (default 8443; 0 = any free)"
    )
    p.add_argument("--workers", type=int, default=4, metavar="N", help="worker processes (4)")
    p.add_argument(
        "--spawn",
        action="store_true",
        help="start workers as separate interpreters that attach to a named ring",
    )
    p.add_argument(
        "--no-share",
        dest="share",
        action="store_false",
        help="do not use tlsresume at all: every worker keeps its own ticket keys and "
        "session cache (the baseline); cannot be combined with --session-cache",
    )
    p.add_argument(
        "--session-cache",
        metavar="SIZE",
        help="share a session store of SIZE bytes (e.g. 1M, 10M; about 4,000 sessions "
        "per MB) for resumption by session ID and TLS 1.3 stateful tickets",
    )
    p.add_argument(
        "--no-tickets",
        dest="tickets",
        action="store_false",
        help="issue no session tickets (ssl.OP_NO_TICKET; no key ring): TLS 1.2 resumes "
        "by session ID only, TLS 1.3 tickets become stateful (served from --session-cache)",
    )
    p.add_argument(
        "--single-use",
        action="store_true",
        help="a TLS 1.3 stateful ticket resumes only once, on any worker (needs "
        "--session-cache and --no-tickets)",
    )
    p.add_argument(
        "--rotate", type=float, metavar="SECONDS", help="ticket key rotation period in seconds"
    )
    p.add_argument("--ciphers", metavar="STRING", help="OpenSSL cipher string (TLS 1.2)")
    p.add_argument("--tls-max", choices=("1.2", "1.3"), help="highest TLS version to offer")
    p.add_argument(
        "--threads", type=int, default=8, metavar="N", help="connection threads per worker (8)"
    )
    p.add_argument(
        "-v", "--verbose", action="store_true", help="log every failed connection (debug)"
    )
    fleet = p.add_argument_group(
        "across machines (Redis)",
        "Instances started with the same --redis URL and --redis-name share their "
        "ticket keys and (with --session-cache) their sessions, wherever they run: a "
        "client resumes on any of them. Redis down at start is a warning (the instance "
        "serves with its own keys and converges when Redis comes up); refused "
        "credentials or a master key that does not match the fleet's are errors. "
        "See docs/redis.md.",
    )
    fleet.add_argument(
        "--redis",
        metavar="URL",
        help="redis://[:PASSWORD@]HOST:PORT/DB, rediss://... (TLS, e.g. "
        "?ssl_ca_certs=CA.pem) or unix://PATH; 'env' reads the URL from $TLSRESUME_REDIS_URL "
        "so a password stays off the command line (ps shows it to every user)",
    )
    fleet.add_argument(
        "--redis-name",
        metavar="NAME",
        help="the service's name: instances share only with the same name (default: default)",
    )
    fleet.add_argument(
        "--redis-refresh",
        type=float,
        metavar="SECONDS",
        help="seconds between key polls, the longest an instance lags the fleet's keys; "
        "shorter than the rotation period (default 5)",
    )
    fleet.add_argument(
        "--redis-timeout-ms",
        type=float,
        metavar="MS",
        help="the longest a handshake waits for Redis on a local session miss, then it is "
        "a full handshake (default 5)",
    )
    fleet.add_argument(
        "--redis-master-key-file",
        metavar="FILE",
        help="seal keys and sessions in Redis under the fleet's master key, read from FILE "
        "(64 hex digits or base64; mode 0600); make one with python -c 'import "
        "tlsresume.redis as r; print(r.generate_master_key())'",
    )
    fleet.add_argument(
        "--redis-local-rotation",
        action="store_true",
        help="while Redis is unreachable, rotate the ticket keys locally (default: keep "
        "the current key until Redis is back)",
    )
    p.set_defaults(func=_cmd_serve)


def _cmd_serve(args: argparse.Namespace) -> int:
    from tlsresume.serve import ServerConfig, run

    config = ServerConfig(
        cert=args.cert,
        key=args.key,
        host=args.host,
        port=args.port,
        workers=args.workers,
        spawn=args.spawn,
        share=args.share,
        tickets=args.tickets,
        session_cache=args.session_cache,
        single_use=args.single_use,
        rotate=args.rotate,
        ciphers=args.ciphers,
        tls_max=args.tls_max,
        threads=args.threads,
        log_level="DEBUG" if args.verbose else "WARNING",
        redis=_redis_url(args.redis),
        redis_name=args.redis_name,
        redis_refresh=args.redis_refresh,
        redis_timeout=args.redis_timeout_ms / 1000 if args.redis_timeout_ms is not None else None,
        redis_master_key_file=args.redis_master_key_file,
        redis_local_rotation=args.redis_local_rotation,
    )
    try:
        config.validate()
    except ValueError as exc:
        return _fail(str(exc), EXIT_USAGE)
    return run(config)


# --------------------------------------------------------------------------------------
# check
# --------------------------------------------------------------------------------------


#: Where `check` finds the session cache file's key when --cache-key-file is not given.
_CACHE_KEY_ENV = "TLSRESUME_CACHE_KEY"


def _add_check(sub: Any) -> None:
    p = sub.add_parser(
        "check",
        help="connect n times as a resuming client and report what resumed",
        description=(
            "Connect n times through tlsresume's client session cache, which offers "
            "each connection what the server gave the earlier ones (TLS 1.3 tickets "
            "each once), and report how many reconnections resumed (by ticket or by "
            "session ID), the ticket lifetime hint, and how many distinct ticket key "
            "names the server handed out: more than one means its workers do not share "
            "ticket keys. With --save and --load the cache outlives the run, so the "
            "first connection of the next run resumes too."
        ),
    )
    p.add_argument("target", metavar="HOST:PORT", help="server to check ([::1]:443 for IPv6)")
    p.add_argument("-n", type=int, default=20, help="connections to make (default 20)")
    version = p.add_mutually_exclusive_group()
    version.add_argument(
        "--tls1.2", dest="tls_version", action="store_const", const="1.2", help="TLS 1.2 only"
    )
    version.add_argument(
        "--tls1.3", dest="tls_version", action="store_const", const="1.3", help="TLS 1.3 only"
    )
    trust = p.add_mutually_exclusive_group()
    trust.add_argument(
        "--insecure", "-k", action="store_true", help="do not verify the certificate"
    )
    trust.add_argument("--cafile", metavar="F", help="PEM file of certificates to trust")
    p.add_argument("--servername", metavar="S", help="SNI and name to verify (default HOST)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per connection (10)")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.add_argument(
        "--no-server-stats",
        dest="server_stats",
        action="store_false",
        help="do not ask the server for its counters (by default check fetches "
        "/.well-known/tlsresume/stats before and after, which a 'tlsresume serve' answers; "
        "other servers are left alone after one unanswered request)",
    )
    cache = p.add_argument_group(
        "session cache file",
        "The file holds each session's master secret: whoever reads it can decrypt "
        "those sessions' traffic, and whoever can write it can make this client resume "
        "a session they know, i.e. impersonate the server without a certificate. So it "
        "is sealed (AES-256-GCM) under a 32-byte key kept elsewhere: --cache-key-file, "
        f"or the environment variable {_CACHE_KEY_ENV} (64 hex digits).",
    )
    cache.add_argument(
        "--load",
        metavar="PATH",
        help="load the cache before the first connection (then all n connections may "
        "resume); a bad file or the wrong key is a warning, not an error",
    )
    cache.add_argument(
        "--save",
        metavar="PATH",
        help="save the cache after the last connection (atomically, mode 0600); may be "
        "the --load file",
    )
    cache.add_argument(
        "--cache-key-file",
        metavar="FILE",
        help=f"the key: 32 bytes or 64 hex digits (overrides {_CACHE_KEY_ENV}); make one "
        "with python -c 'import os; print(os.urandom(32).hex())'",
    )
    cache.add_argument(
        "--insecure-plaintext-cache",
        action="store_true",
        help="without a key, read and write the file unencrypted: anyone who can read it "
        "gets the master secrets, anyone who can write it can impersonate the servers in it",
    )
    p.set_defaults(func=_cmd_check)


def _check_cache_key(args: argparse.Namespace) -> bytes | None:
    """The key for --save/--load: --cache-key-file, else the environment; ``None``
    only with --insecure-plaintext-cache.

    Raises:
        ValueError: the key cannot be read, or there is none and no plaintext opt-in.
    """
    from tlsresume.client import read_cache_key

    if args.cache_key_file is not None:
        try:
            return read_cache_key(args.cache_key_file)
        except OSError as exc:
            raise ValueError(f"cannot read --cache-key-file: {exc}") from None
    text = os.environ.get(_CACHE_KEY_ENV, "").strip()
    if text:
        try:
            key = bytes.fromhex(text)
        except ValueError:
            key = b""
        if len(key) != 32:
            raise ValueError(f"{_CACHE_KEY_ENV} must be 64 hex digits (a 32-byte key)")
        return key
    if not args.insecure_plaintext_cache:
        raise ValueError(
            "--save/--load need a key (--cache-key-file or "
            f"{_CACHE_KEY_ENV}): the file holds the sessions' master secrets; "
            "--insecure-plaintext-cache writes them unencrypted, knowingly"
        )
    return None


def _cmd_check(args: argparse.Namespace) -> int:
    from tlsresume.check import parse_hostport, run_check

    try:
        host, port = parse_hostport(args.target)
        if args.n < 1:
            raise ValueError(f"-n must be at least 1, not {args.n}")
        key = _check_cache_key(args) if (args.load or args.save) else None
    except ValueError as exc:
        return _fail(str(exc), EXIT_USAGE)
    # A cache file that cannot be loaded is logged as a warning (the check goes on);
    # show it as this command's own warning, on stderr, for the run only.
    import logging

    warnings = logging.StreamHandler(sys.stderr)
    warnings.setLevel(logging.WARNING)
    warnings.setFormatter(logging.Formatter(f"{PROG}: warning: %(message)s"))
    client_log = logging.getLogger("tlsresume.client")
    client_log.addHandler(warnings)
    try:
        result = run_check(
            host,
            port,
            args.n,
            tls_version=args.tls_version,
            cafile=args.cafile,
            insecure=args.insecure,
            servername=args.servername,
            timeout=args.timeout,
            server_stats=args.server_stats,
            load=args.load,
            save=args.save,
            cache_key=key,
            insecure_plaintext_cache=args.insecure_plaintext_cache,
        )
    finally:
        client_log.removeHandler(warnings)
    if args.json:
        print(result.to_json())
    else:
        print(result.summary())
        first_error = next((a.error for a in result.attempts if a.error), None)
        if first_error:
            print(f"first error      {first_error}")
    if result.cache_error:
        return _fail(f"session cache not saved: {result.cache_error}")
    return EXIT_FAIL if result.errors == result.n else EXIT_OK


# --------------------------------------------------------------------------------------
# stats
# --------------------------------------------------------------------------------------


def _redis_url(value: str | None) -> str | None:
    """``--redis env`` takes the URL from ``$TLSRESUME_REDIS_URL``."""
    if value != "env":
        return value
    url = os.environ.get("TLSRESUME_REDIS_URL", "").strip()
    if not url:
        raise SystemExit(f"{PROG} serve: --redis env: set TLSRESUME_REDIS_URL to the Redis URL")
    return url


def _add_stats(sub: Any) -> None:
    p = sub.add_parser(
        "stats",
        help="show the counters of the key rings and session stores on this machine",
        description=(
            "List this user's tlsresume regions in /dev/shm (key rings and session "
            "stores, e.g. those of a running 'tlsresume serve', named serve-<pid>), "
            "attach to each and print its counters, which are totals over every "
            "process using it. Regions that cannot be attached are skipped with a note."
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
    form.add_argument("--prometheus", action="store_true",
                      help="print the counters in Prometheus text exposition format")
    form.add_argument("--cleanup", action="store_true",
                      help="remove the regions of 'tlsresume serve' masters that are no "
                      "longer running (left behind by SIGKILL)")
    p.set_defaults(func=_cmd_stats)


def _cmd_stats(args: argparse.Namespace) -> int:
    import json

    from tlsresume.errors import TLSResumeError

    if args.cleanup:
        from tlsresume.stats import remove_leftovers

        removed = remove_leftovers()
        for region in removed:
            print(f"removed {region.path} (its server is gone)")
        if not removed:
            print("no leftover regions")
        return EXIT_OK
    try:
        from tlsresume.stats import collect, render_text

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
        return EXIT_FAIL
    return EXIT_OK


# --------------------------------------------------------------------------------------
# demo
# --------------------------------------------------------------------------------------


@dataclass
class DemoResult:
    """What ``tlsresume demo`` measured.

    Attributes:
        workers: workers per server.
        n: connections per check.
        checks: ``{"1.2": {"no-share": CheckResult, "shared": CheckResult}, "1.3": ...}``
        ring_stats: the shared server's last ring statistics line, if it printed one.
    """

    workers: int
    n: int
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    ring_stats: str | None = None


class _ServeProcess:
    """A ``tlsresume serve`` child process and the port it listens on."""

    def __init__(self, extra: Sequence[str], label: str) -> None:
        from tlsresume.serve import child_env, die_with_parent

        self.label = label
        self.stderr: IO[bytes] = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tlsresume", "serve", "--port", "0", *extra],
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            stdin=subprocess.DEVNULL,
            env=child_env(),
            # If this process dies without cleaning up (SIGKILL), the server gets
            # SIGTERM from the kernel and stops its workers: no strays.
            preexec_fn=die_with_parent,
        )
        self.port = 0
        self.host = ""
        self._buffer = b""

    def wait_listening(self, timeout: float) -> None:
        """Read stdout until the listening line; raise with the server's stderr if not."""
        from tlsresume.serve import parse_listening_line

        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while time.monotonic() < deadline:
            readable, _, _ = select.select([fd], [], [], 0.1)
            if readable:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                self._buffer += chunk
                for line in self._buffer.decode("utf-8", "replace").splitlines():
                    info = parse_listening_line(line)
                    if info is not None:
                        self.host, self.port = info.host, info.port
                        return
            elif self.proc.poll() is not None:
                break
        raise RuntimeError(f"the {self.label} server did not start: {self.error_text()}")

    def error_text(self) -> str:
        self.stderr.seek(0)
        text = self.stderr.read().decode("utf-8", "replace").strip()
        return text.splitlines()[-1] if text else f"exit code {self.proc.poll()}"

    def stop(self, timeout: float = 10.0) -> str:
        """SIGTERM the master (it stops its workers); return what it printed after."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        self.stderr.close()
        return (self._buffer + (out or b"")).decode("utf-8", "replace")


def run_demo(
    *,
    workers: int = 4,
    n: int = 20,
    versions: Sequence[str] = ("1.2", "1.3"),
    progress: Callable[[str], None] | None = None,
) -> DemoResult:
    """Start two pre-fork servers (without and with sharing) and check both.

    Both servers run on loopback with a throwaway certificate and free ports, and
    are stopped before this returns, also on error or Ctrl-C.

    Args:
        workers: workers per server.
        n: connections per check.
        versions: TLS versions to check separately.
        progress: called with a short status line as each step starts.

    Returns:
        The check results per version and server.

    Raises:
        RuntimeError: a server did not start (its error is in the message).
    """
    from tlsresume.check import run_check
    from tlsresume.selfsigned import make_self_signed

    say = progress or (lambda _msg: None)
    cert = make_self_signed()
    servers: dict[str, _ServeProcess] = {}
    result = DemoResult(workers=workers, n=n)
    try:
        common = ["--workers", str(workers), "--cert", str(cert.cert), "--key", str(cert.key)]
        say(f"starting two servers with {workers} workers each on 127.0.0.1")
        servers["no-share"] = _ServeProcess([*common, "--no-share"], "--no-share")
        servers["shared"] = _ServeProcess(common, "shared")
        for server in servers.values():
            server.wait_listening(timeout=30.0)
        for version in versions:
            result.checks[version] = {}
            for label, server in servers.items():
                say(f"checking TLS {version} against the {label} server (port {server.port})")
                result.checks[version][label] = run_check(
                    server.host,
                    server.port,
                    n,
                    tls_version=version,
                    cafile=str(cert.cert),
                    timeout=10.0,
                )
    finally:
        for label, server in servers.items():
            output = server.stop()
            if label == "shared":
                stats = [line for line in output.splitlines() if "ring stats:" in line]
                if stats:
                    result.ring_stats = stats[-1].split("ring stats:", 1)[1].strip()
        cert.cleanup()
    return result


def format_demo(result: DemoResult) -> str:
    """The side-by-side table ``tlsresume demo`` prints."""
    left, right = "no-share", "shared"
    col, lead = 18, 9 + 25  # value columns; "TLS 1.x  " + row label
    rows = [
        f"{result.workers} workers per server, each building its own SSLContext; "
        f"{result.n} connections per check, each offering the previous session",
        "",
        f"{'':<{lead}}{'without sharing':<{col}}{'with tlsresume'}",
    ]

    def names(r: Any) -> str:
        return "unknown" if r.key_names is None else str(len(r.key_names))

    for version, pair in result.checks.items():
        a, b = pair[left], pair[right]
        table = [
            ("resumed", f"{a.resumed}/{a.possible}", f"{b.resumed}/{b.possible}"),
            (
                "  by ticket / session ID",
                f"{a.by_ticket} / {a.by_session_id}",
                f"{b.by_ticket} / {b.by_session_id}",
            ),
            ("ticket key names", names(a), names(b)),
            ("workers answering", str(len(a.workers)), str(len(b.workers))),
        ]
        if a.errors or b.errors:
            table.append(("failed connections", str(a.errors), str(b.errors)))
        for i, (label, x, y) in enumerate(table):
            prefix = f"TLS {version}" if i == 0 else ""
            rows.append(f"{prefix:<9}{label:<25}{x:<{col}}{y}")
        rows.append("")
    for version, pair in result.checks.items():
        rows.append(f"TLS {version} without sharing: {pair[left].verdict}")
        rows.append(f"TLS {version} with tlsresume:  {pair[right].verdict}")
    if result.ring_stats:
        rows.append(f"shared ring stats: {result.ring_stats}")
    return "\n".join(rows)


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
    from tlsresume import benchmark

    return int(benchmark.main(list(args.rest)))


_SUBCOMMANDS: tuple[Callable[[Any], None], ...] = (
    _add_keygen,
    _add_serve,
    _add_check,
    _add_stats,
    _add_bench,
    _add_demo,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``tlsresume`` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="TLS session resumption for Python servers with several worker processes.",
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
        # bench has its own parser (tlsresume.benchmark); hand it everything after.
        from tlsresume import benchmark

        return int(benchmark.main(args_list[1:]))
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
