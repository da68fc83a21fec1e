"""Session-ticket keys as values.

A ticket key is a 16-byte name (sent in clear at the start of every ticket so the
server can find the key again), an HMAC-SHA256 key and an AES-CBC key. Two sizes
exist in the wild and both are supported end to end:

* 80 bytes: 32-byte HMAC key, AES-256-CBC (OpenSSL >= 1.1 default, nginx 80-byte files).
* 48 bytes: 16-byte HMAC key, AES-128-CBC (OpenSSL 1.0, Node ``ticketKeys``, Apache,
  nginx 48-byte files, HAProxy's default).

A ring may hold keys of either size; a ticket is always encrypted and decrypted with
the cipher that matches its key's size, so tickets stay compatible with other servers
that read the same key file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

__all__ = ["TicketKey", "KEY_NAME_LEN", "KEY_SIZES"]

KEY_NAME_LEN = 16
KEY_SIZES = (48, 80)


@dataclass(frozen=True)
class TicketKey:
    """One session-ticket key.

    Args:
        name: 16 bytes; identifies the key inside tickets (not secret).
        hmac_key: 16 or 32 bytes (same length as ``aes_key``).
        aes_key: 16 bytes (AES-128-CBC) or 32 bytes (AES-256-CBC).

    Raises:
        TypeError: a field is not bytes.
        ValueError: a field has the wrong length.
    """

    name: bytes
    hmac_key: bytes = field(repr=False)
    aes_key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        for label in ("name", "hmac_key", "aes_key"):
            value = getattr(self, label)
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise TypeError(f"TicketKey.{label} must be bytes, not {type(value).__name__}")
            object.__setattr__(self, label, bytes(value))
        if len(self.name) != KEY_NAME_LEN:
            raise ValueError(f"TicketKey.name must be {KEY_NAME_LEN} bytes, got {len(self.name)}")
        if len(self.aes_key) not in (16, 32) or len(self.hmac_key) != len(self.aes_key):
            raise ValueError(
                "TicketKey needs hmac_key and aes_key of 16 bytes each (48-byte key, "
                "AES-128) or 32 bytes each (80-byte key, AES-256); got "
                f"hmac_key={len(self.hmac_key)}, aes_key={len(self.aes_key)}"
            )

    @property
    def size(self) -> int:
        """48 or 80: the size of this key in the classic name|hmac|aes layout."""
        return KEY_NAME_LEN + len(self.hmac_key) + len(self.aes_key)

    @classmethod
    def generate(cls, size: int = 80) -> TicketKey:
        """A fresh random key of ``size`` (48 or 80) bytes from the OS CSPRNG."""
        if size not in KEY_SIZES:
            raise ValueError(f"ticket key size must be 48 or 80 bytes, not {size}")
        half = (size - KEY_NAME_LEN) // 2
        raw = os.urandom(size)
        return cls(raw[:KEY_NAME_LEN], raw[KEY_NAME_LEN : KEY_NAME_LEN + half], raw[-half:])

    def to_bytes(self) -> bytes:
        """name|hmac|aes: the layout OpenSSL's ``SSL_CTX_set_tlsext_ticket_keys`` takes."""
        return self.name + self.hmac_key + self.aes_key

    @classmethod
    def from_bytes(cls, raw: bytes) -> TicketKey:
        """Inverse of :meth:`to_bytes` (48 or 80 bytes, name|hmac|aes)."""
        if len(raw) not in KEY_SIZES:
            raise ValueError(f"a ticket key is 48 or 80 bytes (name|hmac|aes), got {len(raw)}")
        half = (len(raw) - KEY_NAME_LEN) // 2
        return cls(raw[:KEY_NAME_LEN], raw[KEY_NAME_LEN : KEY_NAME_LEN + half], raw[-half:])

    @property
    def name_hex(self) -> str:
        """The key name in hex: safe to log (the name is sent in clear in every ticket)."""
        return self.name.hex()
