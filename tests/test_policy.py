"""The rotation and expiry rules (tlsresume.policy) as pure functions, without a
socket, redis-py or the C core; and the same rules checked step by step against a
real C ring in shared memory, so the fleet's ring in Redis and a machine's ring
cannot drift apart."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tlsresume.keys import TicketKey
from tlsresume.policy import (
    DEFAULT_ACCEPTANCE_WINDOW,
    DEFAULT_ROTATION_PERIOD,
    MAX_RETIRED,
    RING_SLOTS,
    KeyRecord,
    RingState,
    check_periods,
    encode_state,
    generation_check,
    merge_records,
    parse_state,
    prune,
    rotate_state,
    rotation_due,
    seed_state,
)

from .support import DEFAULT_TIMEOUT, env_refusing


def _state(now: float, period: float = 10.0, window: float = 20.0) -> RingState:
    return seed_state([KeyRecord(TicketKey.generate(), "current", now, now)], period, window, now)


# ---- the rules, pure ---------------------------------------------------------------


def test_seed_pre_publishes_a_next_key() -> None:
    """A ring published from local keys always has a next key."""
    state = _state(100.0)
    assert [r.role for r in state.keys] == ["current", "next"]
    with pytest.raises(ValueError, match="no current key"):
        seed_state([KeyRecord(TicketKey.generate(), "next", 1.0)], 10.0, 20.0, 1.0)


def test_rotation_is_due_after_one_period() -> None:
    """Due exactly when the current key has encrypted for a whole period."""
    state = _state(100.0, period=10.0)
    assert not rotation_due(state, 109.999)
    assert rotation_due(state, 110.0)


def test_rotate_promotes_the_published_next_key() -> None:
    """Rotation: next encrypts, current retires, a fresh next is published."""
    state = _state(100.0)
    assert state.next is not None
    old_cur, old_next, fresh = state.current.key, state.next.key, TicketKey.generate()
    new = rotate_state(state, 110.0, fresh, "node")
    roles = {r.key: r.role for r in new.keys}
    assert roles == {old_cur: "retired", old_next: "current", fresh: "next"}
    assert new.current.activated == 110.0 and new.generation == state.generation + 1
    assert not rotation_due(new, 119.0)


def test_rotate_drops_keys_past_the_window_and_fits_the_ring() -> None:
    """Retired keys leave after the acceptance window, and never overflow the ring."""
    state = _state(0.0, period=1.0, window=2.0)
    for t in range(1, 6):
        state = rotate_state(state, float(t), TicketKey.generate())
    retired = [r for r in state.keys if r.role == "retired"]
    assert [r.retired for r in retired] == [4.0, 5.0]  # retired at 3.0 expired at 5.0
    state = _state(0.0, period=1.0, window=14.0)
    for t in range(1, 40):
        state = rotate_state(state, float(t), TicketKey.generate())
    assert len(state.keys) == RING_SLOTS
    assert len(prune(state.keys, 14.0, 39.0)) == RING_SLOTS


def test_merge_keeps_keys_this_node_encrypted_with() -> None:
    """Keys the fleet does not know but this node encrypted with stay as retired (for
    the window); a local next that never encrypted, and expired keys, go."""
    now = 1000.0
    fleet = list(_state(now - 5).keys)
    mine_cur = KeyRecord(TicketKey.generate(), "current", now - 50, now - 50)
    mine_old = KeyRecord(TicketKey.generate(), "retired", now - 90, now - 90, now - 50)
    mine_gone = KeyRecord(TicketKey.generate(), "retired", now - 99, now - 99, now - 80)
    mine_next = KeyRecord(TicketKey.generate(), "next", now - 50)
    merged = merge_records(fleet, [mine_gone, mine_old, mine_cur, mine_next], now, 60.0)
    by_key = {r.key: r for r in merged}
    assert by_key[mine_cur.key].role == "retired" and by_key[mine_cur.key].retired == now
    assert by_key[mine_old.key].retired == now - 50
    assert mine_gone.key not in by_key and mine_next.key not in by_key
    assert [r.role for r in merged][-2:] == ["current", "next"]
    assert merge_records(fleet, [mine_cur], now, 60.0, keep_local=False) == fleet


def test_state_round_trips_and_garbage_is_refused() -> None:
    """The stored encoding keeps every key, role and time; other data is refused
    with a ValueError that says what is wrong."""
    state = rotate_state(_state(100.0), 110.0, TicketKey.generate(48), "n1")
    assert parse_state(encode_state(state)) == state
    for junk, why in (
        (b"hello", "Expecting value"),
        (b"[]", "not a tlsresume ring"),
        (b"{}", "not a tlsresume ring"),
        (b'{"format":"tlsresume-ring","version":9}', "version 9"),
        (b'{"format":"tlsresume-ring","version":1}', "missing or of the wrong type"),
    ):
        with pytest.raises(ValueError, match=why):
            parse_state(junk)
    doc = encode_state(state).replace(b'"role":"next"', b'"role":"current"')
    with pytest.raises(ValueError, match="bad key roles"):
        parse_state(doc)


def test_generation_check_is_forward_only() -> None:
    """An older generation is refused, the same generation only with the same
    content, a newer one accepted."""
    now = time.time()
    one = _state(now)
    two = rotate_state(one, now + 11, TicketKey.generate())
    digest = hashlib.sha256(encode_state(two)).digest()
    assert generation_check(two, 2, digest) is None
    assert generation_check(rotate_state(two, now + 22, TicketKey.generate()), 2, digest) is None
    assert "older" in (generation_check(one, 2, digest) or "")
    forged = rotate_state(one, now + 11, TicketKey.generate())  # generation 2, other keys
    assert "other keys" in (generation_check(forged, 2, digest) or "")
    assert generation_check(one, 0, None) is None  # a fresh node accepts anything


def test_check_periods_defaults_and_refusals() -> None:
    """The window defaults to two periods and may not outlive the ring's slots."""
    assert check_periods(DEFAULT_ROTATION_PERIOD, None) == (
        DEFAULT_ROTATION_PERIOD,
        DEFAULT_ACCEPTANCE_WINDOW,
    )
    assert check_periods(10, 0) == (10.0, 0.0)
    assert check_periods(10, MAX_RETIRED * 10) == (10.0, 140.0)
    for period, window, error, why in (
        (0, None, ValueError, "rotation_period must be > 0"),
        (-5, None, ValueError, "rotation_period must be > 0"),
        (float("nan"), None, ValueError, "rotation_period must be > 0"),
        (10, -1, ValueError, "acceptance_window must be >= 0"),
        (10, 141, ValueError, "at most 14 rotation periods"),
        ("10", None, TypeError, "must be a number of seconds, not str"),
        (10, True, TypeError, "must be a number of seconds, not bool"),
    ):
        with pytest.raises(error, match=why):
            check_periods(period, window)  # type: ignore[arg-type]


def test_policy_needs_neither_the_core_nor_redis(tmp_path: Path) -> None:
    """On a Python that can import neither the C core nor redis-py, the rules still
    import and run (the fleet code's own tests need both; these need neither)."""
    env = env_refusing(tmp_path / "hook", "tlsresume._core", "redis")
    script = textwrap.dedent(
        """
        import sys
        from tlsresume.keys import TicketKey
        from tlsresume.policy import KeyRecord, rotate_state, rotation_due, seed_state
        s = seed_state([KeyRecord(TicketKey.generate(), "current", 0.0, 0.0)], 1.0, 2.0, 0.0)
        for t in range(1, 6):
            assert rotation_due(s, float(t))
            s = rotate_state(s, float(t), TicketKey.generate())
        assert [r.role for r in s.keys] == ["retired", "retired", "current", "next"]
        for refused in ("tlsresume._core", "redis"):
            try:
                __import__(refused)
            except ImportError:
                pass
            else:
                sys.exit(refused + " imported: the hook did not hold")
        assert "tlsresume._core" not in sys.modules and "redis" not in sys.modules
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=DEFAULT_TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# ---- the rules against the C ring ------------------------------------------------------


def test_ring_slots_match_the_core() -> None:
    """The pure module's slot count is the C ring's."""
    from tlsresume._binding import lib

    assert RING_SLOTS == lib.TLSR_RING_SLOTS


def _step_offsets(period_ms: int) -> list[tuple[int, bool]]:
    """(milliseconds since the ring was made, forced rotation?) for a run that is
    early, exactly on time, late by several periods, and forced between periods."""
    out: list[tuple[int, bool]] = []
    t = 0
    for i in range(40):
        t += (period_ms // 3, period_ms, period_ms - 1, 1, 3 * period_ms + 7)[i % 5]
        out.append((t, i % 11 == 10))
    return out


def _beside_ring(
    period_ms: int, window_ms: int, due: Callable[[RingState, float], bool]
) -> tuple[int, int, int | None]:
    """Maintain a real ring and step the pure rules (deciding rotation with ``due``)
    over the same times. Returns (rotations, keys dropped, first offset at which
    the two disagreed or None)."""
    from tlsresume import TicketKeyRing

    ring = TicketKeyRing(
        rotation_period=period_ms / 1000, acceptance_window=window_ms / 1000, session_cache=False
    )
    try:
        start = ring.records()
        made_ms = round(start[0].created * 1000)
        state = RingState(period_ms / 1000, window_ms / 1000, tuple(start))
        rotations, dropped = 0, set[bytes]()
        for offset, forced in _step_offsets(period_ms):
            now = (made_ms + offset) / 1000
            if forced:
                ring.rotate(now=now)
            else:
                ring.maybe_rotate(now=now)
            held = ring.records()
            before = {r.key.name for r in state.keys}
            if forced or due(state, now):
                fresh = next(r.key for r in held if r.role == "next")
                state = rotate_state(state, now, fresh)
                rotations += 1
            else:
                kept = tuple(prune(state.keys, state.window, now))
                state = RingState(state.period, state.window, kept, state.generation)
            if held != list(state.keys):
                return rotations, len(dropped), offset
            dropped |= before - {r.key.name for r in state.keys}
        return rotations, len(dropped), None
    finally:
        ring.close()


@pytest.mark.parametrize(
    "period_ms, window_ms",
    [(10_000, 20_000), (10_000, 0), (10_000, 140_000), (10_000, 35_001)],
    ids=["default-window", "no-window", "full-ring", "odd-window"],
)
def test_policy_and_the_c_ring_agree_at_every_step(period_ms: int, window_ms: int) -> None:
    """A real ring in shared memory, maintained (or rotated by force) at irregular
    times, holds at every step exactly the keys, roles and times the pure rules
    compute from the same start. The one input the rules cannot know, the fresh
    random next key, is read from the ring after each rotation."""
    rotations, dropped, disagreed = _beside_ring(period_ms, window_ms, rotation_due)
    assert disagreed is None
    assert rotations >= 20 and dropped >= 5  # keys came and went, many times


def test_a_rule_one_millisecond_off_is_caught() -> None:
    """Negative control: rules that rotate a millisecond late disagree with the C
    ring at the first on-time step, so the comparison above can fail."""

    def late(state: RingState, now: float) -> bool:
        return rotation_due(state, now - 0.001)

    _, _, disagreed = _beside_ring(10_000, 20_000, late)
    assert disagreed is not None
