"""``python -m tlsresume``: the same as the ``tlsresume`` command."""

import sys

from tlsresume.tools.cli import main

sys.exit(main())
