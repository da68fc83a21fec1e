"""In-memory handshake pairs run by the C core, for comparing server cost.

Each configuration gets server contexts built the same way; the pairs run in C
(``tlsr_bench_pairs``), so the numbers are OpenSSL's work plus tlsresume's
callbacks, without Python in the loop. Shared by the pytest-benchmark suite and
the ``ticket_cost.py`` harness.
"""

from __future__ import annotations

import ssl
import statistics
from collections.abc import Callable
from dataclasses import dataclass

import trustme

import tlsresume
from tlsresume._extra import bench, ctx_pointer

ffi, lib = bench()

VERSIONS = {"tls1.2": ssl.TLSVersion.TLSv1_2, "tls1.3": ssl.TLSVersion.TLSv1_3}


@dataclass
class PairStats:
    pairs: int
    resumed: int
    failed: int
    wall_ns: int
    server_ns: int
    client_ns: int

    @property
    def server_us_per_pair(self) -> float:
        return self.server_ns / self.pairs / 1000

    @property
    def pairs_per_second(self) -> float:
        return self.pairs / (self.wall_ns / 1e9)


class Certs:
    """One CA and one server certificate (ECDSA P-256, as most servers use now)."""

    def __init__(self) -> None:
        self.ca = trustme.CA(key_type=trustme.KeyType.ECDSA)
        self.leaf = self.ca.issue_cert("localhost", key_type=trustme.KeyType.ECDSA)

    def server(
        self, version: str, setup: Callable[[ssl.SSLContext], None] | None = None
    ) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.leaf.configure_cert(ctx)
        ctx.minimum_version = ctx.maximum_version = VERSIONS[version]
        if setup is not None:
            setup(ctx)
        return ctx

    def client(self, version: str) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.ca.configure_trust(ctx)
        ctx.check_hostname = False  # the C loop sets no SNI; the chain is still verified
        ctx.minimum_version = ctx.maximum_version = VERSIONS[version]
        return ctx


def run_pairs(server: ssl.SSLContext, client: ssl.SSLContext, n: int, resume: bool) -> PairStats:
    """n handshake pairs in C (the GIL is released for the whole loop)."""
    out = ffi.new("tlsr_bench_result *")
    rc = lib.tlsr_bench_pairs(
        ctx_pointer(ffi, server), ctx_pointer(ffi, client), n, int(resume), out
    )
    if rc < 0 or out.failed:
        raise RuntimeError(f"handshake pairs failed (rc={rc}, failed={out.failed})")
    return PairStats(out.pairs, out.resumed, out.failed, out.wall_ns, out.server_ns, out.client_ns)


def configurations() -> dict[str, Callable[[ssl.SSLContext], None] | None]:
    """Server set-ups compared: OpenSSL's own keys (the baseline), a static key
    through OpenSSL's path, and the shared ring through tlsresume's callback."""
    ring = tlsresume.TicketKeyRing()
    static = tlsresume.StaticTicketKey.generate()
    return {
        "openssl-builtin": None,
        "tlsresume-static": lambda ctx: tlsresume.install(ctx, static) and None,
        "tlsresume-ring": lambda ctx: tlsresume.install(ctx, ring) and None,
    }


def id_client(certs: Certs, version: str) -> ssl.SSLContext:
    """A client that resumes by session ID (no ticket extension)."""
    ctx = certs.client(version)
    ctx.options |= ssl.OP_NO_TICKET
    return ctx


def id_configurations() -> dict[str, Callable[[ssl.SSLContext], None] | None]:
    """Server set-ups for session-ID resumption (tickets off on the server too):
    OpenSSL's internal per-process cache (the baseline) and the shared store."""
    store = tlsresume.SessionStore("16M")

    def no_tickets(ctx: ssl.SSLContext) -> None:
        ctx.options |= ssl.OP_NO_TICKET

    def shared(ctx: ssl.SSLContext) -> None:
        no_tickets(ctx)
        tlsresume.install(ctx, session_cache=store)

    return {"openssl-cache": no_tickets, "tlsresume-store": shared}


def interleaved(
    servers: dict[str, ssl.SSLContext],
    client: ssl.SSLContext,
    *,
    rounds: int,
    pairs: int,
    resume: bool,
    baseline: str,
) -> dict[str, dict[str, float]]:
    """Run every server configuration ``rounds`` times, rotating the order each round
    so drift hits all alike; medians per configuration and the ratio to ``baseline``."""
    samples: dict[str, list[float]] = {name: [] for name in servers}
    rates: dict[str, list[float]] = {name: [] for name in servers}
    resumed: dict[str, int] = {name: 0 for name in servers}
    order = list(servers)
    run_pairs(servers[order[0]], client, 20, resume)  # warm up
    for r in range(rounds):
        shift = r % len(order)
        for name in order[shift:] + order[:shift]:
            stats = run_pairs(servers[name], client, pairs, resume)
            samples[name].append(stats.server_us_per_pair)
            rates[name].append(stats.pairs_per_second)
            resumed[name] += stats.resumed
    base = statistics.median(samples[baseline])
    return {
        name: {
            "server_us_per_pair": round(statistics.median(samples[name]), 2),
            "ratio": round(statistics.median(samples[name]) / base, 3),
            "pairs_per_s": round(statistics.median(rates[name])),
            "resumed_pct": round(100 * resumed[name] / (rounds * pairs), 1),
        }
        for name in servers
    }
