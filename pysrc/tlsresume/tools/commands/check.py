"""``tlsresume check``'s options, the session cache file's key, and the report."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ._common import EXIT_FAIL, EXIT_OK, EXIT_USAGE, PROG, _fail

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
    p.add_argument(
        "--against",
        metavar="HOST:PORT",
        help="another endpoint that may share this one's ticket keys or session store: "
        "offer each one's sessions to the other (TLS 1.2 and 1.3, tickets and session "
        "IDs) and report whether each accepts the other's and, if not, the likely "
        "reason (different keys, a session ID context mismatch, no shared cache); and "
        "report CRITICAL if this endpoint resumes a session the other issued to a "
        "client without a certificate while refusing such clients",
    )
    p.add_argument(
        "--require-shared",
        action="store_true",
        help="with --against: exit 1 unless each endpoint resumes the other's tickets "
        "(TLS 1.2 and 1.3), to gate a migration or a mixed pool in a script",
    )
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
    from tlsresume._clientkeys import parse_cache_key, read_cache_key

    if args.cache_key_file is not None:
        try:
            return read_cache_key(args.cache_key_file)
        except OSError as exc:
            raise ValueError(f"cannot read --cache-key-file: {exc}") from None
    text = os.environ.get(_CACHE_KEY_ENV, "").strip()
    if text:
        key = parse_cache_key(text)
        if key is None:
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
    from tlsresume.tools.check import parse_hostport, run_check
    from tlsresume.tools.pemfiles import check_cafile

    try:
        host, port = parse_hostport(args.target)
        if args.n < 1:
            raise ValueError(f"-n must be at least 1, not {args.n}")
        key = _check_cache_key(args) if (args.load or args.save) else None
        against = parse_hostport(args.against) if args.against else None
        if args.require_shared and against is None:
            raise ValueError("--require-shared needs --against HOST:PORT")
        if args.cafile is not None:
            check_cafile(args.cafile)
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
            against=against,
        )
    finally:
        client_log.removeHandler(warnings)
    critical = result.against is not None and result.against.severity == "critical"
    if result.failure is not None and not args.json and not critical:
        return _fail(result.failure)  # a CRITICAL finding is printed first, below
    crossings = None
    if against is not None:
        from tlsresume.tools.check.crossing import crossing_probe

        crossings = crossing_probe(
            (host, port),
            against,
            tls_version=args.tls_version,
            cafile=args.cafile,
            insecure=args.insecure,
            servername=args.servername,
            timeout=args.timeout,
        )
    _print_check(args, result, crossings)
    if result.failure is not None:
        _fail(result.failure)
        return EXIT_FAIL
    if result.cache_error:
        return _fail(f"session cache not saved: {result.cache_error}")
    if result.against is not None and result.against.severity == "critical":
        return EXIT_FAIL
    if crossings is not None and args.require_shared:
        from tlsresume.tools.check.crossing import accepts

        a, b = crossings[0].source, crossings[0].target
        if not (accepts(crossings, a, b) and accepts(crossings, b, a)):
            return EXIT_FAIL
    return EXIT_FAIL if result.errors == result.n else EXIT_OK


def _print_check(args: argparse.Namespace, result: Any, crossings: Any) -> None:
    from tlsresume.tools.check.crossing import crossing_report, crossings_json

    if args.json:
        import json

        out = json.loads(result.to_json())
        if crossings is not None:
            out["crossings"] = crossings_json(crossings)
        print(json.dumps(out, indent=2))
        return
    print(result.summary())
    first_error = next((a.error for a in result.attempts if a.error), None)
    if first_error:
        print(f"first error      {first_error}")
    if crossings is not None:
        print("\n".join(crossing_report(crossings)))
