"""The exceptions tlsresume raises.

Every error tlsresume raises on purpose derives from :class:`TLSResumeError`, which
is never raised itself. Bad arguments raise ``ValueError`` or ``TypeError`` before
anything reaches the C core.
"""

from __future__ import annotations

__all__ = [
    "TLSResumeError",
    "OpenSSLUnavailableError",
    "KeyFileError",
    "RingClosedError",
    "SharedMemoryError",
    "ContextError",
    "CoreError",
]


class TLSResumeError(Exception):
    """Base class of every tlsresume error; never raised directly."""


class OpenSSLUnavailableError(TLSResumeError, ImportError):
    """The OpenSSL that Python's ``ssl`` module uses cannot be reached or is too old.

    Also an ``ImportError``, so ``try: import tlsresume / except ImportError`` works
    for code that treats tlsresume as optional.
    """


class KeyFileError(TLSResumeError, ValueError):
    """A ticket key file is missing, malformed, or in a layout other than the one named."""


class RingClosedError(TLSResumeError):
    """A key ring (or store) was used after ``close()``."""


class SharedMemoryError(TLSResumeError, OSError):
    """A shared-memory region could not be created, attached or validated."""


class ContextError(TLSResumeError, ValueError):
    """An ``SSLContext`` cannot be used the way it was asked (e.g. a client context
    given where a server context is needed)."""


class CoreError(TLSResumeError):
    """An operation of the C core failed (OpenSSL refused something, a lock was not
    obtained in time, memory ran out); the message says which and why."""
