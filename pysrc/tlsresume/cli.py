"""Deprecated: this module is now :mod:`tlsresume.tools.cli`;
this name goes away in the next release."""

from __future__ import annotations

from tlsresume._deprecated import moved

moved("tlsresume.cli", "tlsresume.tools.cli")

from tlsresume.tools.cli import *  # noqa: E402, F403
from tlsresume.tools.cli import __all__ as __all__  # noqa: E402
