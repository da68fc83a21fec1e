"""The tlsresume regions on this machine: where they live, which exist, their counters.

The library half of ``tlsresume stats`` (the text rendering is
:mod:`tlsresume.tools.stats`); ``tlsresume.stats`` is its deprecated old name.

Every named key ring and session store is a file, ``tlsresume.ring.NAME`` or
``tlsresume.store.NAME`` (mode 0600), in this user's private directory on tmpfs
(:func:`region_dir`: ``$TLSRESUME_RUNTIME_DIR``, ``/run/tlsresume`` for root,
``$XDG_RUNTIME_DIR/tlsresume`` or ``/dev/shm/tlsresume-<uid>``), and its counters
are atomics in the region itself, so any process of the same user
reads the totals of every worker just by attaching. Attaching changes nothing in
a region (no rotation, no repair), so reading stats is safe on a live server.

The layers:

* :func:`list_regions` and :func:`parse_region_filename` find the regions;
* :func:`collect` attaches to each and returns one plain, JSON-ready dict;
* renderers turn that dict into output: :func:`tlsresume.tools.stats.render_text`, ``json.dumps``
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
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import metrics as _metrics

__all__ = [
    "region_dir",
    "KINDS",
    "GAUGES",
    "RegionFile",
    "parse_region_filename",
    "region_path",
    "list_regions",
    "region_report",
    "collect",
    "counter_delta",
    "serve_owner",
    "region_users",
    "leftovers",
    "remove_leftovers",
]

#: Region kinds, as they appear in the file name ``tlsresume.<kind>.<name>``.
KINDS = ("ring", "store")

#: Values that describe a region's state rather than count events: a difference of
#: two snapshots keeps the later value of these instead of subtracting. (One list
#: for the whole package: the Prometheus export types them as gauges too.)
GAUGES = _metrics.GAUGES

_SERVE_NAME_RE = re.compile(r"^serve-(\d+)(?:-[0-9a-f]+)?$")


@dataclass(frozen=True)
class RegionFile:
    """One tlsresume region file found in the region directory."""

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


def region_dir() -> str:
    """This user's directory of named regions (chosen, and made if missing, the
    same way every tlsresume process of this user chooses it).

    Raises:
        SharedMemoryError: no usable directory; the message says why and what to do.
    """
    from . import _rundir

    return _rundir.region_dir()


def region_path(kind: str, name: str, shm_dir: str | None = None) -> str:
    """The file in ``shm_dir`` (default: :func:`region_dir`) that holds region
    ``name`` of ``kind``."""
    if kind not in KINDS:
        raise ValueError(f"region kind must be one of {', '.join(KINDS)}, not {kind!r}")
    return os.path.join(region_dir() if shm_dir is None else shm_dir, f"tlsresume.{kind}.{name}")


def list_regions(shm_dir: str | None = None, *, uid: int | None = None) -> list[RegionFile]:
    """The tlsresume regions in ``shm_dir`` (default: :func:`region_dir`) owned by
    ``uid`` (default: this user).

    Regions of other users are left out: they could not be attached anyway (the
    core refuses a region whose owner is not the caller).

    Returns:
        Regions sorted by name, then kind (ring before store). An ``shm_dir`` that
        does not exist gives an empty list.
    """
    owner = os.geteuid() if uid is None else uid
    if shm_dir is None:
        shm_dir = region_dir()
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


@dataclass(frozen=True)
class Users:
    """Which region files the processes of this machine have mapped or open.

    Attributes:
        files: ``(st_dev, st_ino)`` of every file some readable process maps or
            holds open.
        unreadable: pids of this user's processes whose ``/proc/PID/maps`` could
            not be read (then nobody can say a region is unused).
    """

    files: frozenset[tuple[int, int]]
    unreadable: tuple[int, ...]


def _maps_files(pid: str) -> set[tuple[int, int]]:
    """``(st_dev, st_ino)`` of the files process ``pid`` maps or holds open."""
    found: set[tuple[int, int]] = set()
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            fields = line.split(None, 5)
            if len(fields) < 6 or fields[4] == "0":
                continue  # anonymous memory
            major, _, minor = fields[3].partition(":")
            found.add((os.makedev(int(major, 16), int(minor, 16)), int(fields[4])))
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return found
    for fd in fds:
        try:
            st = os.stat(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        found.add((st.st_dev, st.st_ino))
    return found


def region_users() -> Users:
    """Scan ``/proc`` for the files each process maps (``/proc/PID/maps``) or holds
    open (``/proc/PID/fd``). A region file is only ever mapped by its owner's
    processes (the core refuses others' files), and an ordinary process is
    readable by its own user; the ones that cannot be read (a container's init, a
    non-dumpable program) are reported in ``unreadable``."""
    uid = os.geteuid()
    files: set[tuple[int, int]] = set()
    unreadable: list[int] = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            files |= _maps_files(pid)
        except FileNotFoundError:
            continue  # exited meanwhile
        except OSError:
            try:
                owner = os.stat(f"/proc/{pid}").st_uid
            except OSError:
                continue
            if owner == uid:
                unreadable.append(int(pid))
    return Users(frozenset(files), tuple(unreadable))


#: A region file younger than this (seconds since its inode changed) is never a
#: leftover: its creator may be between creating the file and mapping it.
LEFTOVER_MIN_AGE = 1.0


def leftovers(shm_dir: str | None = None, *, users: Users | None = None) -> list[RegionFile]:
    """Regions that no process uses any more: no process maps the file or holds it
    open (``/proc/*/maps`` and ``/proc/*/fd``, see :func:`region_users`), whoever
    made them (``tlsresume serve``, ``TicketKeyRing.open(name)``,
    ``SessionStore(name=...)``), and the file is older than :data:`LEFTOVER_MIN_AGE`.

    Such a region holds only the keys and counters of processes that are gone. A
    process whose mappings cannot be read is not seen; if it did map a region that
    is then removed, it keeps using its mapping (removing a region only takes its
    name), and a process that opens the name later makes a new region: the two
    stop sharing (full handshakes between them), nothing fails.
    """
    if users is None:
        users = region_users()
    now = time.time()
    out = []
    for region in list_regions(shm_dir):
        try:
            st = os.lstat(region.path)
        except FileNotFoundError:
            continue
        if now - st.st_ctime < LEFTOVER_MIN_AGE:
            continue
        if (st.st_dev, st.st_ino) not in users.files:
            out.append(region)
    return out


def remove_leftovers(
    shm_dir: str | None = None, *, dry_run: bool = False, users: Users | None = None
) -> list[RegionFile]:
    """Unlink what :func:`leftovers` finds (``users``: a :func:`region_users` scan
    already made). Returns what was (or, with ``dry_run``, would be) removed."""
    import tlsresume

    found = leftovers(shm_dir, users=users)
    if not dry_run:
        for region in found:
            cls = tlsresume.TicketKeyRing if region.kind == "ring" else tlsresume.SessionStore
            unlink = cls._unlink
            rc = unlink(region.name.encode()) if shm_dir is None else -1
            if rc < 0 and os.path.lexists(region.path):
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
    """``NAME`` means both kinds; ``tlsresume.KIND.NAME`` (the file name in the
    region directory) means that one."""
    wanted: list[tuple[str | None, str]] = []
    for name in names:
        parsed = parse_region_filename(os.path.basename(name))
        wanted.append(parsed if parsed is not None else (None, name))
    return wanted


def collect(names: Iterable[str] | None = None, *, shm_dir: str | None = None) -> dict[str, Any]:
    """Attach to tlsresume regions and read their counters.

    Args:
        names: region names to read (``serve-1234``, or a file name such as
            ``tlsresume.store.serve-1234`` for one kind only); ``None`` reads every
            region of this user in ``shm_dir``.
        shm_dir: where to look (default: :func:`region_dir`, which is also where
            the regions are attached from).

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
    import tlsresume
    from tlsresume import _binding  # noqa: F401  (binds the core now: one clear error)

    if shm_dir is None:
        shm_dir = region_dir()
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
            try:
                report = region_report(region.kind, obj)
            finally:
                obj.close()
        except (OSError, ValueError, tlsresume.TLSResumeError) as exc:
            skipped.append(
                {"kind": region.kind, "name": region.name, "path": region.path, "reason": str(exc)}
            )
            continue
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
