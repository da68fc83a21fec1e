"""The Python in README.md and docs/*.md runs as written, and their install lines
work from a checkout.

Every ```` ```python ```` block of a file is run, in order, in one fresh
interpreter per file (a reader pasting the blocks into one session), with the
working directory holding what the examples name: ``cert.pem``/``key.pem`` (a
certificate for localhost), ``haproxy.keys``, ``nginx.key`` and ``ticket.key``. A block that
cannot run on loopback alone (it needs a Redis, a deployed service's files, or
runs a server until killed) is preceded by a comment that says why::

    <!-- not-run: needs a running Redis -->

and is only compiled-checked when it is a program (a fragment of a coroutine or
an API summary is not even that, and says so).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from tlsresume import TicketKey, keyfile

from .support import DEFAULT_TIMEOUT, ROOT, child_env

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE_RE = re.compile(r"^```(\S*)\s*$")
_NOT_RUN_RE = re.compile(r"^<!--\s*not-run:(.*?)-->\s*$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    code: str
    not_run: str | None  # the stated reason, or None: it runs


def python_blocks(path: Path) -> list[Block]:
    """The ```python blocks of ``path``, each with the not-run reason above it."""
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE_RE.match(lines[i])
        if m is None:
            i += 1
            continue
        start, lang = i, m.group(1)
        i += 1
        body: list[str] = []
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence
        if lang != "python":
            continue
        above = lines[start - 1] if start > 0 else ""
        marker = _NOT_RUN_RE.match(above)
        reason = marker.group(1).strip() if marker else None
        blocks.append(Block(path, start + 1, "\n".join(body) + "\n", reason))
    return blocks


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files the examples name, as a reader following them would have."""
    d = tmp_path_factory.mktemp("docs")
    leaf = trustme.CA().issue_cert("localhost", "127.0.0.1")
    leaf.private_key_pem.write_to_path(str(d / "key.pem"))
    with open(d / "cert.pem", "wb") as f:
        for blob in leaf.cert_chain_pems:
            f.write(blob.bytes())
    keyfile.write(d / "haproxy.keys", keyfile.generate("haproxy", None), "haproxy")
    keyfile.write(d / "nginx.key", TicketKey.generate(80), "nginx")
    keyfile.write(d / "ticket.key", TicketKey.generate(80), "openssl80")
    return d


# Runs the blocks of one file in one namespace, each compiled under its own
# file:line so a traceback names the block.
_RUNNER = textwrap.dedent(
    """
    import json, sys
    blocks = json.load(open(sys.argv[1]))
    namespace = {"__name__": "__docs__"}
    for block in blocks:
        print("running", block["where"], flush=True)
        exec(compile(block["code"], block["where"], "exec"), namespace)
    print("all ran", flush=True)
    """
)


@pytest.mark.parametrize("path", DOCS, ids=_rel)
def test_python_blocks_run_as_written(
    path: Path, workdir: Path, private_runtime_dir: Path, tmp_path: Path
) -> None:
    blocks = python_blocks(path)
    runnable = [b for b in blocks if b.not_run is None]
    for block in blocks:
        print(f"{_rel(path)}:{block.line}: {block.not_run or 'runs'}")
    if not runnable:
        pytest.skip(f"{_rel(path)} has no block that runs on loopback alone")
    spec = tmp_path / "blocks.json"
    spec.write_text(
        json.dumps([{"where": f"{_rel(b.path)}:{b.line}", "code": b.code} for b in runnable])
    )
    env = child_env(TLSRESUME_RUNTIME_DIR=str(private_runtime_dir))
    proc = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(spec)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=DEFAULT_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0 and "all ran" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize("path", DOCS, ids=_rel)
def test_every_skipped_block_says_why(path: Path) -> None:
    """A not-run marker states its reason; a skipped block that is a program still
    compiles (so a typo cannot hide behind the marker), unless the reason says it
    is a fragment or a summary."""
    for block in python_blocks(path):
        if block.not_run is None:
            continue
        assert len(block.not_run) >= 10, f"{_rel(path)}:{block.line}: say why it is not run"
        if "fragment" in block.not_run or "summary" in block.not_run:
            continue
        compile(block.code, f"{_rel(path)}:{block.line}", "exec")


def test_not_run_markers_sit_right_above_a_python_block() -> None:
    """A marker anywhere else would silently mark nothing."""
    for path in DOCS:
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if _NOT_RUN_RE.match(line):
                below = lines[i + 1] if i + 1 < len(lines) else ""
                assert below.strip() == "```python", f"{_rel(path)}:{i + 1}: marker above {below!r}"


_INSTALL_RE = re.compile(r"pip install\b([^`&;|#)\n]*)")
_INDEX_NAME_RE = re.compile(r"^tlsresume(\[.*\])?([=<>~!].*)?$")


def installs_from_an_index(line: str) -> bool:
    """Whether a ``pip install`` in ``line`` names the tlsresume project (which an
    index would have to serve) rather than a path (``.``, ``dist/tlsresume-*.whl``)."""
    for m in _INSTALL_RE.finditer(line):
        for token in m.group(1).split():
            if _INDEX_NAME_RE.match(token.strip("'\"")):
                return True
    return False


def test_install_lines_install_from_a_checkout_or_a_wheel() -> None:
    """No `pip install tlsresume` or `pip install 'tlsresume[extra]'` in the docs:
    tlsresume is not on an index yet, so those lines fail for every reader."""
    found = []
    for path in [*DOCS, ROOT / "CHANGELOG.md"]:
        if not path.exists():
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if installs_from_an_index(line):
                found.append(f"{_rel(path)}:{number}: {line.strip()}")
    assert not found, "install from a checkout ('.[extra]') or a wheel instead:\n" + "\n".join(
        found
    )


def test_the_install_check_catches_the_index_forms() -> None:
    """Negative control for the pattern above."""
    bad = [
        "pip install tlsresume gunicorn",
        "pip install 'tlsresume[redis]'",
        'pip install "tlsresume[plot]"',
        "python -m pip install -U tlsresume",
    ]
    good = [
        "pip install '.[redis]'",
        "pip install . gunicorn",
        "pip install dist/tlsresume-0.1.0-cp311-cp311-linux_x86_64.whl",
        "pip install 'dist/tlsresume-*.whl[redis]'",
        "pip install -e '.[test]'",
        "pip install . && tlsresume bench --quick",
        "pip install '.[redis]'; tlsresume serve",
    ]
    assert all(installs_from_an_index(line) for line in bad)
    assert not any(installs_from_an_index(line) for line in good)


def test_changelog_starts_with_this_release_and_ships() -> None:
    """CHANGELOG.md's first entry is the package's version, and the sdist carries it
    beside the README."""
    import tlsresume

    text = (ROOT / "CHANGELOG.md").read_text()
    first = next(line for line in text.splitlines() if line.startswith("## "))
    assert first.startswith(f"## {tlsresume.__version__} "), first
    manifest = (ROOT / "MANIFEST.in").read_text().split()
    assert "README.md" in manifest and "CHANGELOG.md" in manifest
