"""Text output of ``tlsresume stats``: tables of the counters :func:`tlsresume.regions.collect`
returns. Needs no C core (only collecting does).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tlsresume.regions import KINDS

from .commands._common import PROG

__all__ = ["render_text", "not_found_line"]


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
        resumed = stats.get("resumed_current", 0) + stats.get("resumed_older_key", 0)
        offered = resumed + stats.get("rejected_unknown", 0) + stats.get("rejected_expired", 0)
        rows.append(("resumed_rate", _rate(resumed, offered)))
        period = report["settings"].get("rotation_period")
        if period is not None:
            rows.append(("rotation_period", f"{period:g} s"))
    repairs = sum(v for k, v in stats.items() if k.startswith("repaired_"))
    rows.append(("health", f"damaged, repaired {repairs}x" if repairs else "ok"))
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
        lines.append(
            f"UNREADABLE {item['kind']} {item['name']}: {item['reason']} (damaged, half made, "
            "or of another tlsresume version; the processes serving from it repair damage "
            "on their next handshake)"
        )
    for name in report["missing"]:
        lines.append(not_found_line(name, report["shm_dir"]))
    return "\n".join(lines)


def not_found_line(name: str, shm_dir: str) -> str:
    """What ``tlsresume stats NAME`` says when no region has that name."""
    return (
        f"not found: {name} (no key ring or session store of that name in {shm_dir}; "
        f"'{PROG} stats' without a NAME lists the ones that exist)"
    )
