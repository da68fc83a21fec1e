"""Deprecated: this module is now :mod:`tlsresume.tools.serve`;
this name goes away in the next release."""

from __future__ import annotations

from tlsresume._deprecated import moved

moved("tlsresume.serve", "tlsresume.tools.serve")

from tlsresume.tools.serve import *  # noqa: E402, F403
from tlsresume.tools.serve import __all__ as __all__  # noqa: E402
