"""The C modules beside the product: the benchmarks' instruments and the tests' hooks.

``tlsresume._core`` is the product and holds neither. ``tlsresume._bench`` holds the
in-memory handshake pairs, the store timer and the load generator;
``tlsresume._testhooks`` is the core built again with hooks that leave a region as a
process killed mid-write would (only crash-recovery tests use it). Each binds the
same OpenSSL that the product found, on first use; a failure here never touches
the product.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any

from . import _binding
from .errors import OpenSSLUnavailableError

__all__ = ["bench", "testhooks", "foreign", "ctx_pointer", "store_functions"]


@functools.cache
def _load(name: str) -> tuple[Any, Any]:
    try:
        module = importlib.import_module(f"tlsresume.{name}")
    except ImportError as exc:
        raise OpenSSLUnavailableError(
            f"tlsresume.{name} is missing or unloadable ({exc}); reinstall tlsresume "
            "with a C compiler available"
        ) from exc
    ffi, lib = module.ffi, module.lib
    libssl, libcrypto = _binding._loaded_libraries()
    err = ffi.new("char[512]")
    if libssl and libcrypto:
        ok = lib.tlsr_binding_init(libssl.encode(), libcrypto.encode(), err, 512)
    else:
        ok = lib.tlsr_binding_init(ffi.NULL, ffi.NULL, err, 512)
    if not ok:
        raise OpenSSLUnavailableError(
            f"tlsresume.{name} cannot reach the OpenSSL Python's ssl module uses: "
            f"{ffi.string(err).decode(errors='replace')}"
        )
    return ffi, lib


def bench() -> tuple[Any, Any]:
    """``(ffi, lib)`` of ``tlsresume._bench``, bound to OpenSSL."""
    return _load("_bench")


def testhooks() -> tuple[Any, Any]:
    """``(ffi, lib)`` of ``tlsresume._testhooks``, bound to OpenSSL (tests only)."""
    return _load("_testhooks")


def store_functions(bench_ffi: Any) -> tuple[Any, Any]:
    """The product's ``tlsr_store_put`` and ``tlsr_store_get`` as function pointers
    of the bench module's types, for ``tlsr_bench_store`` to time."""
    core_ffi, core_lib = _binding.ffi, _binding.lib

    def cast(name: str, ctype: str) -> Any:
        address = int(core_ffi.cast("uintptr_t", core_ffi.addressof(core_lib, name)))
        return bench_ffi.cast(ctype, address)

    return cast("tlsr_store_put", "tlsr_store_put_fn"), cast("tlsr_store_get", "tlsr_store_get_fn")


def foreign(target_ffi: Any, ctype: str, pointer: Any) -> Any:
    """A pointer from the product module as ``ctype`` of another module's ffi."""
    return target_ffi.cast(ctype, int(_binding.ffi.cast("uintptr_t", pointer)))


def ctx_pointer(target_ffi: Any, ctx: Any) -> Any:
    """The ``SSL_CTX *`` of an ``ssl.SSLContext`` as another module's ffi type."""
    return foreign(target_ffi, "SSL_CTX *", _binding.ssl_ctx_pointer(ctx))
