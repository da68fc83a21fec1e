"""Build glue: setuptools compiles the C modules through cffi (see csrc/build_core.py)."""

from setuptools import setup

setup(cffi_modules=["csrc/build_core.py:core", "csrc/build_core.py:bench",
                    "csrc/build_core.py:testhooks"])
