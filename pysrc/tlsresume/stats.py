"""Counters of the tlsresume regions on this machine: the body of ``tlsresume stats``.

Every named key ring and session store is a POSIX shared-memory object,
``/dev/shm/tlsresume.ring.NAME`` or ``/dev/shm/tlsresume.store.NAME`` (mode 0600),
and its counters are atomics in the region itself, so any process of the same user
reads the totals of every worker just by attaching. Attaching changes nothing in
a region (no rotation, no repair), so reading stats is safe on a live server.

The layers:

* :func:`list_regions` and :func:`parse_region_filename` find the regions;
* :func:`collect` attaches to each and returns one plain, JSON-ready dict;
* renderers turn that dict into output: :func:`render_text` here, ``json.dumps``
  for ``--json``; a Prometheus renderer would be one more function of the same dict;
* :func:`counter_delta` and :data:`GAUGES` let a client (``tlsresume check``)
  subtract two snapshots of a server's counters.

The C core is imported only inside :func:`collect` and :func:`region_report`, so
``check`` can use this module on a Python whose OpenSSL tlsresume cannot reach.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import metrics as _metrics

__all__ = [
    "SHM_DIR",
    "KINDS",
    "GAUGES",
    "RegionFile",
    "parse_region_filename",
    "region_path",
    "list_regions",
    "region_report",
    "collect",
    "render_text",
    "counter_delta",
    "serve_owner",
]

#: Where Linux exposes POSIX shared-memory objects.
SHM_DIR = "/dev/shm"

#: Region kinds, as they appear in the object name ``tlsresume.<kind>.<name>``.
KINDS = ("ring", "store")

#: Values that describe a region's state rather than count events: a difference of
#: two snapshots keeps the later value of these instead of subtracting. (One list
#: for the whole package: the Prometheus export types them as gauges too.)
GAUGES = _metrics.GAUGES

_SERVE_NAME_RE = re.compile(r"^serve-(\d+)(?:-[0-9a-f]+)?$")


@dataclass(frozen=True)
class RegionFile:
    """One tlsresume shared-memory object found in :data:`SHM_DIR`."""

    kind: str  # "ring" or "store"
    name: str  # what TicketKeyRing.attach / SessionStore.attach take
    path: str
    uid: int
    size: int


def parse_region_filename(filename: str) -> tuple[str, str] | None:
    """``("ring", "x")`` for ``tlsresume.ring.x``; ``None`` for anything else."""
    for kind in KINDS:
        prefix = f"tlsresume.{kind}."
        if filename.startswith(prefix) and len(filename) > len(prefix):
            return kind, filename[len(prefix) :]
    return None


def region_path(kind: str, name: str, shm_dir: str = SHM_DIR) -> str:
    """The file in ``shm_dir`` that holds region ``name`` of ``kind``."""
    if kind not in KINDS:
        raise ValueError(f"region kind must be one of {', '.join(KINDS)}, not {kind!r}")
    return os.path.join(shm_dir, f"tlsresume.{kind}.{name}")


def list_regions(shm_dir: str = SHM_DIR, *, uid: int | None = None) -> list[RegionFile]:
    """The tlsresume regions in ``shm_dir`` owned by ``uid`` (default: this user).

    Regions of other users are left out: they could not be attached anyway (the
    core refuses a region whose owner is not the caller).

    Returns:
        Regions sorted by name, then kind (ring before store). An ``shm_dir`` that
        does not exist gives an empty list.
    """
    owner = os.geteuid() if uid is None else uid
    try:
        entries = os.listdir(shm_dir)
    except FileNotFoundError:
        return []
    found = []
    for filename in entries:
        parsed = parse_region_filename(filename)
        if parsed is None:
            continue
        path = os.path.join(shm_dir, filename)
        try:
            st = os.lstat(path)
        except FileNotFoundError:  # unlinked since listdir
            continue
        if st.st_uid != owner or not stat.S_ISREG(st.st_mode):
            continue
        found.append(RegionFile(parsed[0], parsed[1], path, st.st_uid, st.st_size))
    found.sort(key=lambda r: (r.name, KINDS.index(r.kind)))
    return found


def serve_owner(name: str) -> dict[str, Any] | None:
    """For regions ``tlsresume serve`` made (``serve-<pid>[-<hex>]``): the master's
    pid and whether a tlsresume process with that pid is still running.

    A server killed with SIGKILL leaves its regions behind; this is how
    ``tlsresume stats`` points them out. ``None`` for names of another form.
    """
    match = _SERVE_NAME_RE.match(name)
    if match is None:
        return None
    pid = int(match.group(1))
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            running = b"tlsresume" in f.read()
    except OSError:
        running = False
    return {"pid": pid, "running": running}


def leftovers(shm_dir: str = SHM_DIR) -> list[RegionFile]:
    """Regions ``tlsresume serve`` made whose master is no longer running (it was
    killed with SIGKILL and could not remove them). Only ``serve-<pid>`` names: for
    any other name there is no way to tell whether someone still uses it."""
    out = []
    for region in list_regions(shm_dir):
        owner = serve_owner(region.name)
        if owner is not None and not owner["running"]:
            out.append(region)
    return out


def remove_leftovers(shm_dir: str = SHM_DIR, *, dry_run: bool = False) -> list[RegionFile]:
    """Unlink what :func:`leftovers` finds (processes that still map a region keep
    it; only the name goes). Returns what was (or, with ``dry_run``, would be)
    removed."""
    import tlsresume

    found = leftovers(shm_dir)
    if not dry_run:
        for region in found:
            cls = tlsresume.TicketKeyRing if region.kind == "ring" else tlsresume.SessionStore
            unlink = cls._unlink
            rc = unlink(region.name.encode())
            if rc < 0 and os.path.exists(region.path):
                os.unlink(region.path)  # e.g. a name the core's checks refuse
    return found


def region_report(kind: str, obj: Any) -> dict[str, Any]:
    """What one attached ring or store says about itself (JSON-ready).

    Args:
        kind: ``"ring"`` or ``"store"``.
        obj: a :class:`~tlsresume.TicketKeyRing` or :class:`~tlsresume.SessionStore`.

    Returns:
        ``{"kind", "name", "stats": {counter: int}, "settings": {...}}``; the
        counters are totals over every process using the region.
    """
    if kind == "ring":
        settings: dict[str, Any] = {
            "rotation_period": obj.rotation_period,
            "acceptance_window": obj.acceptance_window,
            "auto_rotate": obj.auto_rotate,
        }
    elif kind == "store":
        settings = {"single_use": obj.single_use}
    else:
        raise ValueError(f"region kind must be one of {', '.join(KINDS)}, not {kind!r}")
    return {"kind": kind, "name": obj.name, "stats": dict(obj.stats()), "settings": settings}


def _attach(kind: str, name: str) -> Any:
    from tlsresume import SessionStore, TicketKeyRing

    return TicketKeyRing.attach(name) if kind == "ring" else SessionStore.attach(name)


def _wanted(names: Sequence[str]) -> list[tuple[str | None, str]]:
    """``NAME`` means both kinds; ``tlsresume.KIND.NAME`` (as listed in /dev/shm)
    means that one."""
    wanted: list[tuple[str | None, str]] = []
    for name in names:
        parsed = parse_region_filename(os.path.basename(name))
        wanted.append(parsed if parsed is not None else (None, name))
    return wanted


def collect(names: Iterable[str] | None = None, *, shm_dir: str = SHM_DIR) -> dict[str, Any]:
    """Attach to tlsresume regions and read their counters.

    Args:
        names: region names to read (``serve-1234``, or a file name such as
            ``tlsresume.store.serve-1234`` for one kind only); ``None`` reads every
            region of this user in ``shm_dir``.
        shm_dir: where to look (Linux: ``/dev/shm``).

    Returns:
        A JSON-ready dict::

            {"shm_dir": str,
             "regions": [{"kind", "name", "path", "stats", "settings",
                          "server": {"pid", "running"} | None}, ...],
             "skipped": [{"kind", "name", "path", "reason"}, ...],
             "missing": [name, ...]}

        ``skipped`` holds regions that exist but could not be attached (another
        version of tlsresume, corrupt, half made, ...), each with the reason;
        ``missing`` the requested names for which no region exists.

    Raises:
        OpenSSLUnavailableError: the C core cannot be loaded (needed to attach).
    """
    import tlsresume  # noqa: F401  (binds the core now, so a failure is one clear error)

    available = list_regions(shm_dir)
    missing: list[str] = []
    if names is None:
        chosen = available
    else:
        chosen = []
        for kind, name in _wanted(list(names)):
            hits = [r for r in available if r.name == name and kind in (None, r.kind)]
            if not hits:
                missing.append(name if kind is None else f"tlsresume.{kind}.{name}")
            chosen.extend(r for r in hits if r not in chosen)

    regions: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for region in chosen:
        try:
            obj = _attach(region.kind, region.name)
        except (OSError, ValueError, tlsresume.TLSResumeError) as exc:
            skipped.append(
                {"kind": region.kind, "name": region.name, "path": region.path, "reason": str(exc)}
            )
            continue
        try:
            report = region_report(region.kind, obj)
        finally:
            obj.close()
        report["path"] = region.path
        report["server"] = serve_owner(region.name)
        regions.append(report)
    return {"shm_dir": shm_dir, "regions": regions, "skipped": skipped, "missing": missing}


def counter_delta(kind: str, before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    """What moved between two snapshots of one region's ``stats``.

    Counters are subtracted; gauges (:data:`GAUGES`) keep their ``after`` value.
    Keys missing from ``before`` count from 0 (a newer server added a counter).
    """
    gauges = GAUGES
    out: dict[str, int] = {}
    for key, value in after.items():
        if not isinstance(value, int) or isinstance(value, bool):
            continue
        out[key] = value if key in gauges else value - int(before.get(key, 0))
    return out


# --------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------


def _rate(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


def _rows(kind: str, report: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows of one region, counters first, derived values after."""
    stats = report["stats"]
    rows = [(key, str(value)) for key, value in stats.items()]
    if kind == "store":
        rows.append(("hit_rate", _rate(stats.get("hits", 0), stats.get("lookups", 0))))
        rows.append(("single_use", "yes" if report["settings"].get("single_use") else "no"))
    else:
        resumed = stats.get("resumed_current", 0) + stats.get("resumed_renewed", 0)
        offered = resumed + stats.get("rejected_unknown", 0) + stats.get("rejected_expired", 0)
        rows.append(("resumed_rate", _rate(resumed, offered)))
        period = report["settings"].get("rotation_period")
        if period is not None:
            rows.append(("rotation_period", f"{period:g} s"))
    server = report.get("server")
    if server is not None:
        state = "running" if server["running"] else "NOT RUNNING (left over?)"
        rows.append(("serve_pid", f"{server['pid']} {state}"))
    return rows


def _table(title: str, columns: Sequence[tuple[str, list[tuple[str, str]]]]) -> list[str]:
    """One table: a row per label, a column per region (labels in first-seen order)."""
    labels: list[str] = []
    for _name, rows in columns:
        for label, _value in rows:
            if label not in labels:
                labels.append(label)
    cells = [dict(rows) for _name, rows in columns]
    label_width = max([len(title)] + [len(label) + 2 for label in labels])
    widths = [
        max([len(name)] + [len(c.get(label, "")) for label in labels])
        for (name, _rows), c in zip(columns, cells, strict=True)
    ]
    header = title.ljust(label_width) + "".join(
        "  " + name.rjust(w) for (name, _), w in zip(columns, widths, strict=True)
    )
    lines = [header]
    for label in labels:
        lines.append(
            ("  " + label).ljust(label_width)
            + "".join("  " + c.get(label, "").rjust(w) for c, w in zip(cells, widths, strict=True))
        )
    return lines


def render_text(report: Mapping[str, Any]) -> str:
    """The readable form of a :func:`collect` result: one table per kind, a column
    per region, then notes on what was skipped or missing."""
    lines: list[str] = []
    regions = report["regions"]
    titles = {"ring": "key rings", "store": "session stores"}
    for kind in KINDS:
        columns = [(r["name"], _rows(kind, r)) for r in regions if r["kind"] == kind]
        if columns:
            if lines:
                lines.append("")
            lines.extend(_table(titles[kind], columns))
    if not regions:
        lines.append(f"no tlsresume regions of this user in {report['shm_dir']}")
    else:
        lines.append("")
        lines.append("counters are totals over every process using each region")
    for item in report["skipped"]:
        lines.append(f"skipped {item['kind']} {item['name']}: {item['reason']}")
    for name in report["missing"]:
        lines.append(f"not found: {name} (no such region of this user in {report['shm_dir']})")
    return "\n".join(lines)
