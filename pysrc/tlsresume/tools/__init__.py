"""What the ``tlsresume`` command runs: the command line and its tools.

Nothing here is library API: servers and clients use the package root
(:func:`tlsresume.install`, :class:`tlsresume.TicketKeyRing`, ...). The modules:
:mod:`.cli` (the entry point), :mod:`.serve` (the test server), :mod:`.check`,
:mod:`.stats` (text output), :mod:`.demo`, :mod:`.bench` and :mod:`.launch` (the one
way to start a ``serve`` subprocess). Importing them needs no C core.
"""
