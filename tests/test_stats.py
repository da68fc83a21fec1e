"""``tlsresume stats``: finding this user's regions in its region directory, reading their counters
(from a live ``serve`` and from regions made here), skipping what cannot be attached,
and the text and JSON renderings."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import tlsresume
from tlsresume.regions import (
    collect,
    counter_delta,
    list_regions,
    parse_region_filename,
    region_path,
    serve_owner,
)
from tlsresume.tools.stats import render_text

from .support import (
    ServeProcess,
    child_env,
    client_context,
    https_get,
    resuming_client,
    tlsresume_cmd,
)


def _stats_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        tlsresume_cmd("stats", *args), capture_output=True, text=True, timeout=30, env=child_env()
    )


@pytest.fixture
def name() -> Iterator[str]:
    """A unique region name; whatever the test leaves under it is removed."""
    value = f"test-stats-{uuid.uuid4().hex[:10]}"
    yield value
    for kind in ("ring", "store"):
        Path(region_path(kind, value)).unlink(missing_ok=True)


# --------------------------------------------------------------------------------------
# Pure pieces
# --------------------------------------------------------------------------------------


def test_parse_region_filename() -> None:
    """Only tlsresume.ring.NAME and tlsresume.store.NAME are regions; dots stay in NAME."""
    assert parse_region_filename("tlsresume.ring.serve-12") == ("ring", "serve-12")
    assert parse_region_filename("tlsresume.store.a.b") == ("store", "a.b")
    for other in ("tlsresume.ring.", "tlsresume.client.x", "sem.x", "tlsresume.rings.x"):
        assert parse_region_filename(other) is None


def test_counter_delta_subtracts_counters_and_keeps_gauges() -> None:
    """Counters are differences; gauges (entries, capacity, keys...) are the later value."""
    before = {"lookups": 5, "hits": 4, "entries": 10, "capacity": 100}
    after = {"lookups": 9, "hits": 8, "entries": 12, "capacity": 100, "consumed": 2}
    assert counter_delta("store", before, after) == {
        "lookups": 4,
        "hits": 4,
        "entries": 12,
        "capacity": 100,
        "consumed": 2,
    }
    assert counter_delta("ring", {"keys": 2, "rotations": 1}, {"keys": 3, "rotations": 1}) == {
        "keys": 3,
        "rotations": 0,
    }


def test_serve_owner_points_out_leftovers() -> None:
    """serve-<pid> names map to their master; a pid that runs no tlsresume is 'not
    running' (a leftover), other names are not serve's."""
    assert serve_owner("my-ring") is None
    dead = serve_owner("serve-999999999")
    assert dead == {"pid": 999999999, "running": False}
    # This test process is not a tlsresume command line (pytest), the control:
    mine = serve_owner(f"serve-{os.getpid()}-ab12")
    assert mine is not None and mine["pid"] == os.getpid()


def test_render_text_tables_and_notes() -> None:
    """One table per kind with a column per region, derived rates, and notes for
    skipped and missing regions."""
    report = {
        "shm_dir": "/dev/shm",
        "regions": [
            {
                "kind": "ring",
                "name": "a",
                "stats": {"tickets_issued": 4, "resumed_current": 3, "rejected_unknown": 1},
                "settings": {"rotation_period": 3600.0},
                "server": {"pid": 42, "running": False},
            },
            {
                "kind": "store",
                "name": "a",
                "stats": {"lookups": 4, "hits": 3},
                "settings": {"single_use": True},
                "server": None,
            },
            {
                "kind": "store",
                "name": "bb",
                "stats": {"lookups": 0, "hits": 0},
                "settings": {"single_use": False},
                "server": None,
            },
        ],
        "skipped": [{"kind": "store", "name": "bad", "path": "p", "reason": "corrupt"}],
        "missing": ["nope"],
    }
    text = render_text(report)
    lines = text.splitlines()
    assert lines[0].startswith("key rings") and lines[0].rstrip().endswith("a")
    assert any(line.split() == ["resumed_rate", "75.0%"] for line in lines)
    assert any("NOT RUNNING" in line for line in lines)
    store_header = next(line for line in lines if line.startswith("session stores"))
    assert store_header.split()[-2:] == ["a", "bb"]
    assert any(line.split() == ["hit_rate", "75.0%", "-"] for line in lines)
    assert any(line.split() == ["single_use", "yes", "no"] for line in lines)
    assert "UNREADABLE store bad: corrupt" in text
    assert "not found: nope" in text


def test_render_text_when_nothing_is_there() -> None:
    """No regions is a plain sentence, not an empty table."""
    text = render_text({"shm_dir": "/x", "regions": [], "skipped": [], "missing": []})
    assert text == "no tlsresume regions of this user in /x"


def test_list_regions_only_this_users_regular_files(tmp_path: Path) -> None:
    """Listing keeps tlsresume regions owned by the given user and ignores other
    files, other owners and directories."""
    (tmp_path / "tlsresume.ring.r1").write_bytes(b"x")
    (tmp_path / "tlsresume.store.s1").write_bytes(b"xy")
    (tmp_path / "tlsresume.store.dir").mkdir()
    (tmp_path / "unrelated").write_bytes(b"x")
    found = list_regions(str(tmp_path))
    assert [(r.kind, r.name, r.size) for r in found] == [("ring", "r1", 1), ("store", "s1", 2)]
    assert list_regions(str(tmp_path), uid=os.geteuid() + 12345) == []
    assert list_regions(str(tmp_path / "missing")) == []


# --------------------------------------------------------------------------------------
# Real regions
# --------------------------------------------------------------------------------------


def test_collect_reads_a_ring_and_a_store_by_name(name: str) -> None:
    """collect() attaches to a named ring and store and reads the counters another
    handle moved; the region itself is unchanged by reading."""
    ring = tlsresume.TicketKeyRing(name=name)
    store = tlsresume.SessionStore("64K", name=name, single_use=True)
    try:
        now = time.time()
        store.put(b"\x01" * 32, b"session", expires=now + 60, now=now)
        assert store.get(b"\x01" * 32, now=now) is not None
        assert store.get(b"\x02" * 32, now=now) is None
        report = collect([name])
        assert report["missing"] == [] and report["skipped"] == []
        kinds = {r["kind"]: r for r in report["regions"]}
        assert set(kinds) == {"ring", "store"}
        assert kinds["store"]["stats"]["lookups"] == 2
        assert kinds["store"]["stats"]["hits"] == 1 and kinds["store"]["stats"]["misses"] == 1
        assert kinds["store"]["settings"]["single_use"] is True
        assert kinds["ring"]["stats"]["keys"] >= 1
        assert kinds["ring"]["path"] == region_path("ring", name)
        assert kinds["ring"]["server"] is None
        assert store.stats()["lookups"] == 2  # reading changed nothing
        # One kind only, by the file name as the region directory lists it:
        only = collect([f"tlsresume.store.{name}"])
        assert [r["kind"] for r in only["regions"]] == ["store"]
        # Everything: ours is among them.
        assert any(r["name"] == name for r in collect()["regions"])
    finally:
        ring.unlink()
        store.unlink()
        ring.close()
        store.close()


def test_collect_skips_what_it_cannot_attach(name: str) -> None:
    """A region file that is not a valid region (garbage, mode 0600) is skipped with a
    reason; a name that does not exist is reported missing; nothing raises."""
    path = Path(region_path("store", name))
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(b"garbage" * 100)
    report = collect([name, "test-stats-no-such-region"])
    assert report["regions"] == []
    assert [(s["kind"], s["name"]) for s in report["skipped"]] == [("store", name)]
    assert report["skipped"][0]["reason"]
    assert report["missing"] == ["test-stats-no-such-region"]
    assert path.exists()  # reading never repairs or removes


# --------------------------------------------------------------------------------------
# Against a running serve, through the command line
# --------------------------------------------------------------------------------------


@pytest.mark.interop
def test_stats_command_shows_a_running_serve(serve, server_cert) -> None:  # type: ignore[no-untyped-def]
    """`tlsresume stats` finds a running serve's ring and store and shows counters
    that moved with real resumptions, in text and in parseable JSON."""
    server: ServeProcess = serve("--workers", "3", "--session-cache", "1M")
    region = server.ring_name
    assert region is not None and region == server.store_name
    # Tickets: TLS 1.3 resumptions move the ring.
    resumed, *_ = resuming_client(
        server.host, server.port, client_context(server_cert.cafile, "1.3"), 5
    )
    assert resumed == 5
    # Session IDs: a TLS 1.2 client that sends no ticket moves the store.
    import ssl

    ctx = client_context(server_cert.cafile, "1.2")
    ctx.options |= ssl.OP_NO_TICKET
    resumed, *_ = resuming_client(server.host, server.port, ctx, 5)
    assert resumed == 5

    proc = _stats_cli(region, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    kinds = {r["kind"]: r for r in report["regions"]}
    assert set(kinds) == {"ring", "store"}
    assert kinds["ring"]["stats"]["resumed_current"] >= 5
    assert kinds["store"]["stats"]["hits"] >= 5
    assert kinds["store"]["server"] == {"pid": server.proc.pid, "running": True}

    text = _stats_cli(region)
    assert text.returncode == 0, text.stderr
    assert "key rings" in text.stdout and "session stores" in text.stdout
    hits = next(line for line in text.stdout.splitlines() if line.split()[:1] == ["hits"])
    assert int(hits.split()[1]) >= 5
    assert f"{server.proc.pid} running" in text.stdout

    # Listing everything includes this server too.
    listing = _stats_cli("--json")
    assert any(r["name"] == region for r in json.loads(listing.stdout)["regions"])

    # After the server stops its regions are gone: the command says so and exits 1.
    server.stop()
    gone = _stats_cli(region)
    assert gone.returncode == 1
    assert f"not found: {region}" in gone.stdout


def test_stats_url_and_stats_command_agree(serve, server_cert) -> None:  # type: ignore[no-untyped-def]
    """The counters served at the stats URL are the ones `tlsresume stats` reads
    from shared memory (same region, same totals)."""
    server = serve("--workers", "2", "--session-cache", "1M", "--no-tickets")
    request = b"GET /.well-known/tlsresume/stats HTTP/1.0\r\n\r\n"
    r = https_get(server.host, server.port, client_context(server_cert.cafile), request=request)
    served = json.loads(r.body)["store"]
    # The stats request itself stored its session: the totals are stable from here on.
    report = collect([f"tlsresume.store.{server.store_name}"])
    read = report["regions"][0]
    assert read["name"] == served["name"]
    assert read["stats"]["lookups"] == served["stats"]["lookups"]
    assert read["stats"]["stores"] >= served["stats"]["stores"] >= 1
