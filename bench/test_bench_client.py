"""Micro benchmarks for the client session cache: resumed in-memory handshake pairs
driven from Python (drop-in context vs plain ssl session reuse), and the cost of
wrapping one connection. They record, they never assert timings."""

from __future__ import annotations

import ssl

import pytest
from client_pairs import VARIANTS, run_variant
from pairs import Certs

import tlsresume

PAIRS = 100


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "c-loop"])
@pytest.mark.parametrize("version", ["tls1.2", "tls1.3"])
def test_client_pairs(benchmark, certs: Certs, version: str, variant: str) -> None:
    """PAIRS handshake pairs from Python with this client variant."""
    rate, resumed = benchmark.pedantic(
        run_variant, args=(variant, certs, version, PAIRS), rounds=5, warmup_rounds=1
    )
    benchmark.extra_info["pairs_per_s"] = round(rate)
    benchmark.extra_info["resumed"] = resumed


@pytest.mark.parametrize("cached", [False, True], ids=["plain", "tlsresume"])
def test_wrap_bio(benchmark, certs: Certs, cached: bool) -> None:
    """One client wrap_bio: what the cache adds per connection (register + lookup)."""
    ctx = (
        tlsresume.ClientContext(cache=tlsresume.ClientSessionCache())
        if cached
        else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    )
    certs.ca.configure_trust(ctx)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    benchmark(ctx.wrap_bio, incoming, outgoing, server_hostname="localhost")


def test_cache_stats(benchmark) -> None:
    """Reading the cache's counters (what a metrics scrape costs)."""
    benchmark(tlsresume.ClientSessionCache().stats)
