"""Build glue: setuptools compiles the C core through cffi (see csrc/build_core.py)."""

from setuptools import setup

setup(cffi_modules=["csrc/build_core.py:ffibuilder"])
