"""What every subcommand shares: the program name, exit codes, the error line."""

from __future__ import annotations

import os
import sys

PROG = "tlsresume"

# Exit codes: 0 success, 1 the operation failed, 2 bad usage (argparse's own), 130
# interrupted by Ctrl-C (the shell convention 128 + SIGINT).
EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _fail(message: str, code: int = EXIT_FAIL) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


def _redis_url(value: str | None) -> str | None:
    """``--redis env`` takes the URL from ``$TLSRESUME_REDIS_URL``."""
    if value != "env":
        return value
    url = os.environ.get("TLSRESUME_REDIS_URL", "").strip()
    if not url:
        raise SystemExit(f"{PROG} serve: --redis env: set TLSRESUME_REDIS_URL to the Redis URL")
    return url
