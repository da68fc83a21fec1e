"""hypercorn: ``--workers`` that resume each other's TLS sessions.

hypercorn builds its context in ``Config.create_ssl_context()``, a method, and has
no hook for it; its command line always makes a plain ``hypercorn.config.Config``.
Use this module's :class:`Config`, which installs resumption on the context
hypercorn builds (so ``certfile``, ``ciphers``, ALPN... all apply)::

    from hypercorn.run import run
    from tlsresume.integrations.hypercorn import Config

    if __name__ == "__main__":
        config = Config()                      # or Config.from_toml("hypercorn.toml")
        config.application_path = "app:app"
        config.bind = ["0.0.0.0:8443"]
        config.certfile, config.keyfile = "cert.pem", "key.pem"
        config.workers = 4
        run(config)

or, unchanged hypercorn command line, through this module::

    python -m tlsresume.integrations.hypercorn --workers 4 \\
        --certfile cert.pem --keyfile key.pem --bind 0.0.0.0:8443 app:app

hypercorn spawns its workers and sends each the pickled config; the config's
:class:`Resumption` makes a named key ring (and store) in the master, removed when
it exits, which the workers attach to. asyncio (and trio) end TLS connections with
close_notify by themselves.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from ssl import SSLContext
from typing import Any

import hypercorn.config

from ._shared import KeyFile
from ._shared import Resumption as _Resumption

__all__ = ["Config", "Resumption", "KeyFile", "main"]


class Resumption(_Resumption):
    """Takes the arguments of :class:`tlsresume.integrations.Resumption`, with
    ``spawn=True`` (named regions) and the name prefix ``"hypercorn"`` by default."""

    def __init__(
        self, *args: Any, spawn: bool = True, name: str = "hypercorn", **kwargs: Any
    ) -> None:
        super().__init__(*args, spawn=spawn, name=name, **kwargs)


class Config(hypercorn.config.Config):
    """A hypercorn ``Config`` whose TLS context resumes sessions across workers.

    ``tlsresume`` is the :class:`Resumption` used (set it to change keys or add a
    session cache: ``config.tlsresume = Resumption(session_cache="10M")``); one is
    made with the config, in the master.
    """

    def __init__(self) -> None:
        super().__init__()
        self.tlsresume: _Resumption = Resumption()

    def create_ssl_context(self) -> SSLContext | None:
        ctx = super().create_ssl_context()
        return None if ctx is None else self.tlsresume.install(ctx)


class _CommandLineConfig(Config):
    """The Config of :func:`main`: its Resumption comes from the environment."""

    def __init__(self) -> None:
        hypercorn.config.Config.__init__(self)
        self.tlsresume = Resumption.from_environ()


def main(argv: Sequence[str] | None = None) -> int:
    """hypercorn's own command line, building this module's :class:`Config`.

    The ``TLSRESUME_*`` environment variables of
    :meth:`tlsresume.integrations.Resumption.from_environ` configure it.
    """
    import hypercorn.__main__ as hypercorn_main

    # hypercorn's main() makes its Config through this module-level name; only
    # this process (the master) sees the replacement, and the workers receive a
    # pickled tlsresume Config.
    real = getattr(hypercorn_main, "Config")  # noqa: B009
    setattr(hypercorn_main, "Config", _CommandLineConfig)  # noqa: B010
    try:
        return hypercorn_main.main(list(sys.argv[1:] if argv is None else argv))
    finally:
        setattr(hypercorn_main, "Config", real)  # noqa: B010


if __name__ == "__main__":
    sys.exit(main())
