"""Rotation and expiry of ticket keys, as pure functions on values.

One set of rules serves both places keys live: the C ring in shared memory (which
applies them on every handshake, without the GIL) and a fleet's ring in Redis
(which :mod:`tlsresume.redis` rotates for many machines at once). The rules:

* **Rotation.** The *current* key encrypts for ``period`` seconds from when it was
  activated. Then the *next* key (published a whole period earlier, so every node
  already decrypts with it) becomes current, the old current retires, and a fresh
  next is drawn. One rotation per call, however late the call.
* **Expiry.** A retired key decrypts for ``window`` seconds after it retired, then
  it is dropped (the C ring wipes its bytes). ``window`` 0 drops it at rotation.
* **Room.** A ring holds :data:`RING_SLOTS` keys: current, next and at most
  :data:`MAX_RETIRED` retired ones; when a rotation needs room, the oldest retired
  key goes first. Hence ``window <= MAX_RETIRED * period``.

Nothing here needs the C core, redis-py or a socket: ``tests/test_policy.py`` runs
these functions beside a real :class:`~tlsresume.TicketKeyRing` and checks that both
hold the same keys, in the same roles, at every step.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .keys import TicketKey

__all__ = [
    "RING_SLOTS",
    "MAX_RETIRED",
    "DEFAULT_ROTATION_PERIOD",
    "DEFAULT_ACCEPTANCE_WINDOW",
    "KeyRecord",
    "RingState",
    "check_periods",
    "rotation_due",
    "retired_expired",
    "prune",
    "rotate_state",
    "seed_state",
    "merge_records",
    "generation_check",
    "redone_rotation",
    "encode_state",
    "parse_state",
]

RING_SLOTS = 16  # TLSR_RING_SLOTS in csrc/tlsresume.h; tests/test_policy.py checks both agree
MAX_RETIRED = RING_SLOTS - 2  # slots left once current and next are placed
DEFAULT_ROTATION_PERIOD = 3600.0
DEFAULT_ACCEPTANCE_WINDOW = 2 * DEFAULT_ROTATION_PERIOD

_FORMAT = "tlsresume-ring"
_VERSION = 1


@dataclass(frozen=True)
class KeyRecord:
    """A key with its role and times (epoch seconds), as a ring holds it."""

    key: TicketKey
    role: str  # "current", "next" or "retired"
    created: float
    activated: float | None = None
    retired: float | None = None


def check_periods(rotation_period: float, acceptance_window: float | None) -> tuple[float, float]:
    """``(period, window)`` in seconds, the window defaulting to two periods.

    Raises:
        TypeError: not a number.
        ValueError: a period that is not positive, a negative window, or a window
            longer than the ring can hold keys for.
    """
    for label, value in (
        ("rotation_period", rotation_period),
        ("acceptance_window", acceptance_window),
    ):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise TypeError(f"{label} must be a number of seconds, not {type(value).__name__}")
    if not rotation_period > 0:
        raise ValueError(f"rotation_period must be > 0 seconds, got {rotation_period}")
    window = 2 * float(rotation_period) if acceptance_window is None else float(acceptance_window)
    if not window >= 0:
        raise ValueError(f"acceptance_window must be >= 0 seconds, got {window}")
    if window > MAX_RETIRED * rotation_period:
        raise ValueError(
            f"acceptance_window ({window:g} s) may be at most {MAX_RETIRED} rotation periods "
            f"({MAX_RETIRED * rotation_period:g} s): the ring holds {RING_SLOTS} keys"
        )
    return float(rotation_period), window


@dataclass(frozen=True)
class RingState:
    """A whole ring as a value: its periods, its keys and who changed it last.

    ``generation`` counts changes (a fleet's nodes refuse to go back to an older
    one, :func:`generation_check`). Times are epoch seconds.
    """

    period: float
    window: float
    keys: tuple[KeyRecord, ...]
    generation: int = 1
    updated_by: str = ""
    updated_at: float = 0.0

    @property
    def current(self) -> KeyRecord:
        return next(r for r in self.keys if r.role == "current")

    @property
    def next(self) -> KeyRecord | None:
        return next((r for r in self.keys if r.role == "next"), None)

    def due(self) -> float:
        """When the current key's period runs out."""
        cur = self.current
        return (cur.activated or cur.created) + self.period


def rotation_due(state: RingState, now: float) -> bool:
    """Whether the current key has encrypted for a whole period."""
    return now >= state.due()


def retired_expired(record: KeyRecord, window: float, now: float) -> bool:
    """Whether a retired key's window is over (it no longer decrypts)."""
    return record.role == "retired" and now >= (record.retired or now) + window


def prune(keys: Sequence[KeyRecord], window: float, now: float) -> list[KeyRecord]:
    """The keys a ring keeps at ``now``: retired keys inside their window (at most
    :data:`MAX_RETIRED`, the newest), oldest first, then current, then next."""
    retired = [r for r in keys if r.role == "retired" and not retired_expired(r, window, now)]
    retired.sort(key=lambda r: r.retired or 0.0)
    return [
        *retired[-MAX_RETIRED:],
        *(r for r in keys if r.role == "current"),
        *(r for r in keys if r.role == "next"),
    ]


def rotate_state(state: RingState, now: float, new_next: TicketKey, who: str = "") -> RingState:
    """The state after one rotation at ``now``: next encrypts, current retires,
    ``new_next`` is pre-published; retired keys past the window are dropped."""
    cur, nxt = state.current, state.next
    keys: list[KeyRecord] = [r for r in state.keys if r.role == "retired"]
    keys.append(KeyRecord(cur.key, "retired", cur.created, cur.activated, now))
    if nxt is None:  # a ring published without a next key: promote a fresh one
        keys.append(KeyRecord(new_next, "current", now, now, None))
        fresh = TicketKey.generate(new_next.size)
        keys.append(KeyRecord(fresh, "next", now, None, None))
    else:
        keys.append(KeyRecord(nxt.key, "current", nxt.created, now, None))
        keys.append(KeyRecord(new_next, "next", now, None, None))
    return RingState(
        state.period,
        state.window,
        tuple(prune(keys, state.window, now)),
        state.generation + 1,
        who,
        now,
    )


def seed_state(
    local: Sequence[KeyRecord],
    period: float,
    window: float,
    now: float,
    who: str = "",
    generation: int = 1,
) -> RingState:
    """The first state of a fleet's ring, from a node's local keys (so a Redis that
    lost its data is re-seeded with the keys the fleet already uses).

    Raises:
        ValueError: ``local`` has no current key.
    """
    keys = [
        r
        if r.role != "retired" or r.retired
        else KeyRecord(r.key, "retired", r.created, r.activated, now)
        for r in local
    ]
    if not any(r.role == "current" for r in keys):
        raise ValueError("the local ring has no current key")
    if not any(r.role == "next" for r in keys):
        size = next(r for r in keys if r.role == "current").key.size
        keys.append(KeyRecord(TicketKey.generate(size), "next", now, None, None))
    return RingState(period, window, tuple(prune(keys, window, now)), generation, who, now)


def merge_records(
    fleet: Sequence[KeyRecord],
    local: Sequence[KeyRecord],
    now: float,
    window: float,
    keep_local: bool = True,
) -> list[KeyRecord]:
    """What a node's ring should hold: the fleet's keys, plus (``keep_local``) the
    keys this node encrypted with that the fleet does not know (made by local
    rotation while Redis was down, or lost when Redis lost its data) as retired
    keys, so the tickets they issued keep resuming here for the window.

    Local keys that never encrypted (a local ``next``) are dropped. The result fits
    the ring (retired keys beyond its slots go, oldest first)."""
    names = {r.key.name for r in fleet}
    retired = [r for r in fleet if r.role == "retired"]
    if keep_local:
        for r in local:
            if r.key.name in names or r.role == "next":
                continue
            when = r.retired if r.role == "retired" and r.retired else now
            if when + window > now:
                retired.append(KeyRecord(r.key, "retired", r.created, r.activated, when))
    retired.sort(key=lambda r: r.retired or 0.0)
    return [
        *retired[-MAX_RETIRED:],
        *(r for r in fleet if r.role == "current"),
        *(r for r in fleet if r.role == "next"),
    ]


def generation_check(
    state: RingState, seen: int, seen_digest: bytes | None, seen_state: RingState | None = None
) -> str | None:
    """Whether a node that last accepted generation ``seen`` (whose encoding hashed
    to ``seen_digest``; ``seen_state`` is that state, if the node kept it) may
    accept ``state``: ``None`` if so, else why not.

    Generations only move forward. Sealing authenticates a state but not its age:
    whoever can write the stored copy could put back an older sealed state (with
    keys the fleet retired, or a rotation undone). So a node refuses a generation
    lower than one it accepted, and a different state under the generation it
    accepted, with one exception: a rotation re-done (:func:`redone_rotation`).
    That is what a failover that lost the last rotation leads to, when a node that
    never saw it rotates again: the same current key (it was the next key before),
    only another next key and other times."""
    if state.generation < seen:
        return (
            f"generation {state.generation} is older than generation {seen}, which "
            "this node already accepted (an old copy was written back)"
        )
    if (
        state.generation == seen
        and seen_digest is not None
        and hashlib.sha256(encode_state(state)).digest() != seen_digest
        and not (seen_state is not None and redone_rotation(state, seen_state))
    ):
        return (
            f"generation {state.generation} holds other keys than the generation "
            f"{seen} this node accepted"
        )
    return None


def redone_rotation(a: RingState, b: RingState) -> bool:
    """Whether ``a`` and ``b`` are the same rotation made twice: one generation, the
    same current key, the same keys that decrypt (retired and current) and the same
    policy. Only the next key (which has encrypted nothing) and the times and node
    recorded may differ, so taking either loses no ticket and never puts two current
    keys under one period."""

    def decrypting(s: RingState) -> frozenset[tuple[bytes, bytes, bytes]]:
        return frozenset(
            (r.key.name, r.key.hmac_key, r.key.aes_key) for r in s.keys if r.role != "next"
        )

    return (
        a.generation == b.generation
        and a.current.key == b.current.key
        and decrypting(a) == decrypting(b)
        and abs(a.period - b.period) < 1e-3
        and abs(a.window - b.window) < 1e-3
    )


# ---- the ring as JSON (what a fleet stores) -----------------------------------------


def to_ms(t: float | None) -> int | None:
    """Epoch seconds as whole milliseconds (how rings store times); None stays None."""
    return None if t is None else int(round(t * 1000))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def encode_state(state: RingState) -> bytes:
    """The plaintext JSON of a state (secrets in base64, times in ms)."""
    doc = {
        "format": _FORMAT,
        "version": _VERSION,
        "period_ms": to_ms(state.period),
        "window_ms": to_ms(state.window),
        "generation": state.generation,
        "updated_by": state.updated_by,
        "updated_ms": to_ms(state.updated_at),
        "keys": [
            {
                "name": r.key.name.hex(),
                "hmac": _b64(r.key.hmac_key),
                "aes": _b64(r.key.aes_key),
                "role": r.role,
                "created_ms": to_ms(r.created),
                "activated_ms": to_ms(r.activated),
                "retired_ms": to_ms(r.retired),
            }
            for r in state.keys
        ],
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def parse_state(data: bytes) -> RingState:
    """Inverse of :func:`encode_state`.

    Raises:
        ValueError: not a tlsresume ring of a version this code reads, or one whose
            roles, periods or size break the rules above (the message says which).
    """

    def sec(ms: Any) -> float | None:
        return None if ms is None else int(ms) / 1000

    try:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
            raise ValueError("not a tlsresume ring")
        if doc.get("version") != _VERSION:
            raise ValueError(
                f"ring format version {doc.get('version')}, this code reads {_VERSION}"
            )
        keys = tuple(
            KeyRecord(
                TicketKey(
                    bytes.fromhex(k["name"]),
                    base64.b64decode(k["hmac"]),
                    base64.b64decode(k["aes"]),
                ),
                k["role"],
                sec(k["created_ms"]) or 0.0,
                sec(k.get("activated_ms")),
                sec(k.get("retired_ms")),
            )
            for k in doc["keys"]
        )
        roles = [r.role for r in keys]
        if (
            roles.count("current") != 1
            or roles.count("next") > 1
            or set(roles) - {"current", "next", "retired"}
            or len(keys) > RING_SLOTS
        ):
            raise ValueError(f"bad key roles {roles}")
        period_ms, window_ms = int(doc["period_ms"]), int(doc["window_ms"])
        if period_ms <= 0 or not 0 <= window_ms <= MAX_RETIRED * period_ms:
            raise ValueError(f"bad period {period_ms} ms or window {window_ms} ms")
        return RingState(
            period_ms / 1000,
            window_ms / 1000,
            keys,
            int(doc.get("generation", 1)),
            str(doc.get("updated_by", "")),
            (sec(doc.get("updated_ms")) or 0.0),
        )
    except ValueError:
        raise
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"a field is missing or of the wrong type ({exc!r})") from None
