"""The options of the ``tlsresume`` subcommands too large to sit in
:mod:`tlsresume.tools.cli`: one module each, ``_add_NAME`` and ``_cmd_NAME``. Importing
them needs no C core (the work is imported when a command runs)."""
