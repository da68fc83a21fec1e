"""Deprecated: this module is now :mod:`tlsresume.regions` (finding regions, reading
their counters) and :mod:`tlsresume.tools.stats` (text output); this name goes away
in the next release."""

from __future__ import annotations

from tlsresume._deprecated import moved

moved("tlsresume.stats", "tlsresume.regions")

from tlsresume.regions import *  # noqa: E402, F403
from tlsresume.regions import __all__ as _regions_all  # noqa: E402
from tlsresume.tools.stats import render_text  # noqa: E402

__all__ = [*_regions_all, "render_text"]
