"""Import and export session-ticket key files in the layouts other servers use.

Every call names the format explicitly; nothing is guessed across families (an
error message may *hint* at another format, but never switches to it).

Layouts (name = 16-byte key name, sent in clear in every ticket):

========== ======================= =============================================
format     file                    bytes of one key
========== ======================= =============================================
openssl    raw binary, 1 key       48: name(16) | hmac(16) | aes(16)
           (aliases ``node``,      OpenSSL 1.0 ``SSL_CTX_set_tlsext_ticket_keys``,
           ``apache``)             Node ``ticketKeys``, Apache
                                   ``SSLSessionTicketKeyFile``
openssl80  raw binary, 1 key       80: name(16) | hmac(32) | aes(32)
                                   (``SSL_CTX_set_tlsext_ticket_keys``, OpenSSL
                                   >= 1.1)
nginx48    raw binary, 1 key       48: name(16) | aes(16) | hmac(16)
nginx80    raw binary, 1 key       80: name(16) | hmac(32) | aes(32)
nginx      raw binary, 1 key       48 or 80 as above, chosen by the file length
                                   on read and by the key size on write
haproxy    text, 1 key per line    base64 of 48 or 80 bytes, both sizes
                                   name | aes | hmac; all keys the same size
========== ======================= =============================================

Roles. A :class:`KeySet` lists its keys oldest first and says which one encrypts
and which one, if any, is pre-published ("next": accepted for decryption, not yet
used to encrypt). The formats map onto that as follows:

* Single-key formats (openssl, openssl80, nginx*) hold one key per file.
  :func:`read` accepts several files the way nginx's repeated
  ``ssl_session_ticket_key`` does: the first file's key encrypts, the others only
  decrypt. nginx lists keys newest first, so the key set is that list reversed
  (oldest first, encrypting key last) and has no next key. :func:`write` writes
  the *encrypting* key only; the other keys of the set are not written.
* haproxy: keys are appended to the file over time. The LAST line is the next key,
  the PENULTIMATE line encrypts, earlier lines only decrypt; a file with exactly one
  key has that key encrypt and no next key. :func:`write` orders the lines as
  (decrypt-only keys, oldest first) + encrypting key + next key, so HAProxy and
  :func:`parse` both give every key back its role. A set of two or more keys
  without a next key cannot be written: whichever key came last HAProxy would take
  as "next" and the one before it would encrypt, demoting the real encrypting key.
  Add a pre-published key first (:meth:`KeySet.with_next`).

HAProxy facts worth knowing (``bind_parse_tls_ticket_keys`` in HAProxy's
``src/cfgparse-ssl.c``): a stock build (``TLS_TICKETS_NO`` = 3) refuses files with
fewer than 3 keys and loads only the last 3 lines, so older lines are dropped by
HAProxy even though :func:`parse` keeps them (as decrypt-only keys; retention is
the key ring's policy, not the file parser's). HAProxy also rejects blank lines and
``#`` comments; :func:`parse` skips them, :func:`render` never writes them.
``generate("haproxy")`` makes the 3 keys a stock HAProxy needs.

Errors: every problem raises :class:`~tlsresume.errors.KeyFileError` naming the file
(or the ``source`` given to :func:`parse`), what is wrong and the layout the format
expects. Messages never contain key bytes.

One module (a little over 500 lines): each key-file layout is a parse/render pair
over the same few helpers.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

from ._files import read_regular, write_private
from .errors import KeyFileError
from .keys import KEY_NAME_LEN, TicketKey

__all__ = [
    "FORMATS",
    "ALIASES",
    "KeySet",
    "canonical_format",
    "parse",
    "render",
    "read",
    "write",
    "generate",
]

_StrPath: TypeAlias = "str | os.PathLike[str]"

FORMATS: tuple[str, ...] = ("openssl", "openssl80", "nginx", "nginx48", "nginx80", "haproxy")
ALIASES: dict[str, str] = {"node": "openssl", "apache": "openssl"}

#: Largest key file :func:`read` accepts (bounds the work of one call; a HAProxy
#: file of 1 MiB would hold about 9,000 keys).
MAX_FILE_BYTES = 1 << 20

# Field orders after the 16-byte name.
_HMAC_AES = ("hmac", "aes")
_AES_HMAC = ("aes", "hmac")


@dataclass(frozen=True)
class _Layout:
    """How one format stores one key: field order by key size, and the file kind."""

    orders: dict[int, tuple[str, str]]  # key size (48 | 80) -> order of hmac and aes
    text: bool  # True: base64 lines, several keys; False: raw binary, one key
    natural_size: int  # key size generate() makes

    def describe(self) -> str:
        """The expected layout in words, for error messages."""
        orders = set(self.orders.values())
        if len(orders) == 1 and len(self.orders) > 1:  # haproxy: one order, two sizes
            sizes = f"48 or 80 bytes (name|{'|'.join(orders.pop())})"
        else:
            sizes = " or ".join(
                f"{size} bytes (name|{'|'.join(order)})" for size, order in self.orders.items()
            )
        if self.text:
            return f"one base64 line per key, each decoding to {sizes}, all the same size"
        return sizes


_LAYOUTS: dict[str, _Layout] = {
    "openssl": _Layout({48: _HMAC_AES}, text=False, natural_size=48),
    "openssl80": _Layout({80: _HMAC_AES}, text=False, natural_size=80),
    "nginx": _Layout({48: _AES_HMAC, 80: _HMAC_AES}, text=False, natural_size=80),
    "nginx48": _Layout({48: _AES_HMAC}, text=False, natural_size=48),
    "nginx80": _Layout({80: _HMAC_AES}, text=False, natural_size=80),
    "haproxy": _Layout({48: _AES_HMAC, 80: _AES_HMAC}, text=True, natural_size=80),
}

# Which single-key formats hold a key of each size (for "use X instead" messages).
_FORMATS_FOR_SIZE = {
    48: "'openssl' (alias 'node', 'apache'), 'nginx48' or 'nginx'",
    80: "'openssl80', 'nginx80' or 'nginx'",
}


@dataclass(frozen=True)
class KeySet:
    """Ticket keys with their roles, as a key file describes them.

    Args:
        keys: the keys, oldest first (a list is accepted and stored as a tuple).
        encrypt: index in ``keys`` of the key that encrypts new tickets.
        next: index of the pre-published key (decrypts, will encrypt after the next
            rotation), or None. Every other key only decrypts.

    Raises:
        TypeError: ``keys`` holds something other than :class:`TicketKey`, or an
            index is not an int.
        ValueError: no keys, an index out of range, ``next == encrypt``, or two keys
            share a name but differ in their secrets.
    """

    keys: tuple[TicketKey, ...]
    encrypt: int
    next: int | None = None

    def __post_init__(self) -> None:
        keys = tuple(self.keys)
        object.__setattr__(self, "keys", keys)
        if not keys:
            raise ValueError("a KeySet needs at least one key")
        for i, key in enumerate(keys):
            if not isinstance(key, TicketKey):
                raise TypeError(f"KeySet.keys[{i}] must be a TicketKey, not {type(key).__name__}")
        _check_index("encrypt", self.encrypt, len(keys))
        if self.next is not None:
            _check_index("next", self.next, len(keys))
            if self.next == self.encrypt:
                raise ValueError(f"KeySet.next and KeySet.encrypt are both {self.next}")
        _check_names(keys)

    @property
    def encrypting_key(self) -> TicketKey:
        """The key that encrypts new tickets."""
        return self.keys[self.encrypt]

    @property
    def next_key(self) -> TicketKey | None:
        """The pre-published key, or None."""
        return None if self.next is None else self.keys[self.next]

    @property
    def decrypt_only(self) -> tuple[TicketKey, ...]:
        """The keys that neither encrypt nor are pre-published, oldest first."""
        return tuple(k for i, k in enumerate(self.keys) if i not in (self.encrypt, self.next))

    def with_next(self, key: TicketKey) -> KeySet:
        """A copy with ``key`` appended as the pre-published key.

        A previous next key (if any) stays, as a decrypt-only key.
        """
        return KeySet(self.keys + (key,), self.encrypt, len(self.keys))


def _check_index(label: str, value: object, count: int) -> None:
    """Raise unless ``value`` is an int in ``range(count)``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"KeySet.{label} must be an int, not {type(value).__name__}")
    if not 0 <= value < count:
        raise ValueError(f"KeySet.{label}={value} is out of range for {count} key(s)")


def _check_names(keys: tuple[TicketKey, ...]) -> None:
    """Raise if two keys share a name but not their secrets (ticket look-up is by name)."""
    seen: dict[bytes, int] = {}
    for i, key in enumerate(keys):
        j = seen.setdefault(key.name, i)
        if j != i and keys[j] != key:
            raise ValueError(
                f"KeySet.keys[{j}] and keys[{i}] have the same name but different secrets; "
                "tickets are looked up by name, so every key needs its own name"
            )


# --- format names ----------------------------------------------------------------


def canonical_format(fmt: str) -> str:
    """The canonical name of ``fmt`` (aliases resolved, case ignored).

    Raises:
        TypeError: ``fmt`` is not a str.
        KeyFileError: ``fmt`` is not a known format.
    """
    if not isinstance(fmt, str):
        raise TypeError(f"key file format must be a str, not {type(fmt).__name__}")
    name = fmt.strip().lower()
    name = ALIASES.get(name, name)
    if name not in _LAYOUTS:
        aliases = ", ".join(f"{a!r} = {c!r}" for a, c in ALIASES.items())
        raise KeyFileError(
            f"unknown key file format {fmt!r}; known formats: "
            f"{', '.join(map(repr, FORMATS))} (aliases: {aliases})"
        )
    return name


def _canonical(fmt: str, source: str) -> str:
    """:func:`canonical_format`, with ``source`` named in the error."""
    try:
        return canonical_format(fmt)
    except KeyFileError as exc:
        raise KeyFileError(f"{source}: {exc}") from None


def _error(source: str, problem: str, fmt: str) -> KeyFileError:
    """A KeyFileError saying where, what, and the layout ``fmt`` expects."""
    return KeyFileError(f"{source}: {problem}; format {fmt!r} needs {_LAYOUTS[fmt].describe()}")


# --- one key <-> bytes -----------------------------------------------------------


def _pack(key: TicketKey, order: tuple[str, str]) -> bytes:
    """name | fields in ``order`` ("hmac"/"aes")."""
    fields = {"hmac": key.hmac_key, "aes": key.aes_key}
    return key.name + fields[order[0]] + fields[order[1]]


def _unpack(raw: bytes, order: tuple[str, str]) -> TicketKey:
    """Inverse of :func:`_pack`; ``raw`` is 48 or 80 bytes."""
    half = (len(raw) - KEY_NAME_LEN) // 2
    first, second = raw[KEY_NAME_LEN : KEY_NAME_LEN + half], raw[KEY_NAME_LEN + half :]
    fields = dict(zip(order, (first, second), strict=True))
    return TicketKey(raw[:KEY_NAME_LEN], hmac_key=fields["hmac"], aes_key=fields["aes"])


# --- parse -----------------------------------------------------------------------


def parse(data: bytes, fmt: str, *, source: str = "<bytes>") -> KeySet:
    """Decode the contents of one key file.

    Args:
        data: the file's bytes.
        fmt: a format name from :data:`FORMATS` or :data:`ALIASES`.
        source: what to call the data in error messages (usually the file name).

    Returns:
        A single-key format gives a one-key set (that key encrypts). haproxy gives
        the lines oldest first with HAProxy's roles (see the module docstring).

    Raises:
        TypeError: ``data`` is not bytes.
        KeyFileError: unknown format, empty data, wrong length, bad base64, mixed
            key sizes, two keys with the same name, a secret of all zero bytes, or
            a secret that repeats.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"key file data must be bytes, not {type(data).__name__}")
    fmt = _canonical(fmt, source)
    data = bytes(data)
    if not data:
        raise _error(source, "the file is empty", fmt)
    if _LAYOUTS[fmt].text:
        return _keyset(_parse_lines(data, fmt, source), fmt, source)
    return _keyset([_parse_binary(data, fmt, source)], fmt, source)


def _parse_binary(data: bytes, fmt: str, source: str) -> TicketKey:
    """One raw binary key; its length must be one the format holds."""
    order = _LAYOUTS[fmt].orders.get(len(data))
    if order is None:
        raise _error(source, f"{len(data)} bytes{_binary_hint(data)}", fmt)
    return _unpack(data, order)


def _binary_hint(data: bytes) -> str:
    """A hint for a raw format given text: a base64 key or a trailing newline."""
    if len(data) - 1 in (48, 80) and data.endswith(b"\n"):
        return " (a trailing newline? raw key files hold the key bytes only)"
    if len(_try_b64(data.strip())) in (48, 80):
        return " (this looks like a base64 key: decode it first, or read it as 'haproxy')"
    return ""


def _try_b64(text: bytes) -> bytes:
    """``text`` base64-decoded, or b"" if it is not strict base64."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return b""


def _parse_lines(data: bytes, fmt: str, source: str) -> list[TicketKey]:
    """HAProxy lines: one base64 key each; blank and '#' lines skipped; one size."""
    keys: list[TicketKey] = []
    first_size: tuple[int, int] | None = None  # (size, line number)
    for lineno, line in enumerate(data.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith(b"#"):
            continue
        raw = _decode_line(line, lineno, data, fmt, source)
        if first_size is None:
            first_size = (len(raw), lineno)
        elif len(raw) != first_size[0]:
            raise _error(
                source,
                f"line {lineno} holds {_a(len(raw))}-byte key but line {first_size[1]} "
                f"{_a(first_size[0])}-byte one (HAProxy refuses files that mix key sizes)",
                fmt,
            )
        keys.append(_unpack(raw, _LAYOUTS[fmt].orders[len(raw)]))
    if not keys:
        raise _error(source, "no keys (only blank or comment lines)", fmt)
    return keys


def _a(size: int) -> str:
    """``size`` with its article: "a 48", "an 80"."""
    return f"an {size}" if str(size).startswith("8") else f"a {size}"


def _decode_line(line: bytes, lineno: int, data: bytes, fmt: str, source: str) -> bytes:
    """One base64 line to 48 or 80 bytes; errors say which line and why."""
    try:
        raw = base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError) as exc:
        hint = ""
        if len(data) in (48, 80):
            hint = " (this looks like a raw binary key file: read it as 'openssl' or 'nginx')"
        raise _error(source, f"line {lineno} is not valid base64 ({exc}){hint}", fmt) from None
    if len(raw) not in _LAYOUTS[fmt].orders:
        hint = ""
        if len(raw) == 57:  # 76 base64 characters: a wrapped 80-byte key
            hint = (
                " (an 80-byte key split over two lines by a tool that wraps at 76 "
                "characters? use 'base64 -w0' or 'openssl base64 -A')"
            )
        raise _error(source, f"line {lineno} decodes to {len(raw)} bytes{hint}", fmt)
    return raw


def _keyset(listing: Sequence[TicketKey], fmt: str, source: str) -> KeySet:
    """Keys in a format's own listing order, with the roles that format gives them.

    haproxy: file lines, oldest first; the penultimate encrypts, the last is next (a
    single key encrypts). Single-key formats: nginx's list of files, newest first;
    the first encrypts, the rest only decrypt, so the set is the list reversed.
    """
    _refuse_weak(listing, fmt, source)
    count = len(listing)
    try:
        if _LAYOUTS[fmt].text:
            if count == 1:
                return KeySet(tuple(listing), encrypt=0)
            return KeySet(tuple(listing), encrypt=count - 2, next=count - 1)
        return KeySet(tuple(reversed(listing)), encrypt=count - 1)
    except ValueError as exc:
        raise _error(source, str(exc), fmt) from None


def _refuse_weak(keys: Sequence[TicketKey], fmt: str, source: str) -> None:
    """Refuse a secret of all zero bytes (a placeholder, not a key) and a secret that
    two keys share (a copied line or file: rotating onto it changes nothing, and
    its name no longer says which key made a ticket). Keys count from 1 in the
    format's listing order; no key bytes go into the message."""
    seen: dict[bytes, int] = {}
    for i, key in enumerate(keys, 1):
        for label, secret in (("HMAC", key.hmac_key), ("AES", key.aes_key)):
            if not any(secret):
                raise _error(
                    source,
                    f"key {i}'s {label} secret is all zero bytes, a placeholder rather "
                    "than a key; make real ones with `tlsresume keygen`",
                    fmt,
                )
            first = seen.setdefault(secret, i)
            if first != i:
                raise _error(
                    source,
                    f"keys {first} and {i} repeat the same secret; every key must be "
                    "generated on its own (`tlsresume keygen`)",
                    fmt,
                )


# --- render ----------------------------------------------------------------------


def render(keyset: KeySet, fmt: str) -> bytes:
    """Encode ``keyset`` as the contents of one ``fmt`` key file.

    Single-key formats get the encrypting key only. haproxy gets every key, one
    base64 line each, ordered decrypt-only keys, encrypting key, next key.

    Raises:
        TypeError: ``keyset`` is not a :class:`KeySet`.
        KeyFileError: the format cannot hold the key size(s), or (haproxy) the set has
            two or more keys but no next key.
    """
    return _render(keyset, canonical_format(fmt), "<bytes>")


def _render(keyset: KeySet, fmt: str, dest: str) -> bytes:
    """:func:`render` for a canonical ``fmt``; ``dest`` names the output in errors."""
    if not isinstance(keyset, KeySet):
        raise TypeError(f"expected a KeySet, not {type(keyset).__name__}")
    if _LAYOUTS[fmt].text:
        return _render_lines(keyset, fmt, dest)
    key = keyset.encrypting_key
    order = _LAYOUTS[fmt].orders.get(key.size)
    if order is None:
        raise _error(
            dest,
            f"the encrypting key is {key.size} bytes, which this format cannot hold "
            f"(use {_FORMATS_FOR_SIZE[key.size]} for {key.size}-byte keys)",
            fmt,
        )
    return _pack(key, order)


def _render_lines(keyset: KeySet, fmt: str, dest: str) -> bytes:
    """HAProxy lines: decrypt-only keys, then the encrypting key, then the next key."""
    sizes = sorted({k.size for k in keyset.keys})
    if len(sizes) > 1:
        raise _error(dest, "the key set mixes 48- and 80-byte keys", fmt)
    if keyset.next_key is None and len(keyset.keys) > 1:
        raise _error(
            dest,
            f"{len(keyset.keys)} keys but no next key: HAProxy takes the last line as the "
            "pre-published key and encrypts with the one before it, so the encrypting key "
            "would lose its role; add a next key first (KeySet.with_next("
            f"TicketKey.generate({sizes[0]})))",
            fmt,
        )
    ordered = [*keyset.decrypt_only, keyset.encrypting_key]
    if keyset.next_key is not None:
        ordered.append(keyset.next_key)
    order = _LAYOUTS[fmt].orders[sizes[0]]
    return b"".join(base64.b64encode(_pack(k, order)) + b"\n" for k in ordered)


# --- files -----------------------------------------------------------------------


def read(paths: _StrPath | Sequence[_StrPath], fmt: str) -> KeySet:
    """Read key file(s) in ``fmt``.

    Args:
        paths: one file, or (single-key formats only) several files nginx-style:
            the first file's key encrypts, the others only decrypt.
        fmt: a format name from :data:`FORMATS` or :data:`ALIASES`.

    Raises:
        KeyFileError: a file cannot be read (the OS error is kept as the cause) or
            its contents are malformed; no files, or several files for haproxy.
    """
    files = _path_list(paths)
    label = ", ".join(files) or "<no files>"
    fmt = _canonical(fmt, label)
    if not files:
        raise _error(label, "no key files given", fmt)
    if _LAYOUTS[fmt].text:
        if len(files) != 1:
            raise _error(label, f"{len(files)} files given, but haproxy takes exactly one", fmt)
        return parse(_read_bytes(files[0], fmt), fmt, source=files[0])
    listing = [parse(_read_bytes(f, fmt), fmt, source=f).encrypting_key for f in files]
    return _keyset(listing, fmt, label)


def _path_list(paths: _StrPath | Sequence[_StrPath]) -> list[str]:
    """One path or a sequence of paths as a list of str."""
    if isinstance(paths, (str, os.PathLike)):
        return [os.fsdecode(paths)]
    if isinstance(paths, (bytes, bytearray)):
        raise TypeError("key file paths must be str or os.PathLike, not bytes")
    return [os.fsdecode(p) for p in paths]


def _read_bytes(path: str, fmt: str) -> bytes:
    """The contents of the regular file ``path``, at most :data:`MAX_FILE_BYTES`.

    Opened non-blocking and checked through the descriptor before any read: a FIFO
    (whose open and read would wait for a writer forever), a device or a directory
    is refused, whatever the path's name says.
    """
    try:
        data, _st = read_regular(path, MAX_FILE_BYTES)
    except OSError as exc:
        raise _error(path, f"cannot read: {exc.strerror or exc}", fmt) from exc
    except ValueError as exc:  # not a regular file
        raise _error(path, f"{exc}; give the path of the key file itself", fmt) from None
    if len(data) > MAX_FILE_BYTES:
        raise _error(path, f"larger than {MAX_FILE_BYTES} bytes, not a key file", fmt)
    return data


def write(
    path: _StrPath,
    keyset_or_keys: KeySet | Sequence[TicketKey] | TicketKey,
    fmt: str,
) -> None:
    """Write a key file atomically, mode 0600 whatever the umask.

    The data goes to a temporary file in the same directory, is fsynced, then renamed
    over ``path`` (``os.replace``); on any error the temporary file is removed and
    ``path`` is left as it was.

    Args:
        path: the file to create or replace.
        keyset_or_keys: a :class:`KeySet`; or one key; or keys in the format's own
            listing order (haproxy: file lines, oldest first; single-key formats:
            nginx's file order, first encrypts), given the roles :func:`read` would.
        fmt: a format name from :data:`FORMATS` or :data:`ALIASES`. Single-key formats
            write the encrypting key only.

    Raises:
        TypeError: ``keyset_or_keys`` is not a KeySet, TicketKey or sequence of them.
        KeyFileError: the format cannot hold the keys (see :func:`render`), or the
            file cannot be written (the OS error is kept as the cause).
    """
    dest = os.fsdecode(path)
    fmt = _canonical(fmt, dest)
    data = _render(_as_keyset(keyset_or_keys, fmt, dest), fmt, dest)
    try:
        write_private(dest, data)
    except OSError as exc:
        # A write that fails is about the path, not the layout: name the path and
        # the OS's reason only.
        raise KeyFileError(f"{dest}: cannot write: {exc.strerror or exc}") from exc


def _as_keyset(obj: KeySet | Sequence[TicketKey] | TicketKey, fmt: str, dest: str) -> KeySet:
    """A KeySet from what :func:`write` accepts."""
    if isinstance(obj, KeySet):
        return obj
    if isinstance(obj, TicketKey):
        return KeySet((obj,), encrypt=0)
    if isinstance(obj, (str, bytes, bytearray)) or not isinstance(obj, Sequence):
        raise TypeError(
            f"expected a KeySet, a TicketKey or a sequence of TicketKey, not {type(obj).__name__}"
        )
    if not obj:
        raise _error(dest, "no keys to write", fmt)
    for i, key in enumerate(obj):
        if not isinstance(key, TicketKey):
            raise TypeError(f"keys[{i}] must be a TicketKey, not {type(key).__name__}")
    return _keyset(obj, fmt, dest)


# --- generate --------------------------------------------------------------------


def generate(fmt: str, count: int | None = None) -> KeySet:
    """Fresh random keys of the format's natural size, ready to :func:`write`.

    Sizes: openssl and nginx48 48 bytes; openssl80, nginx80, nginx and haproxy 80.

    Args:
        fmt: a format name from :data:`FORMATS` or :data:`ALIASES`.
        count: how many keys. Default: 3 for haproxy (previous, current = encrypts,
            next = pre-published: the minimum a stock HAProxy loads), 1 otherwise.
            Roles follow the format's listing rule (haproxy: penultimate encrypts,
            last is next; single-key formats: the newest, i.e. last, encrypts).

    Raises:
        ValueError: ``count`` is less than 1.
        KeyFileError: unknown format.
    """
    fmt = canonical_format(fmt)
    layout = _LAYOUTS[fmt]
    if count is None:
        count = 3 if layout.text else 1
    if isinstance(count, bool) or not isinstance(count, int):
        raise TypeError(f"count must be an int, not {type(count).__name__}")
    if count < 1:
        raise ValueError(f"count must be at least 1, not {count}")
    keys = [TicketKey.generate(layout.natural_size) for _ in range(count)]
    if layout.text:
        return _keyset(keys, fmt, "<generated>")
    return KeySet(tuple(keys), encrypt=count - 1)
