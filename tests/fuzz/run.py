"""Run one harness under atheris (coverage-guided).

    python -m tests.fuzz.run NAME [libFuzzer options]     # NAME: keyfile, client_cache, ring, store

e.g. ``-max_total_time=60`` (what CI runs) or ``-runs=1000000``. Each run starts from
a seed corpus made here (a real key file of every format, a real cache file, the
pristine region images), in a temporary directory unless ``-corpus DIR`` is
given last. A finding is an uncaught exception or a crash; libFuzzer prints the
input and exits non-zero.
"""

from __future__ import annotations

import os
import sys
import tempfile


def _seeds(name: str, where: str) -> None:
    from tlsresume import keyfile

    from . import harnesses

    blobs: list[bytes] = []
    if name == "keyfile":
        for fmt in keyfile.FORMATS:
            path = os.path.join(where, f"k-{fmt}")
            keyfile.write(path, keyfile.generate(fmt), fmt)
            with open(path, "rb") as f:
                blobs.append(f.read())
            os.unlink(path)
    elif name == "client_cache":
        blobs.append(harnesses.client_cache_seed())
    else:
        blobs.append(b"\x00\x00\x00")  # no patch: the pristine image
        blobs.append(bytes(harnesses._region(name)[2]))
    for i, blob in enumerate(blobs):
        with open(os.path.join(where, f"seed-{i}"), "wb") as f:
            f.write(blob)


def main() -> None:
    import atheris

    with atheris.instrument_imports():
        from . import harnesses
    name, options = sys.argv[1], sys.argv[2:]
    target = harnesses.HARNESSES[name]
    corpus = tempfile.mkdtemp(prefix=f"tlsresume-fuzz-{name}-")
    _seeds(name, corpus)
    if not any(o.startswith("-artifact_prefix=") for o in options):
        options.append(f"-artifact_prefix={corpus}/")  # findings stay out of the tree
    atheris.Setup([sys.argv[0], *options, corpus], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
