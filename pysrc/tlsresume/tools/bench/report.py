"""Rendering a benchmark report: the text table, Markdown, and the optional plot."""

from __future__ import annotations

import math
import os
from typing import Any

# --------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------
from .config import MODES, PROG, BenchError


def _num(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _duration_text(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _header_lines(report: dict[str, Any]) -> list[str]:
    s, m = report["settings"], report["machine"]
    lines = [
        f"{PROG}: {s['workers']} workers, {s['clients']} client process(es) x "
        f"{s['sessions']} sessions, {s['rounds']} round(s) x {s['duration']:g} s per cell"
        + (" (--quick)" if s.get("quick") else ""),
        f"Python {m['python']}, {m['openssl']}, {m['cpus']} CPUs",
    ]
    for name, c in report["configurations"].items():
        if c["status"] != "ok":
            lines.append(f"{name}: {c['status']}: {c['reason']}")
        elif c.get("version"):
            lines.append(f"{name}: {c['version']}")
    return lines


def render_table(report: dict[str, Any]) -> str:
    """The report as text tables, one per protocol and mode."""
    lines = _header_lines(report)
    head = (
        f"  {'configuration':<18} {'conn/s':>9} {'vs base':>8} {'resumed':>8} "
        f"{'server CPU/conn':>16} {'vs base':>8} {'failed':>7}"
    )
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in report["results"]:
        groups.setdefault((r["protocol"], r["mode"]), []).append(r)
    for (protocol, mode), rows in groups.items():
        lines += ["", f"TLS {protocol}, {mode} handshakes", head]
        for r in rows:
            cpu = r["server_cpu_us_per_conn"]
            lines.append(
                f"  {r['config']:<18} {_num(r['conn_per_s']):>9} {_ratio(r['ratio']):>8} "
                f"{r['resumed_pct']:>7.1f}% {_num(cpu) + ' us':>16} "
                f"{_ratio(r['server_cpu_ratio']):>8} {r['failed']:>7}"
            )
            for e in r.get("errors", []):
                lines.append(f"      {e}")
    return "\n".join(lines) + "\n"


def render_markdown(report: dict[str, Any]) -> str:
    """The report as one Markdown table (for bench/RESULTS.md)."""
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
        lines.append(
            f"| {r['protocol']} | {r['mode']} | {r['config']} | {_num(r['conn_per_s'])} | "
            f"{ratio} | {r['resumed_pct']:.1f}% | {_num(r['server_cpu_us_per_conn'])} | "
            f"{cpu_ratio} |"
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


def plot(report: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Draw the report as a PNG: connections per second (annotated with the
    resumption rate) and server CPU per connection, per cell and configuration.

    Raises:
        BenchError: matplotlib is not installed.
    """
    plt = _load_pyplot()
    results = report["results"]
    cells = list(dict.fromkeys((r["protocol"], r["mode"]) for r in results))
    configs = list(dict.fromkeys(r["config"] for r in results))
    by_key = {(r["config"], r["protocol"], r["mode"]): r for r in results}
    fig, (ax_rate, ax_cpu) = plt.subplots(2, 1, figsize=(10, 8), sharex=True)
    width = 0.8 / max(1, len(configs))
    for i, name in enumerate(configs):
        xs = [j + (i - (len(configs) - 1) / 2) * width for j in range(len(cells))]
        rows = [by_key.get((name, p, m)) for p, m in cells]
        rates = [r["conn_per_s"] if r else 0 for r in rows]
        cpus = [(r["server_cpu_us_per_conn"] or 0) if r else 0 for r in rows]
        bars = ax_rate.bar(xs, rates, width, label=name)
        for bar, r in zip(bars, rows, strict=True):
            if r and r["mode"] == "resumed":
                ax_rate.annotate(
                    f"{r['resumed_pct']:.0f}%",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
        ax_cpu.bar(xs, cpus, width, label=name)
    s = report["settings"]
    ax_rate.set_ylabel("connections / s")
    ax_rate.set_title(
        f"tlsresume bench: {s['workers']} workers, {s['clients']} client processes "
        f"(labels: % resumed)"
    )
    ax_rate.legend(fontsize=8)
    ax_cpu.set_ylabel("server CPU µs / connection")
    ax_cpu.set_xticks(range(len(cells)))
    ax_cpu.set_xticklabels([f"TLS {p} {m}" for p, m in cells])
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=120)
    plt.close(fig)
