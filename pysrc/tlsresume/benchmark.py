"""Deprecated: this module is now :mod:`tlsresume.tools.bench`;
this name goes away in the next release."""

from __future__ import annotations

from tlsresume._deprecated import moved

moved("tlsresume.benchmark", "tlsresume.tools.bench")

from tlsresume.tools.bench import *  # noqa: E402, F403
from tlsresume.tools.bench import __all__ as __all__  # noqa: E402

if __name__ == "__main__":
    import sys

    sys.exit(main())  # noqa: F405
