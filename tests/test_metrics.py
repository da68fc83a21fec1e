"""Metrics export: Prometheus text that parses, and counters that move with handshakes."""

from __future__ import annotations

import ssl

import pytest
import trustme
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import tlsresume
from tlsresume import metrics

from .handshake import memory_pair, server_context


def samples(text: str) -> dict[tuple[str, str], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, next(iter(sample.labels.values()), ""))] = sample.value
    return out


@pytest.fixture
def client(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(ctx)
    return ctx


def test_text_parses_and_counters_move(ca, client) -> None:
    """The rendered text parses with prometheus_client's parser; resumption moves it."""
    cert = ca.issue_cert("localhost")
    with tlsresume.TicketKeyRing() as ring, tlsresume.SessionStore("1M") as store:
        ctx = tlsresume.install(server_context(cert), ring, session_cache=store)
        sources = {"rings": {"web": ring}, "stores": {"web": store}}
        before = samples(metrics.render_prometheus(metrics.snapshot(**sources)))
        session, _ = memory_pair(ctx, client)
        assert memory_pair(ctx, client, session)[1]
        after = samples(metrics.render_prometheus(metrics.snapshot(**sources)))
        key = ("tlsresume_ring_resumed_current_total", "web")
        assert after[key] == before[key] + 1
        assert after[("tlsresume_ring_tickets_issued_total", "web")] > 0
        assert ("tlsresume_store_capacity", "web") in after  # a gauge


def test_collector_registers_with_prometheus_client(ca, client) -> None:
    """The optional collector exposes the same figures through a registry."""
    with tlsresume.TicketKeyRing() as ring:
        registry = CollectorRegistry()
        registry.register(metrics.Collector(rings={"api": ring}))
        ring.rotate()
        parsed = samples(generate_latest(registry).decode())
        assert parsed[("tlsresume_ring_rotations_total", "api")] == 1
        assert parsed[("tlsresume_ring_keys", "api")] == 3


def test_label_values_are_escaped() -> None:
    """Names with quotes or backslashes stay valid exposition text."""
    text = metrics.render_prometheus({"ring": {'we"ird\\name': {"rotations": 2}}})
    assert samples(text)[("tlsresume_ring_rotations_total", 'we"ird\\name')] == 2


def test_empty_snapshot_renders_nothing() -> None:
    """No sources, no lines (and no parse errors)."""
    assert metrics.render_prometheus(metrics.snapshot()) == ""


def test_stats_command_prints_prometheus_text() -> None:
    """`tlsresume stats NAME --prometheus` prints parseable text for a named region."""
    import subprocess
    import sys
    import uuid

    name = f"test-{uuid.uuid4().hex[:10]}"
    with tlsresume.TicketKeyRing(name=name) as ring:
        ring.rotate()
        try:
            out = subprocess.run([sys.executable, "-m", "tlsresume", "stats", name, "--prometheus"],
                                 capture_output=True, text=True, timeout=60)
        finally:
            ring.unlink()
    assert out.returncode == 0, out.stderr
    assert samples(out.stdout)[("tlsresume_ring_rotations_total", name)] == 1
