"""Rendering a benchmark report: the text table, Markdown, and the optional plot.

Every rendering names a configuration by :func:`~.config.label` (``openssl
s_server (one process)``, not a name that reads like a pool), shows the median of
the rounds with their ``[min-max]`` when there was more than one round, and says
which way is better, so a chart cannot be read upside down.
"""

from __future__ import annotations

import math
import os
from typing import Any

# --------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------
from .config import MODES, PROG, BenchError, label


def _num(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _with_range(
    value: float | None, spread: list[float] | None, digits: int = 0, unit: str = ""
) -> str:
    """``1,234 [1,100-1,300]``: the median and, when the rounds differ, their range."""
    text = _num(value, digits) + unit
    if spread and spread[0] != spread[1]:
        text += f" [{_num(spread[0], digits)}-{_num(spread[1], digits)}]"
    return text


def _label(r: dict[str, Any]) -> str:
    return label(r["config"])


def _duration_text(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _header_lines(report: dict[str, Any]) -> list[str]:
    s, m = report["settings"], report["machine"]
    warmup = f"{s['warmup']:g} s warm-up + " if s.get("warmup") else ""
    lines = [
        f"{PROG}: {s['workers']} workers, {s['clients']} client process(es) x "
        f"{s['sessions']} sessions, {warmup}{s['rounds']} round(s) x {s['duration']:g} s "
        "per cell" + (" (--quick)" if s.get("quick") else ""),
        f"Python {m['python']}, {m['openssl']}, {m['cpus']} CPUs",
        "median of rounds [min-max]; conn/s: higher is better, server CPU/conn: lower is "
        "better; vs base: over the baseline of the same run",
    ]
    for name, c in report["configurations"].items():
        if c["status"] != "ok":
            lines.append(f"{label(name)}: {c['status']}: {c['reason']}")
        elif c.get("version"):
            lines.append(f"{label(name)}: {c['version']}")
    return lines


def _warmup_lines(report: dict[str, Any]) -> list[str]:
    """What the warm-up check found (:func:`~.benchmark.warmup_check`)."""
    check = report.get("warmup_check")
    if not check:
        return []
    if not check["checked"]:
        return ["", "warm-up check: not made (it compares round 1 with round 3: --rounds 3)"]
    if not check["cold"]:
        return ["", f"warm-up check: no cell ran colder in round 1 ({check['rule']})"]
    lines = ["", f"warm-up check: COLD first rounds ({check['rule']}):"]
    for c in check["cold"]:
        rate, cpu = c["conn_per_s"], c["server_cpu"]
        lines.append(
            f"  {label(c['config'])} TLS {c['protocol']} {c['mode']}: round 1 / round 3 = "
            f"{'-' if rate is None else f'{rate:.2f}'} conn/s, "
            f"{'-' if cpu is None else f'{cpu:.2f}'} server CPU/conn "
            "(raise --warmup)"
        )
    return lines


_TABLE_HEAD = (
    "configuration",
    "conn/s",
    "vs base",
    "resumed",
    "server CPU/conn",
    "vs base",
    "failed",
)


def _table_line(cells: tuple[str, ...], widths: list[int]) -> str:
    """One line of the text table: the name left-aligned, figures right-aligned."""
    figures = [f"{c:>{w}}" for c, w in zip(cells[1:], widths[1:], strict=True)]
    return "  " + "  ".join([cells[0].ljust(widths[0]), *figures])


def render_table(report: dict[str, Any]) -> str:
    """The report as text tables, one per protocol and mode: medians of the rounds
    with their [min-max], ratios against the baseline, then the warm-up check."""
    lines = _header_lines(report)
    rows: dict[tuple[str, str], list[tuple[tuple[str, ...], list[str]]]] = {}
    for r in report["results"]:
        cells: tuple[str, ...] = (
            _label(r),
            _with_range(r["conn_per_s"], r.get("conn_per_s_range")),
            _ratio(r["ratio"]),
            _with_range(r["resumed_pct"], r.get("resumed_pct_range"), 1, "%"),
            _with_range(r["server_cpu_us_per_conn"], r.get("server_cpu_us_per_conn_range")) + " us",
            _ratio(r["server_cpu_ratio"]),
            str(r["failed"]),
        )
        rows.setdefault((r["protocol"], r["mode"]), []).append((cells, r.get("errors", [])))
    every = [_TABLE_HEAD, *(c for group in rows.values() for c, _ in group)]
    widths = [max(len(c[i]) for c in every) for i in range(len(_TABLE_HEAD))]
    for (protocol, mode), group in rows.items():
        lines += ["", f"TLS {protocol}, {mode} handshakes", _table_line(_TABLE_HEAD, widths)]
        for cells, errors in group:
            lines.append(_table_line(cells, widths))
            lines += [f"      {e}" for e in errors]
    lines += _warmup_lines(report)
    return "\n".join(lines) + "\n"


def render_markdown(report: dict[str, Any]) -> str:
    """The report as one Markdown table (for bench/RESULTS.md): medians of the
    rounds, ``[min-max]`` when they differ."""
    lines = [
        "| TLS | handshake | configuration | conn/s | x baseline | resumed | "
        "server CPU µs/conn | CPU x baseline |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    # Cell by cell (stable: configurations keep their order within a cell).
    rows = sorted(report["results"], key=lambda r: (r["protocol"], MODES.index(r["mode"])))
    for r in rows:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        cpu_ratio = "-" if r["server_cpu_ratio"] is None else f"{r['server_cpu_ratio']:.2f}"
        rate = _with_range(r["conn_per_s"], r.get("conn_per_s_range"))
        resumed = _with_range(r["resumed_pct"], r.get("resumed_pct_range"), 1, "%")
        cpu = _with_range(r["server_cpu_us_per_conn"], r.get("server_cpu_us_per_conn_range"))
        lines.append(
            f"| {r['protocol']} | {r['mode']} | {_label(r)} | {rate} | "
            f"{ratio} | {resumed} | {cpu} | {cpu_ratio} |"
        )
    return "\n".join(lines) + "\n"


def _load_pyplot() -> Any:
    import importlib

    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError:
        raise BenchError(
            "--plot needs matplotlib, which is not installed: "
            "pip install 'tlsresume[plot]' (or pip install matplotlib)"
        ) from None
    matplotlib.use("Agg")  # files only, no display needed
    return importlib.import_module("matplotlib.pyplot")


def _errors(rows: list[dict[str, Any] | None], key: str) -> list[list[float]]:
    """Matplotlib's asymmetric error bars, ``[below, above]``, from the rounds'
    ``[min, max]`` around the median (none where a row or its range is missing)."""
    below, above = [], []
    for r in rows:
        value, spread = (r.get(key), r.get(f"{key}_range")) if r else (None, None)
        if value is None or not spread:
            below.append(0.0)
            above.append(0.0)
        else:
            below.append(max(0.0, value - spread[0]))
            above.append(max(0.0, spread[1] - value))
    return [below, above]


def plot(report: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Draw the report as a PNG: connections per second (annotated with the
    resumption rate) and server CPU per connection, per cell and configuration.
    Bars are medians of the rounds, whiskers their min-max (one round's figure can
    be that far off); each axis says which way is better; the legend names the
    configurations as the table does.

    Raises:
        BenchError: matplotlib is not installed.
    """
    plt = _load_pyplot()
    results = report["results"]
    cells = list(dict.fromkeys((r["protocol"], r["mode"]) for r in results))
    configs = list(dict.fromkeys(r["config"] for r in results))
    by_key = {(r["config"], r["protocol"], r["mode"]): r for r in results}
    fig, (ax_rate, ax_cpu) = plt.subplots(2, 1, figsize=(11, 9), sharex=True)
    width = 0.8 / max(1, len(configs))
    whiskers = {"capsize": 2, "error_kw": {"elinewidth": 0.8}}
    for i, name in enumerate(configs):
        xs = [j + (i - (len(configs) - 1) / 2) * width for j in range(len(cells))]
        rows = [by_key.get((name, p, m)) for p, m in cells]
        rates = [r["conn_per_s"] if r else 0 for r in rows]
        cpus = [(r["server_cpu_us_per_conn"] or 0) if r else 0 for r in rows]
        bars = ax_rate.bar(
            xs, rates, width, label=label(name), yerr=_errors(rows, "conn_per_s"), **whiskers
        )
        for bar, r in zip(bars, rows, strict=True):
            if r and r["mode"] == "resumed":
                top = (r.get("conn_per_s_range") or [0, r["conn_per_s"]])[1]
                ax_rate.annotate(
                    f"{r['resumed_pct']:.0f}%",
                    (bar.get_x() + bar.get_width() / 2, max(top, bar.get_height())),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
        ax_cpu.bar(
            xs,
            cpus,
            width,
            label=label(name),
            yerr=_errors(rows, "server_cpu_us_per_conn"),
            **whiskers,
        )
    s = report["settings"]
    ax_rate.set_ylabel("connections / s\n(higher is better)")
    ax_rate.set_title(
        f"tlsresume bench: {s['workers']} workers, {s['clients']} client processes; bars: "
        f"median of {s['rounds']} round(s), whiskers: min-max; labels: % resumed"
    )
    ax_rate.legend(fontsize=8)
    ax_cpu.set_ylabel("server CPU µs / connection\n(lower is better)")
    ax_cpu.set_xticks(range(len(cells)))
    ax_cpu.set_xticklabels([f"TLS {p} {m}" for p, m in cells])
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=120)
    plt.close(fig)
