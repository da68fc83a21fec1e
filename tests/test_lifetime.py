"""How long named regions live: they outlive their processes until removed;
``tlsresume stats --cleanup`` removes those no process uses, whoever made them;
``TicketKeyRing.open(name, remove_at_exit=True)`` removes the name when its creator
exits.

Every process here is real and every test has a region directory of its own
(``private_runtime_dir``), so a cleanup never reaches another run's regions.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tlsresume.regions import LEFTOVER_MIN_AGE

from .support import DEFAULT_TIMEOUT, ServeProcess, child_env, tlsresume_cmd


def _env(runtime_dir: Path) -> dict[str, str]:
    return child_env(TLSRESUME_RUNTIME_DIR=str(runtime_dir))


def _python(runtime_dir: Path, code: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=_env(runtime_dir),
        capture_output=True,
        text=True,
        timeout=DEFAULT_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


class Holder:
    """A Python process that runs ``code`` (which makes or attaches regions), says
    ``ready``, and holds them until told to exit."""

    def __init__(self, runtime_dir: Path, code: str) -> None:
        script = textwrap.dedent(code) + "\nprint('ready', flush=True)\nsys.stdin.readline()\n"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import sys\n" + script],
            env=_env(runtime_dir),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    def exit(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        return self.proc.wait(timeout=DEFAULT_TIMEOUT)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=DEFAULT_TIMEOUT)


def _files(runtime_dir: Path) -> set[str]:
    return {p.name for p in runtime_dir.iterdir() if p.name.startswith("tlsresume.")}


def _cleanup(runtime_dir: Path) -> subprocess.CompletedProcess[str]:
    """``tlsresume stats --cleanup`` in ``runtime_dir``; it must succeed."""
    out = subprocess.run(
        tlsresume_cmd("stats", "--cleanup"),
        env=_env(runtime_dir),
        capture_output=True,
        text=True,
        timeout=DEFAULT_TIMEOUT,
    )
    print(out.stdout)
    assert out.returncode == 0, out.stderr
    return out


def test_cleanup_removes_every_region_no_process_uses(private_runtime_dir, server_cert) -> None:  # type: ignore[no-untyped-def]
    """Regions whose processes all exited go, whatever made them; a region held by
    a live process, one still attached after its creator exited, and a running
    serve's stay."""
    d = private_runtime_dir
    _python(
        d,
        """
        import tlsresume
        tlsresume.TicketKeyRing.open("gone")
        tlsresume.SessionStore.open("gone", "1M")
        tlsresume.TicketKeyRing(name="serve-1")  # a serve-like name, its process gone
        """,
    )
    alive = Holder(d, "import tlsresume\nring = tlsresume.TicketKeyRing.open('alive')")
    _python(d, "import tlsresume; tlsresume.TicketKeyRing.open('handed')")
    attached = Holder(d, "import tlsresume\nring = tlsresume.TicketKeyRing.attach('handed')")
    server = ServeProcess.start(
        ["--workers", "1", "--cert", server_cert.cert, "--key", server_cert.key], env=_env(d)
    )
    try:
        before = _files(d)
        assert {
            "tlsresume.ring.gone",
            "tlsresume.store.gone",
            "tlsresume.ring.serve-1",
            "tlsresume.ring.alive",
            "tlsresume.ring.handed",
            f"tlsresume.ring.{server.ring_name}",
            f"tlsresume.store.{server.store_name}",
        } <= before, before
        time.sleep(LEFTOVER_MIN_AGE + 0.2)  # older than a region being made
        out = _cleanup(d)
        after = _files(d)
        removed = before - after
        assert removed == {
            "tlsresume.ring.gone",
            "tlsresume.store.gone",
            "tlsresume.store.gone.sessions",  # the rings' own session stores go with them
            "tlsresume.ring.serve-1",
            "tlsresume.store.serve-1.sessions",
        }, (removed, out.stdout)
        for name in removed:
            assert f"removed {d / name} (no process maps it" in out.stdout
        # Once the last user exits, its region goes at the next cleanup too.
        attached.exit()
        time.sleep(0.1)
        again = _cleanup(d)
        handed = {"tlsresume.ring.handed", "tlsresume.store.handed.sessions"}
        assert before - _files(d) == removed | handed, again.stdout
    finally:
        alive.kill()
        attached.kill()
        server.stop()


def test_remove_at_exit_removes_the_name_when_its_creator_exits(private_runtime_dir) -> None:  # type: ignore[no-untyped-def]
    """The creator's exit removes the name; an attacher that asked the same, and a
    forked child of the creator, do not; without the option the name stays."""
    d = private_runtime_dir
    ring_file = d / "tlsresume.ring.shortlived"
    creator = Holder(
        d,
        """
        import os, tlsresume
        ring = tlsresume.TicketKeyRing.open("shortlived", remove_at_exit=True)
        pid = os.fork()
        if pid == 0:
            sys.exit(0)  # a forked child's normal exit runs the atexit handlers too
        os.waitpid(pid, 0)
        """,
    )
    try:
        assert ring_file.exists()  # the forked child's exit left it
        _python(
            d,
            """
            import tlsresume
            ring = tlsresume.TicketKeyRing.open("shortlived", remove_at_exit=True)
            assert ring.name == "shortlived"
            """,
        )
        assert ring_file.exists()  # an attacher never removes it
        assert creator.exit() == 0
        assert not ring_file.exists()
    finally:
        creator.kill()
    # The default is unchanged: the name outlives its creator.
    _python(d, "import tlsresume; tlsresume.TicketKeyRing.open('longlived')")
    assert (d / "tlsresume.ring.longlived").exists()
