"""``tlsresume serve``'s options and their translation into a
:class:`~tlsresume.tools.serve.ServerConfig`."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import EXIT_USAGE, _fail, _redis_url

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
            "the workers share one tlsresume ticket key ring and a 10M session store "
            "(resumption by session ID, TLS 1.3 stateful tickets; --session-cache sizes "
            "it, --no-session-cache drops it); "
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
    cache = p.add_mutually_exclusive_group()
    cache.add_argument(
        "--session-cache",
        metavar="SIZE",
        help="share a session store of SIZE bytes (e.g. 1M, 10M; about 4,000 sessions "
        "per MB) for resumption by session ID and TLS 1.3 stateful tickets (default "
        "10M: curl over TLS 1.2 resumes by session ID only)",
    )
    cache.add_argument(
        "--no-session-cache",
        dest="session_cache",
        action="store_const",
        const=False,
        help="share no session store: only ticket keys (clients that resume by session "
        "ID resume only on the worker that made the session)",
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
    keys = p.add_argument_group(
        "one key file for a mixed fleet",
        "Serve with the ticket keys of a key file that other servers (nginx, HAProxy, "
        "other tlsresume instances) read too, and with their session ID context, so "
        "each resumes the others' sessions. See docs/interop.md.",
    )
    keys.add_argument(
        "--key-file",
        metavar="PATH",
        help="read the ticket keys from PATH instead of a rotating ring; the file is "
        "checked every --key-poll seconds and reloaded when it changes (rewrite it to "
        "rotate; a file that does not parse keeps the old keys and is logged)",
    )
    keys.add_argument(
        "--key-poll",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="seconds between checks of --key-file (default 5)",
    )
    keys.add_argument(
        "--key-format",
        metavar="F",
        help="the key file's format: openssl80, nginx48, nginx80 or haproxy",
    )
    keys.add_argument(
        "--session-id-context",
        metavar="VALUE",
        help="the session ID context to set instead of tlsresume's policy digest: "
        "'haproxy' (HAProxy's), 'nginx' (nginx's for a server {} block with --cert), any "
        "other text, or hex:DIGITS; only for servers that admit the same clients",
    )
    p.add_argument("--ciphers", metavar="STRING", help="OpenSSL cipher string (TLS 1.2)")
    p.add_argument("--tls-max", choices=("1.2", "1.3"), help="highest TLS version to offer")
    p.add_argument(
        "--threads",
        type=int,
        default=8,
        metavar="N",
        help="connection threads per worker for slow clients (8): the accepting thread "
        "serves clients that keep up itself and hands the others to these",
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
        "?ssl_ca_certs=CA.pem), unix://PATH, redis+sentinel://HOST:PORT[,HOST:PORT]/SERVICE "
        "or redis+cluster://HOST:PORT[,HOST:PORT]; 'env' reads the URL from $TLSRESUME_REDIS_URL "
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
        "--redis-new-master-key",
        action="store_true",
        help="with --redis-master-key-file: make FILE with a fresh master key (mode 0600) "
        "if it does not exist yet, for a first try; copy it to every instance",
    )
    fleet.add_argument(
        "--redis-insecure-unsealed",
        action="store_true",
        help="keep keys and sessions in Redis in the clear, knowingly: whoever reads Redis "
        "decrypts every ticket and session (without it, --redis needs a master key)",
    )
    fleet.add_argument(
        "--redis-local-rotation",
        action="store_true",
        help="while Redis is unreachable, rotate the ticket keys locally (default: keep "
        "the current key until Redis is back)",
    )
    p.set_defaults(func=_cmd_serve)


def _cmd_serve(args: argparse.Namespace) -> int:
    from tlsresume.tools.serve import ServerConfig, run

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
        key_file=args.key_file,
        key_format=args.key_format,
        key_poll=args.key_poll,
        session_id_context=args.session_id_context,
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
        redis_insecure_unsealed=args.redis_insecure_unsealed,
        redis_new_master_key=args.redis_new_master_key,
    )
    try:
        config.validate()
    except ValueError as exc:
        return _fail(str(exc), EXIT_USAGE)
    return run(config)
