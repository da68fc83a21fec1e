"""Key file import/export: layouts byte for byte, roles, atomic 0600 writes, errors.

One file (over 500 lines): every key file layout, with its real peers, read and
written through one API.
"""

from __future__ import annotations

import base64
import errno
import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def _load() -> tuple[Any, Any, Any]:
    """(keyfile, keys, errors): from the installed package, or straight from pysrc/.

    The fallback covers a checkout whose ``tlsresume/__init__.py`` imports the
    compiled core before it is built: the three pure-Python modules are loaded
    under a private package name so nothing else in the test session is affected.
    """
    try:
        from tlsresume import errors, keyfile, keys

        return keyfile, keys, errors
    except ImportError:
        pass
    name = "_tlsresume_pure_for_keyfile_tests"
    if name not in sys.modules:
        pkg = types.ModuleType(name)
        pkg.__path__ = [str(Path(__file__).resolve().parents[1] / "pysrc" / "tlsresume")]
        sys.modules[name] = pkg
    return (
        importlib.import_module(f"{name}.keyfile"),
        importlib.import_module(f"{name}.keys"),
        importlib.import_module(f"{name}.errors"),
    )


keyfile, _keys, _errors = _load()
TicketKey = _keys.TicketKey
KeyFileError = _errors.KeyFileError
KeySet = keyfile.KeySet

NAME = bytes(range(16))


def fixed_key(size: int, tag: int = 0) -> Any:
    """A key whose fields are recognisable: name 00..0f (+tag), hmac 'H'*, aes 'A'*
    (the last byte of each secret + tag: keys in one file must not repeat)."""
    half = (size - 16) // 2
    name = bytes((b + tag) % 256 for b in NAME)
    last = bytes([tag])
    return TicketKey(
        name,
        hmac_key=b"H" * (half - 1) + (last if tag else b"H"),
        aes_key=b"A" * (half - 1) + (last if tag else b"A"),
    )


def roles(ks: Any) -> tuple[list[bytes], bytes, bytes | None]:
    """A KeySet's meaning: decrypt-only keys (oldest first), encrypting key, next key."""
    nxt = ks.next_key
    return (
        [k.to_bytes() for k in ks.decrypt_only],
        ks.encrypting_key.to_bytes(),
        None if nxt is None else nxt.to_bytes(),
    )


@pytest.fixture
def umask_000() -> Iterator[None]:
    """Run the test with umask 000 (the most permissive)."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


SINGLE_KEY_CASES = [
    ("openssl", 48),
    ("openssl80", 80),
    ("nginx48", 48),
    ("nginx80", 80),
    ("nginx", 48),
    ("nginx", 80),
]


# --- names -----------------------------------------------------------------------


def test_format_names_and_aliases() -> None:
    """The canonical names and aliases are exactly the documented ones."""
    assert keyfile.FORMATS == ("openssl", "openssl80", "nginx", "nginx48", "nginx80", "haproxy")
    assert keyfile.ALIASES == {"node": "openssl", "apache": "openssl"}
    assert keyfile.canonical_format("node") == "openssl"
    assert keyfile.canonical_format("Apache") == "openssl"
    assert keyfile.canonical_format("nginx80") == "nginx80"


def test_unknown_format_lists_the_known_ones() -> None:
    """An unknown format is a KeyFileError (also a ValueError) naming every known format."""
    with pytest.raises(KeyFileError) as info:
        keyfile.canonical_format("caddy")
    assert isinstance(info.value, ValueError)
    for fmt in keyfile.FORMATS:
        assert repr(fmt) in str(info.value)


# --- round trips -----------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "size"), SINGLE_KEY_CASES)
def test_single_key_format_round_trips(tmp_path: Path, fmt: str, size: int) -> None:
    """write then read of a single-key format gives back the key, encrypting, no next."""
    key = TicketKey.generate(size)
    path = tmp_path / "ticket.key"
    keyfile.write(path, key, fmt)
    ks = keyfile.read(path, fmt)
    assert ks.keys == (key,)
    assert (ks.encrypt, ks.next) == (0, None)
    assert path.stat().st_size == size


@pytest.mark.parametrize("size", [48, 80])
def test_haproxy_round_trips_roles(tmp_path: Path, size: int) -> None:
    """haproxy write/read keeps every key and its role, wherever the roles sat in the set."""
    a, b, c, d = (TicketKey.generate(size) for _ in range(4))
    ks = KeySet((a, b, c, d), encrypt=1, next=3)
    path = tmp_path / "tls-ticket-keys"
    keyfile.write(path, ks, "haproxy")
    back = keyfile.read(path, "haproxy")
    assert roles(back) == roles(ks)
    # file order: decrypt-only keys, encrypting key (penultimate), next key (last)
    assert back.keys == (a, c, b, d)
    assert (back.encrypt, back.next) == (2, 3)


@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_haproxy_parse_render_is_identity_on_files(count: int) -> None:
    """render(parse(file)) reproduces a canonical haproxy file byte for byte."""
    lines = [base64.b64encode(os.urandom(80)) + b"\n" for _ in range(count)]
    data = b"".join(lines)
    assert keyfile.render(keyfile.parse(data, "haproxy"), "haproxy") == data


def test_haproxy_roles_by_key_count() -> None:
    """haproxy: 1 key encrypts alone; otherwise penultimate encrypts and last is next."""
    k = [base64.b64encode(fixed_key(48, tag=i).to_bytes()) for i in range(3)]
    one = keyfile.parse(k[0] + b"\n", "haproxy")
    assert (len(one.keys), one.encrypt, one.next) == (1, 0, None)
    two = keyfile.parse(b"\n".join(k[:2]), "haproxy")
    assert (two.encrypt, two.next) == (0, 1)
    three = keyfile.parse(b"\n".join(k), "haproxy")
    assert (three.encrypt, three.next) == (1, 2)


def test_alias_names_read_and_write(tmp_path: Path) -> None:
    """'node' and 'apache' write and read the same bytes as 'openssl'."""
    key = TicketKey.generate(48)
    for alias in ("node", "apache"):
        path = tmp_path / f"{alias}.key"
        keyfile.write(path, key, alias)
        assert path.read_bytes() == keyfile.render(KeySet((key,), 0), "openssl")
        assert keyfile.read(path, "openssl").keys == (key,)
        assert keyfile.read(path, alias).keys == (key,)


def test_single_key_formats_write_only_the_encrypting_key(tmp_path: Path) -> None:
    """A multi-key set written as a single-key format holds just the encrypting key."""
    old, cur, nxt = (TicketKey.generate(80) for _ in range(3))
    path = tmp_path / "ticket.key"
    keyfile.write(path, KeySet((old, cur, nxt), encrypt=1, next=2), "openssl80")
    assert path.read_bytes() == cur.to_bytes()


def test_nginx_file_list_first_encrypts(tmp_path: Path) -> None:
    """read() of several nginx files: first file encrypts, others decrypt, keys oldest first."""
    current, previous = TicketKey.generate(80), TicketKey.generate(48)
    keyfile.write(tmp_path / "current.key", current, "nginx")
    keyfile.write(tmp_path / "previous.key", previous, "nginx")
    ks = keyfile.read([tmp_path / "current.key", str(tmp_path / "previous.key")], "nginx")
    assert ks.keys == (previous, current)
    assert ks.encrypting_key == current
    assert ks.next is None


def test_write_sequence_uses_the_format_listing_order(tmp_path: Path) -> None:
    """A plain key list is taken in the file's own order (haproxy lines, nginx's first-wins)."""
    keys = [TicketKey.generate(80) for _ in range(3)]
    keyfile.write(tmp_path / "h", keys, "haproxy")
    assert list(keyfile.read(tmp_path / "h", "haproxy").keys) == keys
    keyfile.write(tmp_path / "n", keys, "nginx")
    assert (tmp_path / "n").read_bytes() == keys[0].to_bytes()


# --- byte layouts ----------------------------------------------------------------


H16, A16, H32, A32 = b"H" * 16, b"A" * 16, b"H" * 32, b"A" * 32

LAYOUT_CASES = [
    ("openssl", 48, NAME + H16 + A16),
    ("openssl80", 80, NAME + H32 + A32),
    ("nginx48", 48, NAME + A16 + H16),
    ("nginx80", 80, NAME + H32 + A32),
    ("nginx", 48, NAME + A16 + H16),
    ("nginx", 80, NAME + H32 + A32),
    ("haproxy", 48, base64.b64encode(NAME + A16 + H16) + b"\n"),
    ("haproxy", 80, base64.b64encode(NAME + A32 + H32) + b"\n"),
]


LAYOUT_IDS = [f"{fmt}-{size}" for fmt, size, _ in LAYOUT_CASES]


@pytest.mark.parametrize(("fmt", "size", "expected"), LAYOUT_CASES, ids=LAYOUT_IDS)
def test_render_matches_hand_built_layout(fmt: str, size: int, expected: bytes) -> None:
    """Each format places name, hmac and aes exactly where that server reads them."""
    assert keyfile.render(KeySet((fixed_key(size),), 0), fmt) == expected


@pytest.mark.parametrize(("fmt", "size", "data"), LAYOUT_CASES, ids=LAYOUT_IDS)
def test_parse_reads_hand_built_layout(fmt: str, size: int, data: bytes) -> None:
    """Parsing a hand-built file puts each field in the right TicketKey slot."""
    (key,) = keyfile.parse(data, fmt).keys
    half = (size - 16) // 2
    assert (key.name, key.hmac_key, key.aes_key) == (NAME, b"H" * half, b"A" * half)


def test_haproxy_accepts_shell_made_lines() -> None:
    """`openssl rand 48 | base64` output (trailing newline), CRLF, blanks and comments parse."""
    raws = [os.urandom(48) for _ in range(3)]
    text = (
        b"# rotated by cron\n"
        + base64.encodebytes(raws[0])  # what `base64` prints: one line + "\n"
        + b"\n"
        + base64.b64encode(raws[1])
        + b"\r\n  "
        + base64.b64encode(raws[2])
        + b"  \n"
    )
    ks = keyfile.parse(text, "haproxy", source="keys.txt")
    assert [k.name for k in ks.keys] == [r[:16] for r in raws]
    assert [k.aes_key for k in ks.keys] == [r[16:32] for r in raws]
    assert [k.hmac_key for k in ks.keys] == [r[32:] for r in raws]


# --- files: mode and atomicity ----------------------------------------------------


@pytest.mark.parametrize("fmt", ["openssl", "nginx", "haproxy"])
def test_file_mode_is_0600_with_umask_000(tmp_path: Path, umask_000: None, fmt: str) -> None:
    """Written key files are 0600 even under umask 000, and when replacing a 0644 file."""
    path = tmp_path / "k"
    path.write_bytes(b"old")
    path.chmod(0o644)
    keyfile.write(path, keyfile.generate(fmt), fmt)
    assert path.stat().st_mode & 0o777 == 0o600


def test_file_mode_is_0600_when_umask_strips_owner_bits(tmp_path: Path) -> None:
    """A umask that would strip the owner's write bit still yields 0600."""
    old = os.umask(0o277)
    try:
        keyfile.write(tmp_path / "k", TicketKey.generate(48), "openssl")
    finally:
        os.umask(old)
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    """After successful writes and overwrites the directory holds only the key file."""
    for _ in range(3):
        keyfile.write(tmp_path / "ticket.key", keyfile.generate("haproxy"), "haproxy")
    assert os.listdir(tmp_path) == ["ticket.key"]


def test_failed_write_keeps_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An I/O error mid-write leaves the old file intact and no temp file behind."""
    path = tmp_path / "ticket.key"
    path.write_bytes(b"previous contents")

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(KeyFileError) as info:
        keyfile.write(path, TicketKey.generate(80), "openssl80")
    monkeypatch.undo()
    assert "ticket.key" in str(info.value) and os.strerror(errno.EIO) in str(info.value)
    assert isinstance(info.value.__cause__, OSError)
    assert path.read_bytes() == b"previous contents"
    assert os.listdir(tmp_path) == ["ticket.key"]


def test_write_over_directory_fails_cleanly(tmp_path: Path) -> None:
    """Writing onto a directory is a KeyFileError naming it, with no temp file left."""
    target = tmp_path / "keys.d"
    target.mkdir()
    with pytest.raises(KeyFileError, match="keys.d: cannot write"):
        keyfile.write(target, TicketKey.generate(80), "nginx")
    assert os.listdir(tmp_path) == ["keys.d"]
    assert os.listdir(target) == []


def test_write_into_missing_directory_keeps_os_message(tmp_path: Path) -> None:
    """A missing parent directory is a KeyFileError with the OS's own message."""
    with pytest.raises(KeyFileError) as info:
        keyfile.write(tmp_path / "nope" / "k", TicketKey.generate(48), "openssl")
    assert "nope" in str(info.value)
    assert os.strerror(errno.ENOENT) in str(info.value)


def test_unwritable_keys_create_no_file(tmp_path: Path) -> None:
    """A key the format cannot hold fails before any file (or temp file) is created."""
    with pytest.raises(KeyFileError):
        keyfile.write(tmp_path / "k", TicketKey.generate(80), "openssl")
    assert os.listdir(tmp_path) == []


# --- errors ----------------------------------------------------------------------


def _wrapped_80_byte_key() -> bytes:
    return base64.encodebytes(os.urandom(80))  # wraps at 76 chars like `base64`


ERROR_CASES = [
    # (id, file contents or None for a directory, format, substrings the message must hold)
    ("wrong-length", b"x" * 47, "nginx", ["47 bytes", "48 bytes (name|aes|hmac)", "80 bytes"]),
    ("wrong-length-48", os.urandom(80), "openssl", ["80 bytes", "48 bytes (name|hmac|aes)"]),
    ("empty", b"", "openssl80", ["empty", "80 bytes (name|hmac|aes)"]),
    ("empty-haproxy", b"# nothing\n\n", "haproxy", ["no keys", "base64 line per key"]),
    (
        "bad-base64",
        b"@@@@\n",
        "haproxy",
        ["line 1", "not valid base64", "48 or 80 bytes (name|aes|hmac)"],
    ),
    (
        "bad-padding",
        base64.b64encode(os.urandom(48)) + b"\n" + base64.b64encode(os.urandom(48))[:-1],
        "haproxy",
        ["line 2", "not valid base64", "base64 line per key"],
    ),
    (
        "mixed-sizes",
        base64.b64encode(os.urandom(48)) + b"\n" + base64.b64encode(os.urandom(80)) + b"\n",
        "haproxy",
        ["line 2 holds an 80-byte key but line 1 a 48-byte one", "all the same size"],
    ),
    ("wrapped", _wrapped_80_byte_key(), "haproxy", ["line 1", "57 bytes", "-w0"]),
    ("unknown-format", b"x" * 48, "caddy", ["unknown key file format 'caddy'", "'openssl'"]),
    ("directory", None, "nginx", ["not a regular file (a directory)", "name|aes|hmac"]),
    ("all-zero", bytes(48), "openssl", ["key 1's HMAC secret is all zero bytes", "keygen"]),
    (
        "zero-aes",
        os.urandom(32) + bytes(16),  # name | hmac | aes
        "openssl",
        ["key 1's AES secret is all zero bytes", "name|hmac|aes"],
    ),
    (
        "repeated-line",
        (base64.b64encode(os.urandom(48)) + b"\n") * 2,
        "haproxy",
        ["keys 1 and 2 repeat the same secret", "generated on its own"],
    ),
    (
        "repeated-secret",
        base64.b64encode(os.urandom(16) + b"a" * 16 + b"h" * 16)
        + b"\n"
        + base64.b64encode(os.urandom(16) + b"A" * 16 + b"h" * 16)
        + b"\n",
        "haproxy",
        ["keys 1 and 2 repeat the same secret"],
    ),
]


@pytest.mark.parametrize(
    ("data", "fmt", "needles"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
def test_read_errors_name_file_problem_and_layout(
    tmp_path: Path, data: bytes | None, fmt: str, needles: list[str]
) -> None:
    """Each malformed input is a KeyFileError naming the file, the problem and the layout."""
    path = tmp_path / "ticket.key"
    if data is None:
        path.mkdir()
    else:
        path.write_bytes(data)
    with pytest.raises(KeyFileError) as info:
        keyfile.read(path, fmt)
    message = str(info.value)
    assert message.startswith(str(path) + ":"), message
    for needle in needles:
        assert needle in message, (needle, message)


def test_nginx_files_that_repeat_a_key_are_refused(tmp_path: Path) -> None:
    """nginx's list of files: the same key in two files is refused; control: two
    different keys read."""
    a, b, copy = tmp_path / "a.key", tmp_path / "b.key", tmp_path / "copy.key"
    keyfile.write(a, TicketKey.generate(80), "nginx80")
    keyfile.write(b, TicketKey.generate(80), "nginx80")
    copy.write_bytes(a.read_bytes())
    assert len(keyfile.read([a, b], "nginx").keys) == 2
    with pytest.raises(KeyFileError, match="repeat the same secret"):
        keyfile.read([a, copy], "nginx")


def _without_hanging(fn: Any, fifo: Path) -> BaseException | None:
    """Run fn() in a thread; fail if it is still running after 5 s (a blocking open
    or read of the FIFO), releasing it by opening the FIFO's other end."""
    outcome: list[BaseException | None] = []

    def body() -> None:
        try:
            fn()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    thread.join(5.0)
    if thread.is_alive():
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        thread.join(5.0)
        pytest.fail(f"reading the FIFO {fifo} blocked")
    return outcome[0]


def test_fifo_key_file_is_refused_without_blocking(tmp_path: Path) -> None:
    """A FIFO where a key file should be (its open would wait for a writer forever):
    keyfile.read, TicketKeyRing.from_file and StaticTicketKey.from_file refuse it
    at once. Control: the same path as a regular file reads."""
    import tlsresume

    path = tmp_path / "ticket.key"
    os.mkfifo(path)
    for read in (
        lambda: keyfile.read(path, "openssl80"),
        lambda: tlsresume.TicketKeyRing.from_file(path, "openssl80", poll_interval=None),
        lambda: tlsresume.StaticTicketKey.from_file(path, "openssl80"),
    ):
        exc = _without_hanging(read, path)
        assert isinstance(exc, KeyFileError), exc
        assert "not a regular file (a FIFO)" in str(exc), exc
    os.unlink(path)
    keyfile.write(path, TicketKey.generate(80), "openssl80")
    assert len(keyfile.read(path, "openssl80").keys) == 1


def test_watcher_keeps_its_keys_when_the_file_becomes_a_fifo(tmp_path: Path) -> None:
    """The file watcher meets a FIFO (or a zero key) where the key file was: it keeps
    the current keys, counts the error and does not block. Control: a new regular
    file with a new key loads."""
    import tlsresume

    path = tmp_path / "ticket.key"
    first, second = TicketKey.generate(80), TicketKey.generate(80)
    keyfile.write(path, first, "openssl80")
    with tlsresume.TicketKeyRing.from_file(path, "openssl80", poll_interval=None) as ring:
        os.unlink(path)
        os.mkfifo(path)
        assert _without_hanging(lambda: ring.reload(), path) is None
        path.unlink()
        path.write_bytes(bytes(80))
        assert ring.reload() is False
        assert ring.stats()["file_errors"] == 2
        assert [k.name for k in ring.keys()] == [first.name.hex()]
        path.unlink()
        keyfile.write(path, second, "openssl80")
        assert ring.reload() is True
        assert second.name.hex() in [k.name for k in ring.keys()]


def test_missing_file_keeps_errno(tmp_path: Path) -> None:
    """A missing file's KeyFileError carries the OSError (errno) as its cause."""
    with pytest.raises(KeyFileError) as info:
        keyfile.read(tmp_path / "absent.key", "openssl")
    assert "absent.key" in str(info.value)
    assert os.strerror(errno.ENOENT) in str(info.value)
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.ENOENT


def test_messages_never_contain_key_bytes() -> None:
    """Neither error messages nor KeySet's repr reveal secret key material."""
    secret = os.urandom(47)
    with pytest.raises(KeyFileError) as info:
        keyfile.parse(secret, "nginx")
    msg = str(info.value)
    assert secret.hex() not in msg and base64.b64encode(secret).decode() not in msg
    bad_line = base64.b64encode(os.urandom(48))[:-2] + b"!!"
    with pytest.raises(KeyFileError) as info:
        keyfile.parse(bad_line, "haproxy")
    assert bad_line.decode() not in str(info.value)
    ks = keyfile.generate("haproxy")
    text = repr(ks)
    for key in ks.keys:
        for secret_field in (key.hmac_key, key.aes_key):
            assert secret_field.hex() not in text and repr(secret_field) not in text


def test_key_size_the_format_cannot_hold_suggests_others() -> None:
    """Writing an 80-byte key as 'openssl' (or 48 as 'nginx80') names the formats that fit."""
    with pytest.raises(KeyFileError) as info:
        keyfile.render(KeySet((TicketKey.generate(80),), 0), "node")
    assert "'openssl80'" in str(info.value) and "'nginx80'" in str(info.value)
    with pytest.raises(KeyFileError) as info:
        keyfile.render(KeySet((TicketKey.generate(48),), 0), "nginx80")
    assert "'openssl'" in str(info.value) and "'nginx48'" in str(info.value)


def test_haproxy_render_refuses_mixed_sizes_and_missing_next() -> None:
    """haproxy output needs one key size, and a next key whenever there are 2+ keys."""
    mixed = KeySet((TicketKey.generate(48), TicketKey.generate(80)), 0, 1)
    with pytest.raises(KeyFileError, match="mixes 48- and 80-byte keys"):
        keyfile.render(mixed, "haproxy")
    no_next = KeySet((TicketKey.generate(80), TicketKey.generate(80)), encrypt=1)
    with pytest.raises(KeyFileError, match="no next key"):
        keyfile.render(no_next, "haproxy")
    fixed = no_next.with_next(TicketKey.generate(80))
    back = keyfile.parse(keyfile.render(fixed, "haproxy"), "haproxy")
    assert roles(back) == roles(fixed)


def test_haproxy_takes_exactly_one_file(tmp_path: Path) -> None:
    """read() refuses several files (or none) for haproxy, naming them."""
    for name in ("a", "b"):
        keyfile.write(tmp_path / name, keyfile.generate("haproxy"), "haproxy")
    with pytest.raises(KeyFileError, match="exactly one"):
        keyfile.read([tmp_path / "a", tmp_path / "b"], "haproxy")
    with pytest.raises(KeyFileError, match="no key files"):
        keyfile.read([], "nginx")


def test_errors_hint_at_the_other_family_without_switching() -> None:
    """Raw bytes read as haproxy, base64 read as raw, or a stray newline, fail with a hint."""
    raw = b"\xff" * 48  # deterministic: no newline bytes, never valid base64
    with pytest.raises(KeyFileError, match="raw binary key file"):
        keyfile.parse(raw, "haproxy")
    with pytest.raises(KeyFileError, match="looks like a base64 key"):
        keyfile.parse(base64.b64encode(raw), "openssl")
    with pytest.raises(KeyFileError, match="trailing newline"):
        keyfile.parse(raw + b"\n", "nginx48")


# --- KeySet and generate ---------------------------------------------------------


def test_keyset_validates_indices_and_keys() -> None:
    """KeySet rejects empty sets, bad indices, next == encrypt, non-keys and name clashes."""
    a, b = TicketKey.generate(80), TicketKey.generate(80)
    with pytest.raises(ValueError):
        KeySet((), 0)
    with pytest.raises(ValueError):
        KeySet((a,), 1)
    with pytest.raises(ValueError):
        KeySet((a, b), 0, 2)
    with pytest.raises(ValueError):
        KeySet((a, b), 1, 1)
    with pytest.raises(TypeError):
        KeySet((a, b"x" * 80), 0)
    with pytest.raises(TypeError):
        KeySet((a,), True)
    clash = TicketKey(a.name, hmac_key=b.hmac_key, aes_key=b.aes_key)
    with pytest.raises(ValueError, match="same name"):
        KeySet((a, clash), 0)
    assert KeySet([a, b], 1, 0).keys == (a, b)  # a list is stored as a tuple


def test_generate_sizes_and_defaults() -> None:
    """generate() uses each format's natural size; haproxy gets previous/current/next."""
    expected = {
        "openssl": 48,
        "node": 48,
        "nginx48": 48,
        "openssl80": 80,
        "nginx80": 80,
        "nginx": 80,
        "haproxy": 80,
    }
    for fmt, size in expected.items():
        ks = keyfile.generate(fmt)
        assert {k.size for k in ks.keys} == {size}, fmt
    ha = keyfile.generate("haproxy")
    assert (len(ha.keys), ha.encrypt, ha.next) == (3, 1, 2)
    one = keyfile.generate("nginx")
    assert (len(one.keys), one.encrypt, one.next) == (1, 0, None)
    assert len({k.name for k in keyfile.generate("haproxy", 5).keys}) == 5
    with pytest.raises(ValueError):
        keyfile.generate("openssl", 0)


# --- interop with the openssl command line ---------------------------------------

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl binary")


@needs_openssl
def test_openssl_rand_48_file_parses(tmp_path: Path) -> None:
    """A key file made by `openssl rand 48 > f` reads as openssl, nginx48 and nginx."""
    path = tmp_path / "ticket.key"
    subprocess.run(f"openssl rand 48 > '{path}'", shell=True, check=True, timeout=30)
    raw = path.read_bytes()
    assert len(raw) == 48
    (ossl,) = keyfile.read(path, "openssl").keys
    assert ossl.to_bytes() == raw
    (ngx,) = keyfile.read(path, "nginx").keys
    assert (ngx.name, ngx.aes_key, ngx.hmac_key) == (raw[:16], raw[16:32], raw[32:])
    assert keyfile.read(path, "nginx48").keys == (ngx,)


@needs_openssl
def test_openssl_base64_lines_parse_as_haproxy(tmp_path: Path) -> None:
    """Three `openssl rand 80 | openssl base64 -A; echo` lines form a valid haproxy file."""
    path = tmp_path / "tls-ticket-keys"
    cmd = f"for i in 1 2 3; do openssl rand 80 | openssl base64 -A; echo; done > '{path}'"
    subprocess.run(cmd, shell=True, check=True, timeout=30)
    ks = keyfile.read(path, "haproxy")
    assert len(ks.keys) == 3 and {k.size for k in ks.keys} == {80}
    assert (ks.encrypt, ks.next) == (1, 2)
    assert keyfile.render(ks, "haproxy") == path.read_bytes()


def test_public_api_is_exported() -> None:
    """The documented public names are in __all__ (other modules import them by name)."""
    assert set(keyfile.__all__) == {
        "FORMATS",
        "ALIASES",
        "KeySet",
        "canonical_format",
        "parse",
        "render",
        "read",
        "write",
        "generate",
    }
    assert importlib.util.find_spec(keyfile.__name__) is not None
