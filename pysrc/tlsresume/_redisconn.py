"""Which Redis a fleet talks to, and how this library makes its own connections to it.

An operator hands :mod:`tlsresume.redis` what they already run: a URL (one server,
a Sentinel-managed master, or a Redis Cluster), or a redis-py object configured
elsewhere (``redis.Redis``, a ``ConnectionPool``, ``Sentinel(...).master_for(name)``,
``redis.cluster.RedisCluster``). :func:`connection_spec` turns any of them into a
:class:`ConnectionSpec`: the connection class and arguments, the cluster's seed
nodes if it is one, and a name for messages that never holds a password.

tlsresume never uses the caller's client itself: it makes its own from the spec,
with its own timeouts and without retries (a handshake must not wait on a retry
loop), so closing or reconfiguring the caller's client never touches the fleet, and
a forked worker makes fresh connections.

URL forms (``rediss`` for TLS in each; credentials authenticate to the data nodes):

* ``redis://[[user]:password@]host:port/db`` and ``unix:///path?db=0``: one server.
* ``redis+sentinel://[[user]:password@]host:port[,host:port...]/SERVICE[/db]``: the
  master the sentinels name for ``SERVICE``, found again after every failover.
  ``?sentinel_password=...`` (and ``sentinel_username``) authenticate to the
  sentinels themselves.
* ``redis+cluster://[[user]:password@]host:port[,host:port...]``: a Redis Cluster,
  from any of its nodes (the others are discovered); database 0 only.

Passwords belong in an environment variable or file rather than on a command line:
``tlsresume serve --redis env`` reads the URL from ``TLSRESUME_REDIS_URL``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import redis
import redis.cluster
import redis.sentinel
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError, TimeoutError
from redis.retry import Retry

from .redaction import redact_url

__all__ = ["ConnectionSpec", "connection_spec", "no_retry", "write_retry"]

# redis-py leaves these untyped; Any keeps the checks strict everywhere else.
_cluster: Any = redis.cluster
_sentinel: Any = redis.sentinel


def no_retry() -> Any:
    """redis-py retries connection errors with back-off by default, which would
    multiply every timeout; tlsresume does its own (bounded) retrying."""
    return Retry(NoBackoff(), 0)


def write_retry() -> Any:
    """For work off the handshake path (the session tier's writer): redis-py retries
    a write that met a dropped connection once, after 50 ms, so a Redis restart or
    a Sentinel switch between two batches loses no batch."""
    return Retry(
        ExponentialBackoff(cap=0.2, base=0.05), 1, supported_errors=(ConnectionError, TimeoutError)
    )


@dataclass(frozen=True)
class ConnectionSpec:
    """How to make this library's own connections to a Redis.

    ``cluster_nodes`` is set for a Redis Cluster (the seed nodes to learn the slot
    map from); ``connection_class`` and ``kwargs`` then describe a connection to any
    one node. ``where`` names the target for messages (never a password)."""

    connection_class: Any
    kwargs: dict[str, Any]
    where: str
    cluster_nodes: tuple[tuple[str, int], ...] | None = None
    #: What must stay alive for the connections to work (a Sentinel-managed pool
    #: made from a URL: its connections find the master through it).
    owner: Any = field(default=None, compare=False, repr=False)

    @property
    def is_cluster(self) -> bool:
        return self.cluster_nodes is not None

    def pool(self, **overrides: Any) -> Any:
        """A new connection pool (not for a cluster: each node has its own)."""
        if self.cluster_nodes is not None:
            raise TypeError("a Redis Cluster has one pool per node; use client()")
        return redis.ConnectionPool(
            connection_class=self.connection_class, **{**self.kwargs, **overrides}
        )

    def client(self, **overrides: Any) -> Any:
        """A new client: ``redis.Redis``, or ``RedisCluster`` for a cluster.

        A cluster client learns the slot map in its constructor, so it talks to
        Redis here: make it where a wait is acceptable (never in a handshake)."""
        if self.cluster_nodes is None:
            return redis.Redis(connection_pool=self.pool(**overrides))
        kwargs = {**self.kwargs, **overrides}
        retry = kwargs.pop("retry", None) or no_retry()
        for unused in ("host", "port", "db", "connection_pool"):
            kwargs.pop(unused, None)
        if issubclass(self.connection_class, redis.SSLConnection):
            kwargs["ssl"] = True  # the cluster client picks its connection class by this
        return _cluster.RedisCluster(
            startup_nodes=[_cluster.ClusterNode(h, p) for h, p in self.cluster_nodes],
            retry=retry,
            # A lookup that meets a moved slot follows the redirection; no more than
            # a few, since every hop is a round trip inside a handshake.
            reinitialize_steps=1,
            **kwargs,
        )


def _hosts(netloc: str, url: str) -> tuple[str, list[tuple[str, int]]]:
    """``(credentials, [(host, port), ...])`` of a multi-host netloc."""
    creds, _, hosts = netloc.rpartition("@")
    out = []
    for item in hosts.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep:
            host, port = item.strip(), "6379"
        if not host or not port.isdigit():
            raise ValueError(
                f"cannot read host:port {item!r} in {redact_url(url)}; "
                "give host:port[,host:port...]"
            )
        out.append((host.strip("[]"), int(port)))
    return creds, out


def _from_multi_host_url(url: str, overrides: Mapping[str, Any]) -> ConnectionSpec:
    parts = urlsplit(url)
    scheme, _, kind = parts.scheme.partition("+")
    creds, hosts = _hosts(parts.netloc, url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    sentinel_auth = {
        k: unquote(query.pop(k)) for k in ("sentinel_password", "sentinel_username") if k in query
    }
    path = [p for p in parts.path.split("/") if p]
    if kind == "sentinel":
        if not path:
            raise ValueError(
                f"{redact_url(url)} names no service: give "
                f"{scheme}+sentinel://host:port[,host:port]/SERVICE[/db]"
            )
        service, db = unquote(path[0]), (path[1] if len(path) > 1 else "0")
    else:
        service, db = "", (path[0] if path else "0")
    # redis-py reads the credentials, TLS and other options of a one-host URL.
    single = f"{scheme}://{creds + '@' if creds else ''}{hosts[0][0]}:{hosts[0][1]}/{db}"
    if query:
        single += "?" + parts.query
    pool = redis.ConnectionPool.from_url(single, **overrides)
    kwargs = dict(pool.connection_kwargs)
    pool.disconnect()
    for k in list(sentinel_auth):  # from_url passes unknown query options through
        kwargs.pop(k, None)
    where = redact_url(url)
    if kind == "cluster":
        if int(kwargs.get("db", 0) or 0) != 0:
            raise ValueError(f"{where}: Redis Cluster has database 0 only")
        return ConnectionSpec(pool.connection_class, kwargs, where, tuple(hosts))
    kwargs.pop("host", None)
    kwargs.pop("port", None)
    sentinel_kwargs = {
        "socket_timeout": overrides.get("socket_timeout"),
        "socket_connect_timeout": overrides.get("socket_connect_timeout"),
        "retry": no_retry(),
        **{name.removeprefix("sentinel_"): v for name, v in sentinel_auth.items()},
    }
    if scheme == "rediss":  # sentinels of a TLS deployment speak TLS too
        sentinel_kwargs.update({k: v for k, v in kwargs.items() if k.startswith("ssl")}, ssl=True)
    sentinel = _sentinel.Sentinel(hosts, sentinel_kwargs=sentinel_kwargs, **kwargs)
    master = sentinel.master_for(service)
    spec = connection_spec(master, {}, where=f"{where} (Sentinel-managed master {service!r})")
    return replace(spec, owner=master)


def connection_spec(
    target: Any, overrides: Mapping[str, Any], *, where: str | None = None
) -> ConnectionSpec:
    """The connections to make for ``target`` (see the module docstring), with
    ``overrides`` (timeouts, ``retry``, the caller's ``client_kwargs``) applied.

    Raises:
        TypeError: an object that is none of the supported clients.
        ValueError: a URL that cannot be used.
    """
    overrides = dict(overrides)
    if isinstance(target, str):
        scheme = target.partition("://")[0].lower()
        if scheme in ("redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster"):
            return _from_multi_host_url(target, overrides)
        pool = redis.ConnectionPool.from_url(target, **overrides)
        try:
            return ConnectionSpec(
                pool.connection_class, dict(pool.connection_kwargs), redact_url(target)
            )
        finally:
            pool.disconnect()
    if isinstance(target, _cluster.RedisCluster):
        manager = target.nodes_manager
        nodes = tuple((n.host, int(n.port)) for n in manager.startup_nodes.values()) or tuple(
            (n.host, int(n.port)) for n in target.get_primaries()
        )
        kwargs = {**manager.connection_kwargs, **overrides}
        conn_class = kwargs.pop("connection_class", redis.Connection)
        label = where or "Redis Cluster at " + ",".join(f"{h}:{p}" for h, p in nodes)
        return ConnectionSpec(conn_class, kwargs, label, nodes)
    pool = target.connection_pool if isinstance(target, redis.Redis) else target
    if not isinstance(pool, redis.ConnectionPool):
        raise TypeError(
            "give a Redis URL, a redis.Redis client (a Sentinel-managed master too), a "
            f"redis.ConnectionPool or a redis.cluster.RedisCluster, not {type(target).__name__}"
        )
    kwargs = {**pool.connection_kwargs, **overrides}
    service = getattr(pool, "service_name", None)
    if where is not None:
        pass
    elif service is not None:
        where = f"Sentinel-managed master {service!r}"
    elif "path" in kwargs:
        where = f"unix:{kwargs['path']}"
    else:
        where = f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
    return ConnectionSpec(pool.connection_class, kwargs, where)
