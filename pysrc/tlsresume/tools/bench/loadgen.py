"""The load generator processes: each drives connections through the C core's
``tlsr_loadgen_*`` loop and reports counters as JSON lines on its stdout.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tlsresume._tls import TLS_VERSIONS

from .config import BenchError
from .servers import _preexec, _tail

# --------------------------------------------------------------------------------------
# Load generator processes
# --------------------------------------------------------------------------------------

_CLIENT_CODE = (
    "import sys\nfrom tlsresume.tools.bench.loadgen import _client_main\nsys.exit(_client_main())\n"
)


class _LoadClient:
    """One load generator process, driven with JSON lines on its stdin/stdout."""

    def __init__(self, index: int, env: dict[str, str], logdir: Path) -> None:
        self.index = index
        self.log = logdir / f"client-{index}.log"
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _CLIENT_CODE],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                env=env,
                start_new_session=True,
                preexec_fn=_preexec(),
            )
        self._buf = b""

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(message).encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise BenchError(self._died()) from None

    def receive(self, timeout: float) -> dict[str, Any]:
        """The next reply; raises BenchError if the process dies, reports an
        error, or says nothing for ``timeout`` seconds."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"load generator {self.index} did not answer in {timeout:.0f} s")
            readable, _, _ = select.select([fd], [], [], min(left, 0.5))
            if readable:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise BenchError(self._died())
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        reply: dict[str, Any] = json.loads(line)
        if reply.get("op") == "error":
            raise BenchError(f"load generator {self.index}: {reply.get('message')}")
        return reply

    def _died(self) -> str:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=2)
        return (
            f"load generator {self.index} exited (code {self.proc.returncode}): "
            f"{_tail(self.log) or '(no output)'}"
        )

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


_RESULT_FIELDS = (
    "connections",
    "completed",
    "offered",
    "resumed",
    "failed_connect",
    "failed_handshake",
    "failed_io",
    "bad_response",
    "bytes_read",
    "wall_ns",
    "handshake_ns",
    "version",
    "aborted",
)


def _client_main() -> int:
    """Body of a load generator process: JSON requests on stdin, replies on stdout.

    ``{"op": "prepare", ...}`` makes a generator for one server, protocol and mode
    and runs its warm-up connections; ``{"op": "go", "duration_ms", "max"}`` runs
    the measured loop (in C, without the GIL) and replies with the counters and
    this process's CPU time; EOF on stdin ends the process.
    """
    import resource

    # A server closing first must not kill us while we send close_notify; the
    # orchestrator, not the terminal, decides when we stop.
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out = sys.stdout
    sys.stdout = sys.stderr  # nothing else may write to the reply channel

    def reply(message: dict[str, Any]) -> None:
        out.write(json.dumps(message) + "\n")
        out.flush()

    try:
        from tlsresume._binding import ssl_ctx_pointer
        from tlsresume._extra import bench, foreign

        ffi, lib = bench()
    except ImportError as exc:
        reply({"op": "error", "message": f"tlsresume's C core cannot load: {exc}"})
        return 1
    reply({"op": "hello", "pid": os.getpid(), "openssl": ssl.OPENSSL_VERSION})

    gen: Any = None
    ctx: ssl.SSLContext | None = None  # must outlive gen (the generator borrows it)
    result = ffi.new("tlsr_loadgen_result *")

    def counters() -> dict[str, Any]:
        d: dict[str, Any] = {name: int(getattr(result, name)) for name in _RESULT_FIELDS}
        d["first_error"] = ffi.string(result.first_error).decode("utf-8", "replace")
        return d

    for line in sys.stdin:
        msg = json.loads(line)
        op = msg.get("op")
        try:
            if op == "prepare":
                if gen is not None:
                    lib.tlsr_loadgen_free(gen)
                    gen = None
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                # Like openssl s_time: the generator measures the server, so it does
                # not verify (the orchestrator checked the certificate once).
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                ctx.minimum_version = ctx.maximum_version = TLS_VERSIONS[msg["protocol"]]
                if msg.get("bare_eof"):
                    # For servers that end a response by closing the socket without
                    # close_notify (stock gunicorn): their EOF ends it, not an error.
                    ctx.options |= ssl.OP_IGNORE_UNEXPECTED_EOF
                request = msg["request"].encode("latin-1")
                gen = lib.tlsr_loadgen_new(
                    foreign(ffi, "SSL_CTX *", ssl_ctx_pointer(ctx)),
                    msg["ip"].encode(),
                    int(msg["port"]),
                    msg["sni"].encode(),
                    request,
                    len(request),
                    int(msg["sessions"]),
                    int(bool(msg["resume"])),
                    int(msg["io_timeout_ms"]),
                    int(msg["seed"]),
                )
                if gen == ffi.NULL:
                    gen = None
                    reply({"op": "error", "message": f"tlsr_loadgen_new refused {msg!r}"})
                    continue
                lib.tlsr_loadgen_warm(gen, result)
                reply(
                    {
                        "op": "ready",
                        "warm": counters(),
                        "held": int(lib.tlsr_loadgen_sessions_held(gen)),
                    }
                )
            elif op == "go":
                if gen is None:
                    reply({"op": "error", "message": "go before prepare"})
                    continue
                before = resource.getrusage(resource.RUSAGE_SELF)
                lib.tlsr_loadgen_run(gen, int(msg.get("max", 0)), int(msg["duration_ms"]), result)
                after = resource.getrusage(resource.RUSAGE_SELF)
                cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
                reply({"op": "done", "result": counters(), "cpu": cpu})
            else:
                reply({"op": "error", "message": f"unknown request {op!r}"})
        except (KeyError, ValueError, TypeError) as exc:
            reply({"op": "error", "message": f"bad request {msg!r}: {exc}"})
    if gen is not None:
        lib.tlsr_loadgen_free(gen)
    return 0
