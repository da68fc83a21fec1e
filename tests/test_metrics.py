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


def assert_families_well_formed(text: str) -> dict[str, str]:
    """Every family prometheus_client's parser reads has samples; counters are named
    without ``_total`` and hold only ``_total`` samples; nothing is of unknown type.

    Returns:
        ``{family name: type}``.
    """
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        assert family.samples, f"family {family.name} ({family.type}) has no samples"
        assert family.type in ("counter", "gauge"), (family.name, family.type)
        if family.type == "counter":
            assert not family.name.endswith("_total"), family.name
            assert {s.name for s in family.samples} == {family.name + "_total"}
        else:
            assert {s.name for s in family.samples} == {family.name}
        types[family.name] = family.type
    return types


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
        text = metrics.render_prometheus(metrics.snapshot(**sources))
        after = samples(text)
        types = assert_families_well_formed(text)
        assert types["tlsresume_ring_resumed_current"] == "counter"
        assert types["tlsresume_store_hits"] == "counter"
        assert types["tlsresume_store_capacity"] == "gauge"
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


def test_snapshot_takes_the_objects_themselves(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``snapshot(ring, store)`` labels unnamed objects "default" and named ones by
    their name; lists work too; a clash of labels is a ValueError with the fix."""
    import uuid

    name = f"test-metrics-{uuid.uuid4().hex[:8]}"
    with (
        tlsresume.TicketKeyRing() as ring,
        tlsresume.SessionStore("1M") as store,
        tlsresume.TicketKeyRing(name=name) as named,
    ):
        try:
            snap = metrics.snapshot(ring, store)
            assert set(snap) == {"ring", "store"}
            assert set(snap["ring"]) == {"default"} and set(snap["store"]) == {"default"}
            assert set(metrics.snapshot(rings=[ring, named])["ring"]) == {"default", name}
            assert_families_well_formed(metrics.render_prometheus(snap))
            with pytest.raises(ValueError, match="pass a dict"):
                metrics.snapshot(rings=[ring, ring])
            with pytest.raises(TypeError, match="no stats"):
                metrics.snapshot(rings=[object()])
        finally:
            named.unlink()


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
            out = subprocess.run(
                [sys.executable, "-m", "tlsresume", "stats", name, "--prometheus"],
                capture_output=True,
                text=True,
                timeout=60,
            )
        finally:
            ring.unlink()
    assert out.returncode == 0, out.stderr
    assert samples(out.stdout)[("tlsresume_ring_rotations_total", name)] == 1
    types = assert_families_well_formed(out.stdout)
    assert types["tlsresume_ring_rotations"] == "counter"
    assert types["tlsresume_ring_keys"] == "gauge"
