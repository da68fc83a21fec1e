"""``python -m tlsresume``: the same as the ``tlsresume`` command."""

import sys

from tlsresume.cli import main

sys.exit(main())
