"""uvicorn: ``--workers`` that resume each other's TLS sessions.

uvicorn (>= 0.47) takes an ``ssl_context_factory(config, default_factory)`` in
``uvicorn.run()`` and ``uvicorn.Config``, not on its command line::

    import uvicorn
    from tlsresume.integrations.uvicorn import Resumption

    if __name__ == "__main__":
        uvicorn.run("app:app", workers=4, ssl_certfile="cert.pem", ssl_keyfile="key.pem",
                    ssl_context_factory=Resumption())

or, unchanged uvicorn command line, through this module::

    python -m tlsresume.integrations.uvicorn app:app --workers 4 \\
        --ssl-certfile cert.pem --ssl-keyfile key.pem

``uvicorn --workers N`` *spawns* its workers (fresh interpreters) and sends each the
pickled ``Config``. The :class:`Resumption` makes a named key ring (and store) in the
master, removed when the master exits, and travels as their names; each worker
attaches by name. The context is uvicorn's own (``default_factory()``, so every ``--ssl-*``
option applies) with resumption installed. asyncio ends TLS connections with
close_notify by itself.

It also sets TCP_NODELAY on every accepted connection. asyncio sets it only on
sockets that say they are TCP, and the listening socket uvicorn takes from
``--fd`` (socket activation, a supervisor's socket) is made with
``socket.fromfd(fd, AF_UNIX, SOCK_STREAM)``, so its connections never get it (older
uvicorn releases made the ``--port`` socket with proto 0, with the same effect).
Without it a TLS handshake stalls on Nagle's algorithm and the peer's delayed ACK:
measured here with ``--fd``, stock uvicorn with 2 workers served a few dozen new
TLS connections a second (bench/uvicorn_conns.py). ``nodelay=False`` keeps uvicorn's behaviour.
"""

from __future__ import annotations

import importlib
import inspect
import ssl
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ._shared import KeyFile, nodelay_protocol
from ._shared import Resumption as _Resumption

__all__ = ["Resumption", "KeyFile", "main"]


class Resumption(_Resumption):
    """uvicorn's ``ssl_context_factory`` sharing TLS sessions between the workers.

    Takes the arguments of :class:`tlsresume.integrations.Resumption`, with
    ``spawn=True`` (named regions) and the name prefix ``"uvicorn"`` by default,
    and ``nodelay``: set TCP_NODELAY on accepted connections (default ``True``).
    """

    def __init__(
        self,
        *args: Any,
        spawn: bool = True,
        name: str = "uvicorn",
        nodelay: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, spawn=spawn, name=name, **kwargs)
        self.nodelay = bool(nodelay)

    def __call__(
        self, config: Any, default_factory: Callable[[], ssl.SSLContext]
    ) -> ssl.SSLContext:
        """uvicorn calls this in each worker as it loads its ``Config`` (after it
        chose the HTTP protocol class, which is wrapped here for TCP_NODELAY)."""
        protocol = getattr(config, "http_protocol_class", None)
        if self.nodelay and isinstance(protocol, type):
            config.http_protocol_class = nodelay_protocol(protocol)
        return self.context(default_factory)

    def __reduce__(self) -> tuple[Any, ...]:
        # The names of the regions (see the base class), and this class's option.
        return (*super().__reduce__(), {"nodelay": self.nodelay})


def main(argv: Sequence[str] | None = None) -> Any:
    """uvicorn's own command line, with :class:`Resumption` as the context factory.

    The ``TLSRESUME_*`` environment variables of
    :meth:`tlsresume.integrations.Resumption.from_environ` configure it.
    """
    # uvicorn's package exports the click command as ``main``, hiding the module.
    uvicorn_main = importlib.import_module("uvicorn.main")
    real_run = getattr(uvicorn_main, "run")  # noqa: B009  (a module found at run time)
    if "ssl_context_factory" not in inspect.signature(real_run).parameters:
        raise SystemExit(
            "tlsresume needs uvicorn >= 0.47, which added ssl_context_factory; "
            "upgrade uvicorn (pip install -U uvicorn)"
        )

    def run(*args: Any, **kwargs: Any) -> Any:
        # A factory turns TLS on in uvicorn: add one only where a certificate is.
        if kwargs.get("ssl_certfile") and kwargs.get("ssl_context_factory") is None:
            kwargs["ssl_context_factory"] = Resumption.from_environ()
        return real_run(*args, **kwargs)

    # The click command calls the module-level run(); only this process (the
    # master, which spawns the workers) sees the replacement.
    setattr(uvicorn_main, "run", run)  # noqa: B010
    try:
        return uvicorn_main.main.main(
            args=list(sys.argv[1:] if argv is None else argv), prog_name="uvicorn"
        )
    finally:
        setattr(uvicorn_main, "run", real_run)  # noqa: B010


if __name__ == "__main__":
    main()
