"""cffi build script for tlsresume's C modules (API mode, out of line).

Three modules, each with one header as its contract (the cdef is the header's
block between the CDEF markers):

* ``tlsresume._core``: the product (``tlsresume.h``): binding, regions, key ring,
  session store, client cache, context glue.
* ``tlsresume._bench``: the measuring instruments (``bench/bench.h`` and
  ``bench/loadgen.h``) that ``tlsresume bench`` and ``bench/`` load.
* ``tlsresume._testhooks``: the product's sources built with ``TLSR_TEST_HOOKS``
  (``testhooks.h``), for the crash-recovery tests only.

No OpenSSL library or header is named here: each module resolves OpenSSL at run
time from the copy CPython's _ssl loaded.
"""

from __future__ import annotations

import pathlib
import re

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent
CORE_SOURCES = ["ossl.c", "region.c", "keyring.c", "store.c", "client.c", "ctx.c"]
FLAGS = ["-std=gnu11", "-O2", "-fvisibility=hidden", "-Wall", "-Wextra", "-Wno-unused-parameter"]

# Functions the C core calls back into Python (cffi takes the GIL around them).
# Not in a header: `extern "Python"` is cffi syntax, not C.
PYTHON_CALLBACKS = """
extern "Python" int tlsr_py_remote_get(void *, const uint8_t *, size_t, uint8_t *, size_t);
extern "Python" void tlsr_py_remote_put(void *, const uint8_t *, size_t, const uint8_t *,
                                        size_t, int64_t);
extern "Python" void tlsr_py_remote_remove(void *, const uint8_t *, size_t);
"""


def _cdef(headers: list[str]) -> str:
    blocks = []
    for name in headers:
        text = (HERE / name).read_text()
        blocks.append(text.split("/* CDEF-BEGIN */", 1)[1].split("/* CDEF-END */", 1)[0])
    block = "\n".join(blocks)
    # cffi wants "#define X ..." for values it should take from the compiler.
    block = re.sub(r"^#define (\w+) .*$", r"#define \1 ...", block, flags=re.M)
    # Comments are fine for cffi, but drop them to keep its parser's errors readable.
    return re.sub(r"/\*.*?\*/", "", block, flags=re.S)


def _module(
    name: str,
    headers: list[str],
    sources: list[str],
    extra_cdef: str = "",
    defines: tuple[str, ...] = (),
) -> FFI:
    builder = FFI()
    builder.cdef(_cdef(headers) + extra_cdef)
    builder.set_source(
        f"tlsresume.{name}",
        "\n".join(f'#include "{h}"' for h in headers),
        sources=[str((HERE / s).relative_to(HERE.parent)) for s in sources],
        include_dirs=[
            str(HERE.relative_to(HERE.parent)),
            str((HERE / "bench").relative_to(HERE.parent)),
        ],
        libraries=["dl", "pthread", "rt"],
        define_macros=[(d, "1") for d in defines],
        extra_compile_args=FLAGS,
    )
    return builder


core = _module("_core", ["tlsresume.h"], CORE_SOURCES, PYTHON_CALLBACKS)
bench = _module(
    "_bench",
    ["bench/bench.h", "bench/loadgen.h"],
    ["ossl.c", "bench/bench.c", "bench/loadgen.c"],
    defines=("TLSR_BENCH_MODULE",),
)
# The tests' module carries the whole core again: the hooks reach into the
# ring's and store's internals, and exist in no module but this one.
testhooks = _module(
    "_testhooks",
    ["tlsresume.h", "testhooks.h"],
    CORE_SOURCES,
    PYTHON_CALLBACKS,
    defines=("TLSR_TEST_HOOKS",),
)
ffibuilder = core  # the name older build glue used

if __name__ == "__main__":
    for builder in (core, bench, testhooks):
        builder.compile(tmpdir=str(HERE.parent / "build" / "cffi"), verbose=True)
