"""The one private bridge between Python and the C core.

It loads the compiled module, binds it to the OpenSSL that CPython's ``_ssl``
already loaded (never a second copy), checks that the versions agree, and turns C
error codes into exceptions. Everything else in the package goes through here.
"""

from __future__ import annotations

import os
import ssl
import sys
from typing import Any

from .errors import (
    ContextError,
    CoreError,
    LayoutError,
    OpenSSLUnavailableError,
    SharedMemoryError,
    TLSResumeError,
)

try:
    from ._core import ffi, lib
except ImportError as exc:  # pragma: no cover - only on a broken install
    raise OpenSSLUnavailableError(
        f"tlsresume's compiled core is missing or unloadable ({exc}); reinstall "
        "tlsresume with a C compiler and the Python headers available"
    ) from exc

__all__ = ["ffi", "lib", "ssl_ctx_pointer", "ssl_session_pointer", "check", "MIN_OPENSSL"]

MIN_OPENSSL = 0x30000000

_STATIC_HINT = (
    "This happens with Pythons that link OpenSSL statically and hide its symbols, "
    "such as python-build-standalone builds (the ones uv installs). Use a Python "
    "whose ssl module loads a shared libssl: the system Python, pyenv, the "
    "official installers, Debian/Ubuntu/Fedora packages, or conda."
)


def _loaded_libraries() -> tuple[str | None, str | None]:
    """Paths of the libssl and libcrypto mapped into this process by ``_ssl``."""
    import _ssl  # noqa: F401  (make sure the libraries are mapped)

    libssl = libcrypto = None
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                path = line.rstrip("\n").split(None, 5)[-1] if " /" in line else ""
                base = os.path.basename(path)
                if base.startswith("libssl.so") and libssl is None:
                    libssl = path
                elif base.startswith("libcrypto.so") and libcrypto is None:
                    libcrypto = path
    except OSError:
        pass  # no /proc (not Linux): fall back to the global namespace
    return libssl, libcrypto


def _bind() -> None:
    err = ffi.new("char[512]")
    libssl, libcrypto = _loaded_libraries()
    ok = False
    if libssl and libcrypto:
        ok = bool(lib.tlsr_binding_init(libssl.encode(), libcrypto.encode(), err, 512))
    if not ok:
        # _ssl may carry OpenSSL inside itself with visible symbols.
        first = ffi.string(err).decode(errors="replace")
        ok = bool(lib.tlsr_binding_init(ffi.NULL, ffi.NULL, err, 512))
        if not ok:
            detail = first or ffi.string(err).decode(errors="replace")
            raise OpenSSLUnavailableError(
                f"tlsresume cannot reach the OpenSSL used by Python's ssl module "
                f"({ssl.OPENSSL_VERSION}): {detail}. {_STATIC_HINT}"
            )
    found = lib.tlsr_openssl_version_num()
    if found != ssl.OPENSSL_VERSION_NUMBER:
        raise OpenSSLUnavailableError(
            f"tlsresume resolved OpenSSL {found:#x}, but Python's ssl module reports "
            f"{ssl.OPENSSL_VERSION_NUMBER:#x} ({ssl.OPENSSL_VERSION}); two OpenSSL copies "
            "are loaded and tlsresume will not guess which one ssl uses"
        )
    if found < MIN_OPENSSL:
        raise OpenSSLUnavailableError(
            f"tlsresume needs OpenSSL 3.0 or newer; this Python uses {ssl.OPENSSL_VERSION}"
        )


def _check_interpreter() -> None:
    if sys.implementation.name != "cpython":
        raise OpenSSLUnavailableError(
            f"tlsresume reads CPython's ssl objects and supports CPython only, "
            f"not {sys.implementation.name}"
        )


_check_interpreter()
_bind()

# ---- errors ------------------------------------------------------------------

_MESSAGES = {
    lib.TLSR_E_NOMEM: "out of memory",
    lib.TLSR_E_SYS: "system call failed",
    lib.TLSR_E_EXISTS: "a shared region with that name already exists",
    lib.TLSR_E_NOTFOUND: "no shared region with that name exists",
    lib.TLSR_E_BADREGION: (
        "the shared region is not a tlsresume region of this version (another "
        "tlsresume version made it: stop the processes using it and delete its file in "
        "tlsresume.stats.region_dir(), or pick another name)"
    ),
    lib.TLSR_E_NOTOWNER: (
        "the shared region belongs to another user or is readable by others, so it is "
        "never used; remove it (as its owner or root) or pick another name"
    ),
    lib.TLSR_E_BUSY: "the shared region's lock was not obtained in time",
    lib.TLSR_E_ARG: "invalid argument",
    lib.TLSR_E_OPENSSL: "OpenSSL reported an error",
    lib.TLSR_E_NOTREADY: "the shared region was never fully initialised by its creator",
    lib.TLSR_E_UNBOUND: "the core is not bound to OpenSSL",
}


def check(code: int, what: str) -> int:
    """Raise for a negative TLSR_E_* ``code`` from the C core; else return it."""
    if code >= 0:
        return code
    raise error_for(-code, what)


def error_for(code: int, what: str) -> TLSResumeError:
    """The exception for a positive TLSR_E_* ``code``, with context ``what``.

    A :class:`SharedMemoryError` or :class:`CoreError` carries ``code`` as its
    ``code`` attribute, so callers decide by the code, never by the message.
    """
    message = f"{what}: {_MESSAGES.get(code, f'error {code}')}"
    exc: SharedMemoryError | CoreError
    if code == lib.TLSR_E_SYS:
        errno = ffi.errno
        exc = SharedMemoryError(errno, f"{message} ({os.strerror(errno)})")
    elif code in (
        lib.TLSR_E_EXISTS,
        lib.TLSR_E_NOTFOUND,
        lib.TLSR_E_BADREGION,
        lib.TLSR_E_NOTOWNER,
        lib.TLSR_E_NOTREADY,
    ):
        exc = SharedMemoryError(message)
    elif code == lib.TLSR_E_OPENSSL:
        buf = ffi.new("char[1024]")
        lib.tlsr_drain_errors(buf, 1024)
        detail = ffi.string(buf).decode(errors="replace")
        exc = CoreError(f"{message}: {detail}" if detail else message)
    elif code == lib.TLSR_E_ARG:
        return ValueError(message)  # type: ignore[return-value]
    else:
        exc = CoreError(message)
    exc.code = code
    return exc


# ---- reaching OpenSSL objects inside CPython's ssl objects ------------------------
#
# _ssl._SSLContext, _ssl._SSLSocket and _ssl.SSLSession all keep their OpenSSL
# pointer as the first field after the object header, i.e. at offset
# object.__basicsize__ (16, or 32 on free-threaded builds). Same layout 3.10-3.14.

_POINTER_OFFSET = object.__basicsize__


def _unwrap_context(ctx: Any) -> ssl.SSLContext:
    """The real ``ssl.SSLContext`` behind ``ctx`` (truststore wraps one)."""
    import _ssl

    if isinstance(ctx, _ssl._SSLContext):
        return ctx  # type: ignore[return-value]
    inner = getattr(ctx, "_ctx", None)  # truststore.SSLContext keeps one here
    if isinstance(inner, _ssl._SSLContext):
        return inner  # type: ignore[return-value]
    raise TypeError(
        f"expected an ssl.SSLContext (or a subclass), got {type(ctx).__module__}."
        f"{type(ctx).__qualname__}"
    )


def ssl_ctx_pointer(ctx: Any) -> Any:
    """The ``SSL_CTX *`` inside ``ctx``, checked against the context's options."""
    real = _unwrap_context(ctx)
    pointer = ffi.cast("SSL_CTX **", id(real) + _POINTER_OFFSET)[0]
    if pointer == ffi.NULL or lib.tlsr_ctx_options(pointer) != int(real.options):
        raise ContextError(
            "could not locate the OpenSSL SSL_CTX inside this SSLContext; this CPython "
            f"({sys.version.split()[0]}) lays out ssl objects differently than expected"
        )
    return pointer


def ssl_session_pointer(session: ssl.SSLSession) -> Any:
    """The ``SSL_SESSION *`` inside a Python ``ssl.SSLSession``."""
    if not isinstance(session, ssl.SSLSession):
        raise TypeError(f"expected ssl.SSLSession, got {type(session).__qualname__}")
    pointer = ffi.cast("SSL_SESSION **", id(session) + _POINTER_OFFSET)[0]
    if pointer == ffi.NULL or lib.tlsr_session_time(pointer) != session.time:
        raise LayoutError(
            "could not locate the OpenSSL session inside this SSLSession; this CPython "
            f"({sys.version.split()[0]}) lays out ssl objects differently than expected"
        )
    return pointer
