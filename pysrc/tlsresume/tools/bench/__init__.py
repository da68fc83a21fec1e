"""``tlsresume bench``: resumption throughput of tlsresume against real servers.

The benchmark lives beside the library, not in it; it records timings and never
asserts them. The modules: :mod:`.config` (what runs), :mod:`.servers` (the servers
under test, CPU accounting), :mod:`.loadgen` (load generator processes),
:mod:`.benchmark` (measuring: :func:`run`), :mod:`.report` (table, Markdown, plot),
:mod:`.clientlibs` (``--client-libs``: HTTPS clients, stock against tlsresume) and
:mod:`.cli` (:func:`main`). ``node_cluster.js`` (package data) is the Node.js
contender.
"""

from __future__ import annotations

from .benchmark import Sample, add_ratios, run, summarize, warmup_check
from .cli import main
from .config import CONFIGS, MODES, PROG, PROTOCOLS, REQUEST, BenchConfig, BenchError
from .report import plot, render_markdown, render_table
from .servers import availability, node_script, parse_proc_stat, tree_cpu_seconds

__all__ = [
    "CONFIGS",
    "PROTOCOLS",
    "MODES",
    "PROG",
    "REQUEST",
    "BenchConfig",
    "BenchError",
    "run",
    "main",
    "availability",
    "node_script",
    "render_table",
    "render_markdown",
    "plot",
    "parse_proc_stat",
    "tree_cpu_seconds",
    "Sample",
    "summarize",
    "add_ratios",
    "warmup_check",
]
