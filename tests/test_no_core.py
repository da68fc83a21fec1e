"""The import promise: on a Python where the C core cannot be loaded, ``tlsresume``
still imports, its command still answers ``--help`` and ``keygen``, and the first
use of a core-backed name raises the clear :class:`OpenSSLUnavailableError`.

The core is made unloadable for real: a ``sitecustomize`` on the child's
``PYTHONPATH`` installs an import hook that refuses ``tlsresume._core``, which is
what a broken or wrong-architecture build looks like to Python. The library has no
test switch for this.
"""

from __future__ import annotations

import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import ServerCert
from .support import DEFAULT_TIMEOUT, env_refusing
from .test_client_interop import SServer


@pytest.fixture
def no_core_env(tmp_path: Path) -> dict[str, str]:
    """An environment whose Python cannot load tlsresume's compiled core."""
    return env_refusing(tmp_path / "hook", "tlsresume._core")


def _python(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=DEFAULT_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )


def test_the_hook_really_removes_the_core(no_core_env: dict[str, str]) -> None:
    """Negative control: under the hook the compiled module does not import, so the
    tests below run without a core rather than passing by luck."""
    result = _python(no_core_env, "-c", "import tlsresume._core")
    assert result.returncode != 0
    assert "refused by the test" in result.stderr


def test_cli_module_and_help_work_without_the_core(no_core_env: dict[str, str]) -> None:
    """``import tlsresume.tools.cli`` and ``tlsresume --help`` succeed without a core."""
    result = _python(no_core_env, "-c", "import tlsresume, tlsresume.tools.cli; print('ok')")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    result = _python(no_core_env, "-m", "tlsresume", "--help")
    assert result.returncode == 0, result.stderr
    assert "keygen" in result.stdout and "serve" in result.stdout
    script = Path(sys.executable).parent / "tlsresume"  # the installed entry point
    if script.exists():
        result = subprocess.run(
            [str(script), "--help"],
            env=no_core_env,
            capture_output=True,
            text=True,
            timeout=DEFAULT_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 0, result.stderr
        assert "keygen" in result.stdout


def test_keygen_works_without_the_core(no_core_env: dict[str, str], tmp_path: Path) -> None:
    """``tlsresume keygen --format haproxy --out F`` writes F with mode 0600."""
    out = tmp_path / "tickets.key"
    result = _python(
        no_core_env, "-m", "tlsresume", "keygen", "--format", "haproxy", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert out.is_file() and out.stat().st_size > 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_core_backed_name_raises_the_clear_error(no_core_env: dict[str, str]) -> None:
    """Using ``tlsresume.install`` raises OpenSSLUnavailableError (an ImportError and a
    TLSResumeError) that says what is wrong and how to fix it, on every use."""
    code = textwrap.dedent(
        """
        import tlsresume
        from tlsresume.errors import OpenSSLUnavailableError, TLSResumeError
        for _ in range(2):
            try:
                tlsresume.install
            except OpenSSLUnavailableError as exc:
                assert isinstance(exc, ImportError) and isinstance(exc, TLSResumeError)
                print("MESSAGE:", exc)
            else:
                print("LOADED")
        try:
            from tlsresume import TicketKeyRing
        except ImportError:
            print("FROM-IMPORT: ImportError")
        """
    )
    result = _python(no_core_env, "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("MESSAGE:") == 2, result.stdout
    assert "compiled core is missing or unloadable" in result.stdout
    assert "reinstall" in result.stdout
    assert "FROM-IMPORT: ImportError" in result.stdout


def test_version_works_without_the_core(no_core_env: dict[str, str]) -> None:
    """``tlsresume --version`` names the package and the OpenSSL, and says why the core
    is not there, instead of failing with it."""
    import ssl

    import tlsresume

    result = _python(no_core_env, "-m", "tlsresume", "--version")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    print(result.stdout)
    assert lines[0] == f"tlsresume {tlsresume.__version__}"
    assert ssl.OPENSSL_VERSION in lines
    assert lines[-1].startswith("C core: not available (") and "reinstall" in lines[-1]


def test_client_cache_falls_back_to_pure_python(
    no_core_env: dict[str, str], server_cert: ServerCert
) -> None:
    """Without the core, tlsresume.client_context() is the pure-Python cache: a
    second connection to a real server (openssl s_server, TLS 1.2 and 1.3)
    resumes; server features and persistence raise OpenSSLUnavailableError naming
    why. Control: ssl.create_default_context() in the same process resumes
    nothing."""
    script = textwrap.dedent(
        """
        import socket, ssl, sys
        import tlsresume
        port, cafile = int(sys.argv[1]), sys.argv[2]

        def fetch(ctx):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                    tls.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
                    while tls.recv(65536):
                        pass
                    return tls.session_reused

        cache = tlsresume.ClientSessionCache()
        ctx = tlsresume.client_context(cache, cafile=cafile)
        plain = ssl.create_default_context(cafile=cafile)
        print("backend", cache.backend, type(ctx).__module__)
        from tlsresume.integrations.requests import ResumingAdapter
        assert ResumingAdapter().cache.backend == "python"
        print("tlsresume", [fetch(ctx) for _ in range(4)])
        print("plain", [fetch(plain) for _ in range(4)])
        for call in (lambda: cache.save("x", key=bytes(32)), lambda: tlsresume.TicketKeyRing()):
            try:
                call()
            except tlsresume.OpenSSLUnavailableError as exc:
                print("refused", str(exc)[:60])
        """
    )
    for version in ("1.2", "1.3"):
        server = SServer(server_cert, version)
        try:
            result = _python(no_core_env, "-c", script, str(server.port), server_cert.cafile)
        finally:
            server.stop()
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0] == "backend python tlsresume.pyclient", lines
        assert lines[1] == "tlsresume [False, True, True, True]", (version, lines)
        assert lines[2] == "plain [False, False, False, False]", lines
        assert lines[3].startswith("refused this Python's OpenSSL cannot be reached"), lines
        assert lines[4].startswith("refused tlsresume's compiled core is missing"), lines
