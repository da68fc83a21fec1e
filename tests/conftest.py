"""Shared fixtures: certificates from trustme, and ``tlsresume serve`` subprocesses
that are always stopped in teardown."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from .support import PYSRC, ServeProcess

try:
    import tlsresume  # noqa: F401  (installed: CI runs `pip install .[test]` first)
except ModuleNotFoundError:
    # A source checkout whose core was built in place (`setup.py build_ext
    # --inplace`); subprocesses get the same through support.child_env().
    sys.path.insert(0, str(PYSRC))


@dataclass(frozen=True)
class ServerCert:
    """Files for a server certificate issued by a throwaway CA."""

    cert: str  # leaf + chain, PEM
    key: str  # private key, PEM
    cafile: str  # the CA to trust, PEM


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """A throwaway certificate authority for the whole run."""
    return trustme.CA()


@pytest.fixture(scope="session")
def server_cert(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> ServerCert:
    """A server certificate for localhost, 127.0.0.1 and ::1, written to files."""
    leaf = ca.issue_cert("localhost", "127.0.0.1", "::1")
    d = tmp_path_factory.mktemp("certs")
    cert, key, cafile = d / "cert.pem", d / "key.pem", d / "ca.pem"
    leaf.private_key_pem.write_to_path(str(key))
    with open(cert, "wb") as f:
        for blob in leaf.cert_chain_pems:
            f.write(blob.bytes())
    ca.cert_pem.write_to_path(str(cafile))
    return ServerCert(str(cert), str(key), str(cafile))


ServeFactory = Callable[..., ServeProcess]


def _factory(server_cert: ServerCert, started: list[ServeProcess]) -> ServeFactory:
    def start(*args: str, cert: bool = True) -> ServeProcess:
        extra = ["--cert", server_cert.cert, "--key", server_cert.key] if cert else []
        server = ServeProcess.start([*extra, *args])
        started.append(server)
        return server

    return start


@pytest.fixture
def serve(server_cert: ServerCert) -> Iterator[ServeFactory]:
    """Start ``tlsresume serve --port 0 --cert ... --key ... ARGS``; stopped at teardown.

    Call it as ``serve("--workers", "4", "--no-share")``; ``cert=False`` leaves the
    certificate out (for the self-signed path).
    """
    started: list[ServeProcess] = []
    yield _factory(server_cert, started)
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def serve_module(server_cert: ServerCert) -> Iterator[ServeFactory]:
    """Like ``serve``, but the servers live for the whole test module."""
    started: list[ServeProcess] = []
    yield _factory(server_cert, started)
    for server in started:
        server.stop()


@pytest.fixture
def private_runtime_dir() -> Iterator[Path]:
    """A region directory of this test's own (tmpfs, mode 0700), for subprocesses
    given ``TLSRESUME_RUNTIME_DIR``; removed afterwards with whatever is left in it.
    Tests that clean up or count regions use one, so they never touch the regions
    of other test runs on the machine."""
    d = Path(tempfile.mkdtemp(prefix="tlsresume-test-", dir="/dev/shm"))
    os.chmod(d, 0o700)
    yield d
    shutil.rmtree(d, ignore_errors=True)
