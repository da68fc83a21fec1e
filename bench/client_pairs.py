"""Resumed in-memory handshake pairs from Python: the drop-in client context versus
plain CPython reusing ``SSLSession`` objects, in the same run.

Client and server run in one thread joined by MemoryBIOs, driven from Python the
same way for every variant; only the client side differs:

* ``plain-session``: ``ssl`` as it is; after each connection the client reads
  ``obj.session`` and passes it to the next ``wrap_bio(session=...)`` (what a
  client must do to follow renewed TLS 1.2 tickets and fresh TLS 1.3 tickets).
* ``plain-first``: ``ssl``, reusing the first connection's session every time
  (no getter in the loop; TLS 1.3 tickets are then used many times).
* ``tlsresume``: ``tlsresume.ClientContext`` with a cache: no session handling in
  the loop at all; the C core sets a cached session on each new connection.
* ``full``: no resumption (``ssl`` without a session), for scale.
* ``c-loop``: the same resumed pairs in C (``tlsr_bench_pairs``, no Python, no
  SNI): the limit.

Each pair ends with one byte of application data from the server, read by the
client (TLS 1.3 tickets arrive with it), and the objects are dropped without
close_notify, as most Python code does.

Run: ``python bench/client_pairs.py`` (``--pairs``, ``--rounds``, ``--json``).
Timings are ratios within one run (docs/design.md, "How we measure"); nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import ssl
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pairs import VERSIONS, Certs, run_pairs  # noqa: E402

import tlsresume  # noqa: E402

VARIANTS = ("full", "plain-session", "plain-first", "tlsresume", "c-loop")


def _pump(
    client: ssl.SSLObject,
    server: ssl.SSLObject,
    c_in: ssl.MemoryBIO,
    c_out: ssl.MemoryBIO,
    s_in: ssl.MemoryBIO,
    s_out: ssl.MemoryBIO,
) -> None:
    client_done = server_done = False
    for _ in range(10):
        if not client_done:
            try:
                client.do_handshake()
                client_done = True
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        if not server_done:
            try:
                server.do_handshake()
                server_done = True
            except ssl.SSLWantReadError:
                pass
        c_in.write(s_out.read())
        if client_done and server_done:
            return
    raise RuntimeError("handshake did not complete")


def one_pair(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext, session: ssl.SSLSession | None
) -> ssl.SSLObject:
    """One handshake pair plus one byte server -> client; returns the client."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="localhost", session=session)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    _pump(client, server, c_in, c_out, s_in, s_out)
    server.write(b"x")
    c_in.write(s_out.read())
    client.read(1)
    return client


def run_variant(variant: str, certs: Certs, version: str, n: int) -> tuple[float, int]:
    """n pairs after one warm-up pair; returns (pairs per second, resumed count)."""
    server_ctx = certs.server(version)
    if variant == "c-loop":
        stats = run_pairs(server_ctx, certs.client(version), n + 1, resume=True)
        return stats.pairs_per_second, stats.resumed
    if variant == "tlsresume":
        client_ctx: ssl.SSLContext = tlsresume.ClientContext(cache=tlsresume.ClientSessionCache())
    else:
        client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    certs.ca.configure_trust(client_ctx)
    client_ctx.minimum_version = client_ctx.maximum_version = VERSIONS[version]

    first = one_pair(client_ctx, server_ctx, None)
    session = first.session if variant.startswith("plain") else None
    del first
    resumed = 0
    start = time.perf_counter()
    if variant == "plain-session":
        for _ in range(n):
            client = one_pair(client_ctx, server_ctx, session)
            resumed += client.session_reused
            session = client.session
    else:
        reuse = session if variant == "plain-first" else None
        for _ in range(n):
            client = one_pair(client_ctx, server_ctx, reuse)
            resumed += client.session_reused
    elapsed = time.perf_counter() - start
    return n / elapsed, resumed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=400, help="pairs per round (400)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, interleaved (5)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    certs = Certs()
    results: dict[str, dict[str, dict[str, float]]] = {}
    for version in VERSIONS:
        rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
        resumed: dict[str, int] = {}
        for _ in range(args.rounds):  # interleave variants so drift hits all alike
            for variant in VARIANTS:
                rate, count = run_variant(variant, certs, version, args.pairs)
                rates[variant].append(rate)
                resumed[variant] = count
        results[version] = {
            v: {
                "pairs_per_s": statistics.median(r),
                "best": max(r),
                "resumed": resumed[v] / args.pairs,
            }
            for v, r in rates.items()
        }
    info = {
        "python": sys.version.split()[0],
        "openssl": ssl.OPENSSL_VERSION,
        "pairs": args.pairs,
        "rounds": args.rounds,
        "results": results,
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(
        f"Python {info['python']}, {info['openssl']}, {args.pairs} pairs x "
        f"{args.rounds} rounds (median pairs/s)"
    )
    for version, rows in results.items():
        base = rows["plain-session"]["pairs_per_s"]
        print(f"\n{version}")
        for variant, row in rows.items():
            print(
                f"  {variant:14} {row['pairs_per_s']:8.0f}/s  resumed {row['resumed']:4.0%}"
                f"  x{row['pairs_per_s'] / base:4.2f} vs plain-session"
                f"  x{row['pairs_per_s'] / rows['plain-first']['pairs_per_s']:4.2f}"
                " vs plain-first"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
