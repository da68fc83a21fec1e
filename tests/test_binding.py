"""Binding to the OpenSSL that CPython loaded, and reaching into ssl objects."""

from __future__ import annotations

import ssl
import subprocess
import sys
import textwrap

import pytest

import tlsresume
from tlsresume import _binding


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )


def test_binds_to_the_openssl_python_uses() -> None:
    """The core resolved the very OpenSSL whose version ssl reports."""
    assert _binding.lib.tlsr_openssl_version_num() == ssl.OPENSSL_VERSION_NUMBER


def test_unreachable_openssl_raises_clear_import_error() -> None:
    """With libssl's symbols hidden from the global namespace (as in statically linked
    Pythons) and no library paths found, the first use of a core-backed name fails
    with a clear ImportError, no crash; ``import tlsresume`` alone still succeeds."""
    result = run_python("""
        import builtins
        real_open = builtins.open
        def no_proc(path, *a, **k):
            if str(path) == "/proc/self/maps":
                raise OSError("no /proc here")
            return real_open(path, *a, **k)
        builtins.open = no_proc
        import tlsresume
        try:
            from tlsresume import TicketKeyRing
        except ImportError as exc:
            from tlsresume.errors import OpenSSLUnavailableError, TLSResumeError
            assert isinstance(exc, OpenSSLUnavailableError) and isinstance(exc, TLSResumeError)
            print("MESSAGE:", exc)
        else:
            print("IMPORTED")
    """)
    assert result.returncode == 0, result.stderr
    assert "MESSAGE:" in result.stdout, result.stdout
    assert "cannot reach the OpenSSL used by Python's ssl module" in result.stdout
    assert "python-build-standalone" in result.stdout and "pyenv" in result.stdout


def test_binding_never_loads_a_second_openssl() -> None:
    """Asking the core to bind a library that is not loaded fails; nothing gets loaded."""
    import importlib.util

    core_path = importlib.util.find_spec("tlsresume._core").origin  # type: ignore[union-attr]
    result = run_python(f"""
        import importlib.util
        spec = importlib.util.spec_from_file_location("_core", {core_path!r})
        core = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(core)  # the compiled module alone, not the package
        ffi, lib = core.ffi, core.lib
        import ssl  # libssl is now loaded, but that is not the path asked for
        err = ffi.new("char[256]")
        ok = lib.tlsr_binding_init(b"/usr/lib/x86_64-linux-gnu/libssl.so.1.1.nonexistent",
                                   b"/usr/lib/x86_64-linux-gnu/libcrypto.so.1.1.nonexistent",
                                   err, 256)
        print(ok, ffi.string(err).decode())
    """)
    assert result.stdout.startswith("0 "), result.stdout + result.stderr
    assert "is not loaded in this process" in result.stdout


def test_context_pointer_is_checked_against_options() -> None:
    """The SSL_CTX read from a context is the context's own (options agree both ways)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    pointer = _binding.ssl_ctx_pointer(ctx)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    assert _binding.lib.tlsr_ctx_options(pointer) == int(ctx.options)


def test_subclassed_and_default_contexts_are_accepted() -> None:
    """install() works on SSLContext subclasses and create_default_context(CLIENT_AUTH)."""

    class MyContext(ssl.SSLContext):
        pass

    with tlsresume.TicketKeyRing() as ring:
        for ctx in (
            MyContext(ssl.PROTOCOL_TLS_SERVER),
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH),
        ):
            assert tlsresume.installed_ring(tlsresume.install(ctx, ring))


def test_non_session_object_is_refused() -> None:
    """session_ticket() wants an ssl.SSLSession."""
    with pytest.raises(TypeError, match="SSLSession"):
        tlsresume.session_ticket(object())  # type: ignore[arg-type]


def test_product_module_carries_no_benchmark_or_test_hook() -> None:
    """The product module (tlsresume._core) neither exposes nor contains benchmark
    code or test hooks: they live in tlsresume._bench and tlsresume._testhooks."""
    import shutil
    import subprocess

    import tlsresume._core as core
    from tlsresume._extra import bench, testhooks

    names = set(dir(core.lib))
    assert not {n for n in names if "bench" in n or "loadgen" in n or "debug" in n}
    assert "tlsr_ctx_use_ring" in names and "tlsr_store_put" in names
    if shutil.which("nm"):
        dynamic = subprocess.run(
            ["nm", "-D", "--defined-only", core.__file__],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        every = subprocess.run(["nm", core.__file__], capture_output=True, text=True).stdout
        for text in (dynamic, every):
            assert "loadgen" not in text and "bench" not in text and "debug_die" not in text
    # the instruments and hooks are where they belong, and bound
    assert hasattr(bench()[1], "tlsr_loadgen_new")
    assert hasattr(testhooks()[1], "tlsr_ring_debug_die_in_write")
