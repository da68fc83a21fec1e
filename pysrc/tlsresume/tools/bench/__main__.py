"""``python -m tlsresume.tools.bench``: the same as ``tlsresume bench``."""

import sys

from tlsresume.tools.bench.cli import main

sys.exit(main())
