"""Deprecated: this module is now :mod:`tlsresume.context`;
this name goes away in the next release."""

from __future__ import annotations

from tlsresume._deprecated import moved

moved("tlsresume.server", "tlsresume.context")

from tlsresume.context import *  # noqa: E402, F403
from tlsresume.context import __all__ as __all__  # noqa: E402
