"""cffi build script for the C core (API mode, out of line).

The cdef is the block of ``tlsresume.h`` between the CDEF markers, so the header
stays the one statement of the C contract. No OpenSSL library or header is named
here: the core resolves OpenSSL at run time from the copy CPython's _ssl loaded.
"""

from __future__ import annotations

import pathlib
import re

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent
# Every C file is part of the core. The cdef is tlsresume.h's CDEF block (it
# declares the OpenSSL types the others use) followed by that of each header whose
# C file (same stem) is present: a header describes its own C file.
SOURCES = sorted(p.name for p in HERE.glob("*.c"))
HEADERS = ["tlsresume.h"] + sorted(
    p.name for p in HERE.glob("*.h")
    if p.name != "tlsresume.h" and (HERE / (p.stem + ".c")).exists()
)


def _cdef() -> str:
    blocks = []
    for name in HEADERS:
        text = (HERE / name).read_text()
        if "/* CDEF-BEGIN */" in text:
            blocks.append(text.split("/* CDEF-BEGIN */", 1)[1].split("/* CDEF-END */", 1)[0])
    block = "\n".join(blocks)
    # cffi wants "#define X ..." for values it should take from the compiler.
    block = re.sub(r"^#define (\w+) .*$", r"#define \1 ...", block, flags=re.M)
    # Comments are fine for cffi, but drop them to keep its parser's errors readable.
    return re.sub(r"/\*.*?\*/", "", block, flags=re.S)


# Functions the C core calls back into Python (cffi takes the GIL around them).
# Not in a header: `extern "Python"` is cffi syntax, not C.
PYTHON_CALLBACKS = """
extern "Python" int tlsr_py_remote_get(void *, const uint8_t *, size_t, uint8_t *, size_t);
extern "Python" void tlsr_py_remote_put(void *, const uint8_t *, size_t, const uint8_t *,
                                        size_t, int64_t);
extern "Python" void tlsr_py_remote_remove(void *, const uint8_t *, size_t);
"""

ffibuilder = FFI()
ffibuilder.cdef(_cdef() + PYTHON_CALLBACKS)
ffibuilder.set_source(
    "tlsresume._core",
    "\n".join(f'#include "{h}"' for h in HEADERS),
    sources=[str((HERE / s).relative_to(HERE.parent)) for s in SOURCES],
    include_dirs=[str(HERE.relative_to(HERE.parent))],
    libraries=["dl", "pthread", "rt"],
    extra_compile_args=["-std=gnu11", "-O2", "-fvisibility=hidden", "-Wall", "-Wextra",
                        "-Wno-unused-parameter"],
)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=str(HERE.parent / "build" / "cffi"), verbose=True)
