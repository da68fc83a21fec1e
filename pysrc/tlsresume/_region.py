"""What every Python handle on a shared region of the C core has in common.

A handle holds one reference to a region (a key ring or a session store). Closing
it drops that reference; OpenSSL contexts the region was installed on hold their
own, so closing never pulls memory from under a live server. Named regions can be
unlinked, and travel to spawned processes as their name.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any, ClassVar

from . import _binding
from ._binding import lib
from .errors import RingClosedError, TLSResumeError

__all__ = ["SharedRegion", "check_region_name"]

_NAME_RE = re.compile(rf"^[A-Za-z0-9._-]{{1,{lib.TLSR_RING_NAME_MAX}}}$")


def check_region_name(name: str, what: str) -> bytes:
    """The name as bytes for the C core, or ValueError/TypeError naming the rule."""
    if not isinstance(name, str):
        raise TypeError(f"{what} name must be a str, not {type(name).__name__}")
    if not _NAME_RE.match(name):
        raise ValueError(
            f"invalid {what} name {name!r}: use 1-{lib.TLSR_RING_NAME_MAX} letters, digits, "
            "'.', '_' or '-'"
        )
    return name.encode()


class SharedRegion:
    """Base of :class:`TicketKeyRing` and :class:`SessionStore`."""

    _what: ClassVar[str]                              # "key ring", "session store"
    _release: ClassVar[Callable[[Any], None]]
    _unlink: ClassVar[Callable[[bytes], int]]

    _ptr: Any = None
    _name: str | None = None

    def _adopt(self, ptr: Any, name: str | None) -> None:
        self._ptr = ptr
        self._name = name
        self._close_lock = threading.Lock()

    @property
    def name(self) -> str | None:
        """The shared-memory name, or ``None`` for an anonymous region."""
        return self._name

    @property
    def closed(self) -> bool:
        return self._ptr is None

    def _label(self) -> str:
        return f"{self._what} {self._name or '(anonymous)'}"

    def _handle(self) -> Any:
        ptr = self._ptr
        if ptr is None:
            raise RingClosedError(f"{self._label()} is closed; create or attach a new one")
        return ptr

    def _on_close(self) -> None:
        """Hook for subclasses: stop what they run beside the region."""

    def close(self) -> None:
        """Drop this object's hold. Contexts it was installed on keep working; the
        memory goes when the last of them is freed. Idempotent."""
        lock = getattr(self, "_close_lock", None)
        if lock is None:
            return
        with lock:
            ptr, self._ptr = self._ptr, None
        if ptr is not None:
            self._on_close()
            type(self)._release(ptr)

    def unlink(self) -> None:
        """Remove the name so no new process can attach; those attached keep it."""
        if self._name is None:
            raise TLSResumeError(f"an anonymous {self._what} has no name to unlink")
        rc = type(self)._unlink(check_region_name(self._name, self._what))
        if rc < 0 and -rc != lib.TLSR_E_NOTFOUND:
            _binding.check(rc, f"unlinking {self._label()}")

    @classmethod
    def attach(cls, name: str) -> Any:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        # multiprocessing (spawn) pickles arguments: a named region travels as its name.
        if self._name is None:
            kind = type(self).__name__
            raise TypeError(
                f"an anonymous {kind} is shared with processes forked after it was made; "
                f"give it a name ({kind}(name=...)) to share it with spawned processes"
            )
        return (type(self).attach, (self._name,))
