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
    "PolicyConflictError",
    "StateError",
    "LayoutError",
    "TLSResumeWarning",
]


class TLSResumeError(Exception):
    """Base class of every tlsresume error; never raised directly."""


class OpenSSLUnavailableError(TLSResumeError, ImportError):
    """The OpenSSL that Python's ``ssl`` module uses cannot be reached or is too old.

    Raised when a name that needs the C core is first used (``import tlsresume``
    alone does not bind it). Also an ``ImportError``, so
    ``try: from tlsresume import TicketKeyRing / except ImportError`` works for
    code that treats tlsresume as optional.
    """


class KeyFileError(TLSResumeError, ValueError):
    """A ticket key file is missing, malformed, or in a layout other than the one named."""


class StateError(TLSResumeError):
    """An object was asked for something its state does not allow: rotating a ring
    whose keys come from a key file, unlinking an anonymous region, syncing a
    ``KeySync`` from a forked child, ..."""


class RingClosedError(StateError):
    """A key ring (or store) was used after ``close()``."""


class SharedMemoryError(TLSResumeError, OSError):
    """A shared-memory region could not be created, attached or validated.

    Attributes:
        code: the C core's ``TLSR_E_*`` code when the error came from it (e.g.
            ``TLSR_E_EXISTS``, ``TLSR_E_NOTFOUND``), else ``None``; decide by this,
            never by the message text.
    """

    code: int | None = None


class ContextError(TLSResumeError, ValueError):
    """An ``SSLContext`` cannot be used the way it was asked (e.g. a client context
    given where a server context is needed)."""


class CoreError(TLSResumeError):
    """An operation of the C core failed (OpenSSL refused something, a lock was not
    obtained in time, memory ran out); the message says which and why.

    Attributes:
        code: the C core's ``TLSR_E_*`` code when it reported one, else ``None``.
    """

    code: int | None = None


class LayoutError(TLSResumeError):
    """CPython's ``ssl`` objects are laid out differently than tlsresume expects, so
    the OpenSSL object inside one cannot be located safely."""


class PolicyConflictError(ContextError):
    """An explicit ``session_id_context`` would join contexts that admit different
    clients, so a session made on one would resume on the other."""


class TLSResumeWarning(UserWarning):
    """A setting that works but weakens what tlsresume guarantees by default."""
