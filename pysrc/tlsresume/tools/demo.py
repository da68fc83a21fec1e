"""``tlsresume demo``: two pre-fork servers on loopback, without and with sharing,
checked side by side. Starts its servers with :mod:`tlsresume.tools.launch`.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from .launch import start_serve

__all__ = ["run_demo", "format_demo", "DemoResult"]


@dataclass
class DemoResult:
    """What ``tlsresume demo`` measured.

    Attributes:
        workers: workers per server.
        n: connections per check.
        checks: ``{"1.2": {"no-share": CheckResult, "shared": CheckResult}, "1.3": ...}``
        ring_stats: the shared server's last ring statistics line, if it printed one.
    """

    workers: int
    n: int
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    ring_stats: str | None = None


class _ServeProcess:
    """A ``tlsresume serve`` child process and the port it listens on."""

    def __init__(self, extra: Sequence[str], label: str) -> None:
        self.label = label
        self.stderr: IO[bytes] = tempfile.TemporaryFile()
        self.proc = start_serve(["--port", "0", *extra], stderr=self.stderr)
        self.port = 0
        self.host = ""
        self._buffer = b""

    def wait_listening(self, timeout: float) -> None:
        """Read stdout until the listening line; raise with the server's stderr if not."""
        from tlsresume.tools.serve import parse_listening_line

        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while time.monotonic() < deadline:
            readable, _, _ = select.select([fd], [], [], 0.1)
            if readable:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                self._buffer += chunk
                for line in self._buffer.decode("utf-8", "replace").splitlines():
                    info = parse_listening_line(line)
                    if info is not None:
                        self.host, self.port = info.host, info.port
                        return
            elif self.proc.poll() is not None:
                break
        raise RuntimeError(f"the {self.label} server did not start: {self.error_text()}")

    def error_text(self) -> str:
        self.stderr.seek(0)
        text = self.stderr.read().decode("utf-8", "replace").strip()
        return text.splitlines()[-1] if text else f"exit code {self.proc.poll()}"

    def stop(self, timeout: float = 10.0) -> str:
        """SIGTERM the master (it stops its workers); return what it printed after."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        self.stderr.close()
        return (self._buffer + (out or b"")).decode("utf-8", "replace")


def run_demo(
    *,
    workers: int = 4,
    n: int = 20,
    versions: Sequence[str] = ("1.2", "1.3"),
    progress: Callable[[str], None] | None = None,
) -> DemoResult:
    """Start two pre-fork servers (without and with sharing) and check both.

    Both servers run on loopback with a throwaway certificate and free ports, and
    are stopped before this returns, also on error or Ctrl-C.

    Args:
        workers: workers per server.
        n: connections per check.
        versions: TLS versions to check separately.
        progress: called with a short status line as each step starts.

    Returns:
        The check results per version and server.

    Raises:
        RuntimeError: a server did not start (its error is in the message).
    """
    from tlsresume.selfsigned import make_self_signed
    from tlsresume.tools.check import run_check

    say = progress or (lambda _msg: None)
    cert = make_self_signed()
    servers: dict[str, _ServeProcess] = {}
    result = DemoResult(workers=workers, n=n)
    try:
        common = ["--workers", str(workers), "--cert", str(cert.cert), "--key", str(cert.key)]
        say(f"starting two servers with {workers} workers each on 127.0.0.1")
        servers["no-share"] = _ServeProcess([*common, "--no-share"], "--no-share")
        servers["shared"] = _ServeProcess(common, "shared")
        for server in servers.values():
            server.wait_listening(timeout=30.0)
        for version in versions:
            result.checks[version] = {}
            for label, server in servers.items():
                say(f"checking TLS {version} against the {label} server (port {server.port})")
                result.checks[version][label] = run_check(
                    server.host,
                    server.port,
                    n,
                    tls_version=version,
                    cafile=str(cert.cert),
                    timeout=10.0,
                )
    finally:
        for label, server in servers.items():
            output = server.stop()
            if label == "shared":
                stats = [line for line in output.splitlines() if "ring stats:" in line]
                if stats:
                    result.ring_stats = stats[-1].split("ring stats:", 1)[1].strip()
        cert.cleanup()
    return result


def format_demo(result: DemoResult) -> str:
    """The side-by-side table ``tlsresume demo`` prints."""
    left, right = "no-share", "shared"
    col, lead = 18, 9 + 25  # value columns; "TLS 1.x  " + row label
    rows = [
        f"{result.workers} workers per server, each building its own SSLContext; "
        f"{result.n} connections per check, each offering the previous session",
        "",
        f"{'':<{lead}}{'without sharing':<{col}}{'with tlsresume'}",
    ]

    def names(r: Any) -> str:
        return "unknown" if r.key_names is None else str(len(r.key_names))

    for version, pair in result.checks.items():
        a, b = pair[left], pair[right]
        table = [
            ("resumed", f"{a.resumed}/{a.possible}", f"{b.resumed}/{b.possible}"),
            (
                "  by ticket / session ID",
                f"{a.by_ticket} / {a.by_session_id}",
                f"{b.by_ticket} / {b.by_session_id}",
            ),
            ("ticket key names", names(a), names(b)),
            ("workers answering", str(len(a.workers)), str(len(b.workers))),
        ]
        if a.errors or b.errors:
            table.append(("failed connections", str(a.errors), str(b.errors)))
        for i, (label, x, y) in enumerate(table):
            prefix = f"TLS {version}" if i == 0 else ""
            rows.append(f"{prefix:<9}{label:<25}{x:<{col}}{y}")
        rows.append("")
    for version, pair in result.checks.items():
        rows.append(f"TLS {version} without sharing: {pair[left].verdict}")
        rows.append(f"TLS {version} with tlsresume:  {pair[right].verdict}")
    if result.ring_stats:
        rows.append(f"shared ring stats: {result.ring_stats}")
    return "\n".join(rows)
