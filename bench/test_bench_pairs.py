"""Micro benchmarks: handshake pairs in C per configuration, and ring operations.

They record, they never assert timings. Server time per pair goes to extra_info so
the JSON output (--benchmark-json) carries the figure the issue's ratio is about.
"""

from __future__ import annotations

import pytest
from pairs import Certs, configurations, run_pairs

import tlsresume

CONFIGS = configurations()
PAIRS = 100


@pytest.mark.parametrize("mode", ["full", "resumed"])
@pytest.mark.parametrize("version", ["tls1.2", "tls1.3"])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_handshake_pairs(benchmark, certs: Certs, config: str, version: str, mode: str) -> None:
    """PAIRS in-memory handshake pairs with this server configuration."""
    server = certs.server(version, CONFIGS[config])
    client = certs.client(version)
    stats = benchmark.pedantic(
        run_pairs, args=(server, client, PAIRS, mode == "resumed"), rounds=8, warmup_rounds=1
    )
    benchmark.extra_info["server_us_per_pair"] = round(stats.server_us_per_pair, 2)
    benchmark.extra_info["resumed"] = stats.resumed


def test_ring_rotate(benchmark) -> None:
    """One forced rotation: lock, draw a key, publish both copies."""
    with tlsresume.TicketKeyRing(rotation_period=1, acceptance_window=14) as ring:
        benchmark(ring.rotate)


def test_ring_stats(benchmark) -> None:
    """Reading the aggregated counters (what a metrics scrape costs)."""
    with tlsresume.TicketKeyRing() as ring:
        benchmark(ring.stats)
