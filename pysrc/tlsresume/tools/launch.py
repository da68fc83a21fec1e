"""The one way tlsresume's tools (and its tests) start a ``tlsresume serve`` subprocess.

``demo`` and ``bench`` start real ``tlsresume serve`` masters; they all go through
:func:`start_serve`, so every such child imports the same tlsresume as its parent
(:func:`child_env`), never outlives a parent killed with SIGKILL
(:func:`die_with_parent`), and reads nothing from our stdin. Needs no C core.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

__all__ = ["serve_argv", "start_serve", "child_env", "die_with_parent"]

_File = int | IO[Any] | None


def serve_argv(args: Sequence[str]) -> list[str]:
    """``python -m tlsresume serve ARGS`` with this interpreter."""
    return [sys.executable, "-m", "tlsresume", "serve", *args]


def start_serve(
    args: Sequence[str],
    *,
    stdout: _File = subprocess.PIPE,
    stderr: _File = None,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    new_session: bool = False,
) -> subprocess.Popen[bytes]:
    """Start ``tlsresume serve ARGS`` as a child process; do not wait for it.

    Args:
        args: the ``serve`` options (``--port 0`` is not added: say it).
        stdout, stderr: as for ``subprocess.Popen``; the listening line goes to stdout.
        env: the child's environment (default :func:`child_env`).
        cwd: the child's working directory.
        new_session: start it in a session and process group of its own, as a server
            on another machine would be (a signal to our group does not reach it).

    Returns:
        The running process; the caller waits for its listening line
        (:func:`tlsresume.tools.serve.parse_listening_line`) and stops it.
    """
    return subprocess.Popen(
        serve_argv(args),
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        env=env if env is not None else child_env(),
        cwd=cwd,
        start_new_session=new_session,
        # If we die without cleaning up (SIGKILL), the server gets SIGTERM from the
        # kernel and stops its workers: no strays.
        preexec_fn=die_with_parent,
    )


def child_env() -> dict[str, str]:
    """``os.environ``, plus a ``PYTHONPATH`` that finds this very copy of tlsresume.

    A child interpreter (a ``--spawn`` worker, the servers ``demo`` starts) must
    import the same tlsresume as its parent, wherever that came from: an installed
    wheel, or a source tree put on ``sys.path`` by hand or by a test. A package in
    site-packages needs nothing (and putting site-packages on ``PYTHONPATH`` would
    rank it above the standard library).
    """
    import site

    env = dict(os.environ)
    pkg_parent = os.path.realpath(Path(__file__).resolve().parents[2])
    site_dirs = {os.path.realpath(p) for p in site.getsitepackages()}
    if site.ENABLE_USER_SITE:
        site_dirs.add(os.path.realpath(site.getusersitepackages()))
    if pkg_parent not in site_dirs:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_parent, env.get("PYTHONPATH", "")) if p)
    return env


def die_with_parent() -> None:
    """Ask Linux to send this process SIGTERM when its parent dies.

    For ``subprocess.Popen(preexec_fn=...)``: a server started by a script or a test
    then stops (and stops its workers) even if that script is killed with SIGKILL.
    Does nothing where ``prctl`` is not available.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        pass
