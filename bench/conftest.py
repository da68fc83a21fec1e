"""Fixtures for the pytest-benchmark suite (run: python -m pytest bench/)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pairs import Certs  # noqa: E402


@pytest.fixture(scope="session")
def certs() -> Certs:
    return Certs()
