"""Deprecated: this module is now :mod:`tlsresume.tools.check`;
this name goes away in the next release."""

from __future__ import annotations

from tlsresume._deprecated import moved

moved("tlsresume.check", "tlsresume.tools.check")

from tlsresume.tools.check import *  # noqa: E402, F403
from tlsresume.tools.check import __all__ as __all__  # noqa: E402
