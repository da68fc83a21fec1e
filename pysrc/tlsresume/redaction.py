"""Keeping passwords out of messages and logs: one place that knows where a URL keeps
its credentials (``scheme://[user][:password]@host...``).

Used by :mod:`tlsresume.redis` and by the tools (``tlsresume serve --redis URL``)
for every URL they print. Pure: no C core, no redis-py.
"""

from __future__ import annotations

import re

__all__ = ["redact_url", "redact_message"]


def _split(url: str) -> tuple[str, str, str] | None:
    """``(scheme, credentials, host and rest)`` of ``url``, or ``None`` without credentials."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return None
    creds, _, host = rest.rpartition("@")
    return scheme, creds, host


def redact_url(url: str) -> str:
    """``url`` with its password (or a lone credential) replaced by ``***``.

    ``redis://user:pw@h:6379/0`` becomes ``redis://user:***@h:6379/0`` and
    ``redis://pw@h`` becomes ``redis://***@h``; a URL without credentials is unchanged.
    """
    url = _QUERY_SECRET.sub(r"\1***", url)  # ?password=..., ?sentinel_password=...
    parts = _split(url)
    if parts is None:
        return url
    scheme, creds, host = parts
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user + ':' if ':' in creds else ''}***@{host}"


_QUERY_SECRET = re.compile(r"([?&][A-Za-z_]*password=)[^&#]*")


def redact_message(message: str, url: str) -> str:
    """``message`` (e.g. an exception text that may quote ``url``) with ``url``'s
    secret replaced by ``***`` wherever it appears."""
    for match in _QUERY_SECRET.finditer(url):
        secret = url[match.end(1) : match.end()]
        if secret:
            message = message.replace(secret, "***")
    parts = _split(url)
    if parts is None:
        return message.replace(url, redact_url(url))
    creds = parts[1]
    secret = creds.split(":", 1)[1] if ":" in creds else creds
    if not secret:
        return message
    return message.replace(url, redact_url(url)).replace(secret, "***")
