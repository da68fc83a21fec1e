"""What ``tlsresume serve`` is asked to do: :class:`ServerConfig` and its checks,
the listening line scripts parse, and the constants the other serve modules share.
"""

from __future__ import annotations

import errno
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the core is imported lazily so --no-share works without it
    pass


from tlsresume._tls import TLS_VERSIONS
from tlsresume.errors import TLSResumeError

log = logging.getLogger("tlsresume.tools.serve")


#: The master prints one line starting with this once every worker is ready;
#: scripts and tests parse the port and worker pids from it.
LISTENING_PREFIX = "tlsresume serve: listening on "

#: Workers answer this path with the shared counters as JSON (see :func:`stats_payload`).
STATS_PATH = "/.well-known/tlsresume/stats"

#: The ``server`` field of the stats JSON; ``tlsresume check`` looks for it.
STATS_SERVER_ID = "tlsresume serve"

#: At most this much unread client input is drained before closing (lingering close).
_LINGER_BYTES = 1 << 18

# tlsresume.redis's defaults (DEFAULT_REFRESH, DEFAULT_TIMEOUT), here so that checking
# the options needs neither redis-py nor the core.
_REDIS_REFRESH = 5.0
_REDIS_TIMEOUT = 0.005

# A worker's last word on the ready pipe: its session tier's counters, as JSON.
_TIER_REPORT = b"redis-tier "

# accept() errors that say "no resources right now" or "that client already left":
# the worker backs off or moves on instead of dying.
_TRANSIENT_ACCEPT_ERRNOS = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.ECONNABORTED, errno.EPROTO}
)


#: The session store ``serve`` shares when ``--session-cache`` is not given: 10 MiB,
#: as ``tlsresume.DEFAULT_STORE_SIZE`` (kept apart so that ``--no-share`` never
#: loads the C core).
DEFAULT_SESSION_CACHE = 10 * 1024 * 1024


@dataclass
class ServerConfig:
    """Everything ``tlsresume serve`` needs; the CLI only fills this in.

    Attributes:
        cert: PEM certificate chain; ``None`` (with ``key`` ``None``) makes a throwaway
            self-signed certificate.
        key: PEM private key for ``cert``.
        host: address to bind (IPv4 or IPv6 literal, or a name).
        port: TCP port; 0 picks a free one (printed on the listening line).
        workers: number of worker processes.
        spawn: start workers as separate interpreters that attach to the named
            regions, instead of forking them.
        share: install tlsresume (the key ring, and the store if ``session_cache``)
            on every worker's context; ``False`` is the baseline every Python
            pre-fork server has today: no tlsresume at all.
        tickets: issue session tickets; ``False`` sets ``ssl.OP_NO_TICKET`` on every
            worker context (no key ring; TLS 1.3 tickets become stateful).
        session_cache: size of the shared session store (``"10M"``, bytes); ``None``
            (default): :data:`~tlsresume.DEFAULT_STORE_SIZE` when ``share``, none
            otherwise; ``False``: no session store (``--no-session-cache``).
        single_use: a TLS 1.3 stateful ticket resumes only once (needs
            ``session_cache`` and ``tickets=False``).
        rotate: ticket key rotation period in seconds; ``None`` keeps the ring default.
        key_file: read the ticket keys from this key file (reloaded when it changes,
            checked every ``key_poll`` seconds) instead of a rotating ring: how an
            instance joins a fleet (nginx, HAProxy, other tlsresume servers) that
            reads the same file.
        key_format: the key file's format (``tlsresume.keyfile.FORMATS``).
        key_poll: seconds between checks of ``key_file``.
        session_id_context: the session ID context every worker sets instead of
            tlsresume's policy digest, to resume sessions with servers that are not
            tlsresume: text (``"haproxy"``), ``"hex:..."`` for raw bytes, or
            ``"nginx"`` for nginx's value for an ``http`` ``server {}`` block with
            this certificate (``--cert``).
        ciphers: OpenSSL cipher string for TLS 1.2 (``SSLContext.set_ciphers``).
        tls_max: highest TLS version offered, ``"1.2"`` or ``"1.3"``; ``None`` = 1.3.
        threads: connection threads per worker that finish the connections of slow
            clients, so one slow client cannot stall its worker: the worker's
            accepting thread serves every client that keeps up itself, and hands
            the others to these threads.
        inline_timeout: how long the accepting thread waits for a client, at each
            step of the handshake and request, before it hands the connection to a
            connection thread; short, because it accepts nothing meanwhile.
        handshake_timeout: seconds a client gets to finish the TLS handshake.
        request_timeout: seconds a client gets to send its request headers.
        shutdown_timeout: after our close_notify, seconds to wait for the client to
            close its side (its input is drained meanwhile, so closing does not turn
            into an RST that could destroy the response), for a client that may
            still be sending (a head too large, garbage, a request with a body; the
            others are closed at once); short, because such a client holds a
            connection thread.
        max_header_bytes: request head size limit; larger heads get a 431 answer.
        backlog: ``listen()`` backlog of the shared socket.
        log_level: logging level name for the master and workers (``"WARNING"``).
        redis: Redis URL (``redis://[:PASSWORD@]HOST:PORT/DB``, ``rediss://...``,
            ``unix://...``): share the ring and store with every instance that uses
            the same Redis and ``redis_name``; ``None`` shares nothing beyond this
            instance.
        redis_name: the service's name in Redis (``None``: ``"default"``).
        redis_refresh: seconds between key polls, the longest this instance lags the
            fleet's ring (``None``: 5); shorter than the rotation period.
        redis_timeout: the longest a handshake waits for a Redis session lookup, in
            seconds (``None``: 0.005).
        redis_master_key_file: a file holding the fleet's master key (64 hex digits
            or base64): keys and sessions are sealed in Redis under it.
        redis_local_rotation: while Redis is unreachable, let the ring rotate by
            itself (see :class:`tlsresume.redis.KeySync`).
        redis_insecure_unsealed: keep keys and sessions in Redis in the clear,
            knowingly (without it, ``redis`` needs ``redis_master_key_file``).
        redis_new_master_key: make ``redis_master_key_file`` with a fresh key (mode
            0600) if it does not exist yet, for a first try on one machine.
    """

    cert: str | None = None
    key: str | None = None
    host: str = "127.0.0.1"
    port: int = 8443
    workers: int = 4
    spawn: bool = False
    share: bool = True
    tickets: bool = True
    session_cache: str | bool | None = None
    single_use: bool = False
    rotate: float | None = None
    key_file: str | None = None
    key_format: str | None = None
    key_poll: float = 5.0
    session_id_context: str | None = None
    ciphers: str | None = None
    tls_max: str | None = None
    threads: int = 8
    inline_timeout: float = 0.005
    handshake_timeout: float = 10.0
    request_timeout: float = 10.0
    shutdown_timeout: float = 1.0
    max_header_bytes: int = 16384
    backlog: int = 128
    log_level: str = "WARNING"
    redis: str | None = None
    redis_name: str | None = None
    redis_refresh: float | None = None
    redis_timeout: float | None = None
    redis_master_key_file: str | None = None
    redis_local_rotation: bool = False
    redis_insecure_unsealed: bool = False
    redis_new_master_key: bool = False

    def validate(self) -> None:
        """Check the values before anything is bound or forked.

        Raises:
            ValueError: a value is out of range or inconsistent, naming the option.
        """
        if (self.cert is None) != (self.key is None):
            raise ValueError("give both --cert and --key, or neither (for a throwaway cert)")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"--port must be between 0 and 65535, not {self.port}")
        if not 1 <= self.workers <= 256:
            raise ValueError(f"--workers must be between 1 and 256, not {self.workers}")
        if self.rotate is not None and not self.rotate > 0:
            raise ValueError(f"--rotate must be a positive number of seconds, not {self.rotate}")
        if self.rotate is not None and not self.tickets:
            raise ValueError(
                "--rotate sets ticket key rotation; with --no-tickets there are no keys"
            )
        self._validate_keys()
        if isinstance(self.session_cache, str):
            if not self.share:
                raise ValueError(
                    "--session-cache is tlsresume's shared store; --no-share runs without "
                    "tlsresume (drop one of them)"
                )
            try:
                from tlsresume.store import parse_size
            except ImportError:  # the core cannot load: start() reports that clearly
                pass
            else:
                try:
                    parse_size(self.session_cache)
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"--session-cache: {exc}") from None
        if self.single_use and self.store_size() is None:
            raise ValueError(
                "--single-use needs --session-cache (it is a property of the store); "
                "drop --no-session-cache"
            )
        if self.single_use and self.tickets:
            raise ValueError(
                "--single-use applies to TLS 1.3 stateful tickets, which need --no-tickets "
                "(stateless tickets from the key ring cannot be made single-use)"
            )
        if self.tls_max is not None and self.tls_max not in TLS_VERSIONS:
            raise ValueError(f"--tls-max must be 1.2 or 1.3, not {self.tls_max!r}")
        if self.threads < 1:
            raise ValueError(f"threads per worker must be at least 1, not {self.threads}")
        for name in ("handshake_timeout", "request_timeout", "inline_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)}")
        if self.shutdown_timeout < 0:
            raise ValueError(f"shutdown_timeout must be >= 0, not {self.shutdown_timeout}")
        if self.max_header_bytes < 64:
            raise ValueError(f"max_header_bytes must be at least 64, not {self.max_header_bytes}")
        self._validate_redis()

    def _validate_keys(self) -> None:
        """``--key-file``, ``--key-format`` and ``--session-id-context``."""
        if self.key_format is not None and self.key_file is None:
            raise ValueError("--key-format says how to read --key-file; give --key-file PATH")
        if self.key_file is not None:
            for option, on in (
                ("--no-share", not self.share),
                ("--no-tickets", not self.tickets),
                ("--rotate", self.rotate is not None),
                ("--redis", self.redis is not None),
            ):
                if on:
                    raise ValueError(
                        f"--key-file and {option} do not go together: the key file is the "
                        "only source of ticket keys (rewrite it to rotate)"
                    )
            if self.key_format is None:
                raise ValueError(
                    "--key-file needs --key-format: openssl80, nginx48, nginx80 or haproxy "
                    "(nginx's and OpenSSL's 80-byte layouts differ only in field order, so "
                    "the format cannot be guessed)"
                )
            try:
                from tlsresume.keyfile import canonical_format
            except ImportError:  # the core cannot load: start() reports that clearly
                pass
            else:
                canonical_format(self.key_format)  # ValueError naming the formats
            if not self.key_poll > 0:
                raise ValueError(
                    f"the key file poll interval must be positive, not {self.key_poll}"
                )
        if self.session_id_context is not None:
            if not self.share:
                raise ValueError(
                    "--session-id-context is set by tlsresume; --no-share runs without it "
                    "(drop one of them)"
                )
            if self.session_id_context == "nginx" and self.cert is None:
                raise ValueError(
                    "--session-id-context nginx is nginx's digest of its certificate: give "
                    "--cert and --key (the files nginx's ssl_certificate names)"
                )
            self.session_id_bytes()

    def session_id_bytes(self) -> bytes | None:
        """``session_id_context`` as the bytes every worker sets (``None``: tlsresume's
        policy digest).

        Raises:
            ValueError: not 1-32 bytes, or bad hex, naming the option.
        """
        value = self.session_id_context
        if value is None:
            return None
        if value == "nginx":
            from tlsresume.interop import nginx_session_id_context

            assert self.cert is not None
            return nginx_session_id_context(self.cert)
        if value.startswith("hex:"):
            try:
                raw = bytes.fromhex(value[4:])
            except ValueError:
                raise ValueError(
                    f"--session-id-context {value!r}: after 'hex:' give an even number of "
                    "hex digits"
                ) from None
        else:
            raw = value.encode()
        if not 1 <= len(raw) <= 32:
            raise ValueError(
                f"--session-id-context is {len(raw)} bytes; OpenSSL takes 1 to 32 "
                "(SSL_MAX_SID_CTX_LENGTH)"
            )
        return raw

    def store_size(self) -> str | int | None:
        """The size of the shared session store to make, ``None`` for none."""
        if isinstance(self.session_cache, str):
            return self.session_cache
        if self.session_cache is None and self.share:
            return DEFAULT_SESSION_CACHE
        return None

    def _validate_redis(self) -> None:
        """The ``--redis*`` options; the URL itself is redis-py's to judge (at start)."""
        given = {
            "--redis-name": self.redis_name is not None,
            "--redis-refresh": self.redis_refresh is not None,
            "--redis-timeout-ms": self.redis_timeout is not None,
            "--redis-master-key-file": self.redis_master_key_file is not None,
            "--redis-local-rotation": self.redis_local_rotation,
            "--redis-insecure-unsealed": self.redis_insecure_unsealed,
            "--redis-new-master-key": self.redis_new_master_key,
        }
        if self.redis is None:
            for option, on in given.items():
                if on:
                    raise ValueError(f"{option} needs --redis URL")
            return
        if not self.share:
            raise ValueError(
                "--redis shares tlsresume's keys and sessions between instances; --no-share "
                "runs without tlsresume (drop one of them)"
            )
        if not self.tickets and self.store_size() is None:
            raise ValueError(
                "--redis has nothing to share with --no-tickets and no --session-cache "
                "(add --session-cache SIZE to share sessions)"
            )
        if self.redis_local_rotation and not self.tickets:
            raise ValueError(
                "--redis-local-rotation rotates ticket keys; with --no-tickets there are none"
            )
        if not self.redis.strip():
            raise ValueError("--redis needs a URL, e.g. redis://:PASSWORD@HOST:6379/0")
        name = self.redis_name
        if name is not None and (not name or len(name) > 200 or any(c.isspace() for c in name)):
            raise ValueError(f"--redis-name {name!r}: use 1-200 characters, no spaces")
        timeout = self.redis_timeout
        if timeout is not None and not 0 < timeout <= 1:
            raise ValueError(
                f"--redis-timeout-ms must be more than 0 and at most 1000, not {timeout * 1000:g}"
            )
        refresh = self.redis_refresh
        if refresh is not None and not 0 < refresh <= 86400:
            raise ValueError(f"--redis-refresh must be in (0, 86400] seconds, not {refresh:g}")
        if self.tickets:
            period = self.rotate
            if period is None:
                from tlsresume.policy import DEFAULT_ROTATION_PERIOD  # pure: no core needed

                period = DEFAULT_ROTATION_PERIOD
            if (refresh if refresh is not None else _REDIS_REFRESH) >= period:
                raise ValueError(
                    f"--redis-refresh must be shorter than the rotation period ({period:g} s, "
                    "--rotate), so every instance learns the next key before it is used"
                )
        if self.redis_master_key_file is None and not self.redis_insecure_unsealed:
            raise ValueError(
                "--redis needs --redis-master-key-file FILE (the fleet's master key; add "
                "--redis-new-master-key to make one for a first try) or, knowingly, "
                "--redis-insecure-unsealed: without a seal, whoever can read Redis decrypts "
                "every ticket and session, and whoever can write it injects sessions"
            )
        if self.redis_master_key_file is not None and self.redis_insecure_unsealed:
            raise ValueError("--redis-master-key-file and --redis-insecure-unsealed: choose one")
        if self.redis_new_master_key and self.redis_master_key_file is None:
            raise ValueError("--redis-new-master-key needs --redis-master-key-file FILE")

    def redis_settings(self) -> tuple[str, float, float]:
        """``(name, refresh, timeout)`` for ``--redis``, defaults filled in."""
        return (
            self.redis_name if self.redis_name is not None else "default",
            self.redis_refresh if self.redis_refresh is not None else _REDIS_REFRESH,
            self.redis_timeout if self.redis_timeout is not None else _REDIS_TIMEOUT,
        )


@dataclass(frozen=True)
class ListeningLine:
    """What the master's listening line says."""

    host: str
    port: int
    pids: tuple[int, ...]
    fields: dict[str, str]


def parse_listening_line(line: str) -> ListeningLine | None:
    """Parse ``tlsresume serve: listening on https://HOST:PORT/ key=value ...``.

    Returns:
        The parsed line, or ``None`` if ``line`` is not the listening line.
    """
    if not line.startswith(LISTENING_PREFIX):
        return None
    url, *rest = line[len(LISTENING_PREFIX) :].split()
    hostport = url.removeprefix("https://").rstrip("/")
    host, _, port = hostport.rpartition(":")
    fields = dict(item.split("=", 1) for item in rest if "=" in item)
    pids = tuple(int(p) for p in fields.get("pids", "").split(",") if p)
    return ListeningLine(host.strip("[]"), int(port), pids, fields)


class ServeError(TLSResumeError, RuntimeError):
    """The server could not start (a worker failed before it was ready, ...)."""


def _read_master_key(path: str, create: bool = False) -> tuple[bytes, bool]:
    """The Redis master key from ``--redis-master-key-file``, and whether this call
    made the file (``create``: a fresh key, mode 0600, when there is none yet).

    Raises:
        ServeError: the file cannot be read (or made) or holds no 32-byte key.
    """
    from tlsresume._files import write_private
    from tlsresume.redis import generate_master_key, load_master_key

    made = False
    try:
        if create and not os.path.lexists(path):
            write_private(path, (generate_master_key() + "\n").encode())
            made = True
        return load_master_key(path), made
    except (OSError, ValueError) as exc:
        raise ServeError(f"--redis-master-key-file {path}: {exc}") from None
