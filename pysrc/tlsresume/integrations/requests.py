"""requests: a transport adapter whose HTTPS connections resume their TLS sessions.

::

    import requests
    from tlsresume.integrations.requests import ResumingAdapter

    session = requests.Session()
    session.mount("https://", ResumingAdapter())
    session.get("https://example.org/")     # full handshake
    session.get("https://example.org/")     # a new connection resumes

Why an adapter, and not only ``ssl_context=``: requests gives every connection pool
the CA bundle of ``verify`` (certifi's for ``verify=True``) and urllib3 loads it
into the context at every new connection, even when the adapter was given a
context: about 19 ms of certificate parsing per connection on OpenSSL 3.0, more
than the handshake that resumption saves. This adapter keeps one client context
per verification setting, loaded once, and hands requests' choices to it:

* ``verify=True`` (requests' default): certifi's bundle, as requests trusts it, or
  the context given to the adapter;
* ``verify="/path/ca.pem"`` (or a CA directory, or ``REQUESTS_CA_BUNDLE``): a
  context that trusts exactly that bundle;
* ``verify=False``: a context that verifies nothing;
* ``cert=`` (a client certificate): a context of its own with that certificate.

Contexts are never changed after they are made (urllib3 would otherwise load
bundles and client certificates into one shared context, so a request's setting
would leak into the next). All of them share one
:class:`~tlsresume.ClientSessionCache`, whose safety rule keeps a session from
being offered where it was verified less strictly, or against other CAs, than the
new connection would be: a session from a ``verify=False`` request never resumes a
verifying one. A wrong CA or a wrong hostname fails exactly as with requests.

Needs requests >= 2.32.2 (``build_connection_pool_key_attributes``).
"""

from __future__ import annotations

import os
import ssl
import threading
from typing import Any

import requests.adapters
import requests.utils

# From the package root: the C cache, or the pure-Python one where the core cannot load.
from .. import ClientSessionCache, client_context

__all__ = ["ResumingAdapter"]

_Key = tuple[Any, ...]


class ResumingAdapter(requests.adapters.HTTPAdapter):
    """An ``HTTPAdapter`` for ``https://`` whose connections resume TLS sessions.

    Args:
        context: the client context for ``verify=True`` (default: a
            :func:`tlsresume.client_context` trusting certifi's bundle, as requests
            does). It must be a client context; its cache serves every context
            this adapter makes unless ``cache`` is given.
        cache: the session cache (default: the context's, or a new one).
        namespace: the namespace of this adapter's sessions in the cache.
        **kwargs: ``HTTPAdapter``'s (``pool_connections``, ``max_retries``...).

    Raises:
        TypeError: ``context`` is not an ``ssl.SSLContext``, or ``cache`` not a
            :class:`~tlsresume.ClientSessionCache`.
        ValueError: ``context`` is a server context.
        RuntimeError: requests is older than 2.32.2.
    """

    def __init__(
        self,
        context: ssl.SSLContext | None = None,
        *,
        cache: ClientSessionCache | None = None,
        namespace: str = "",
        **kwargs: Any,
    ) -> None:
        if not hasattr(requests.adapters.HTTPAdapter, "build_connection_pool_key_attributes"):
            found = getattr(requests, "__version__", "?")
            raise RuntimeError(
                f"ResumingAdapter needs requests >= 2.32.2 (found {found}); "
                "upgrade requests (pip install -U requests)"
            )
        if context is not None:
            if not isinstance(context, ssl.SSLContext):
                raise TypeError(f"context must be an ssl.SSLContext, not {type(context).__name__}")
            if context.protocol == ssl.PROTOCOL_TLS_SERVER:
                raise ValueError(
                    "ResumingAdapter needs a client context; this one is a server context "
                    "(make it with tlsresume.client_context())"
                )
        if cache is not None and not isinstance(cache, ClientSessionCache):
            raise TypeError(f"cache must be a ClientSessionCache, not {type(cache).__name__}")
        own = getattr(context, "session_cache", None)
        self.cache = cache or (own if isinstance(own, ClientSessionCache) else ClientSessionCache())
        self.namespace = namespace
        self._given = context
        self._contexts: dict[_Key, ssl.SSLContext] = {}
        self._lock = threading.Lock()
        super().__init__(**kwargs)

    # ---- one context per verification setting ------------------------------------

    def context_for(self, verify: Any = True, cert: Any = None) -> ssl.SSLContext:
        """The context HTTPS connections use for requests' ``verify`` and ``cert``
        (made on first use, then reused)."""
        key: _Key = (verify, tuple(cert) if isinstance(cert, (list, tuple)) else cert)
        with self._lock:
            ctx = self._contexts.get(key)
            if ctx is None:
                ctx = self._contexts[key] = self._make(verify, cert)
        return ctx

    def _make(self, verify: Any, cert: Any) -> ssl.SSLContext:
        if verify is True and cert is None and self._given is not None:
            return self._given
        if verify is True and self._given is not None:
            raise ValueError(
                "this ResumingAdapter was given a context, so requests' cert= cannot be "
                "added to it: load the client certificate into that context "
                "(ctx.load_cert_chain(...)) and drop cert=, or give the adapter no context"
            )
        if verify is False:
            ctx: ssl.SSLContext = client_context(self.cache, namespace=self.namespace)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            where = requests.utils.DEFAULT_CA_BUNDLE_PATH if verify is True else os.fspath(verify)
            if not os.path.exists(where):
                raise OSError(
                    f"Could not find a suitable TLS CA certificate bundle, invalid path: {where}"
                )
            if os.path.isdir(where):
                ctx = client_context(self.cache, capath=where, namespace=self.namespace)
            else:
                ctx = client_context(self.cache, cafile=where, namespace=self.namespace)
        if cert is not None:
            if isinstance(cert, (list, tuple)):
                ctx.load_cert_chain(cert[0], cert[1])
            else:
                ctx.load_cert_chain(cert)
        return ctx

    # ---- where requests would hand urllib3 files, hand it the context --------------

    def build_connection_pool_key_attributes(
        self, request: Any, verify: Any, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        host, pool = super().build_connection_pool_key_attributes(request, verify, cert)
        if host.get("scheme") == "https":
            _hand_over(pool, self.context_for(verify, cert))
        return host, pool

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        if not url.lower().startswith("https"):
            super().cert_verify(conn, url, verify, cert)
            return
        ctx = self.context_for(verify, cert)
        conn.cert_reqs = _cert_reqs(ctx)
        conn.ca_certs = conn.ca_cert_dir = None
        conn.cert_file = conn.key_file = None

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        # A TLS proxy is verified with the verify=True context (requests verifies
        # https proxies with its default bundle too).
        if proxy.lower().startswith("https"):
            proxy_kwargs.setdefault("proxy_ssl_context", self.context_for(True, None))
        return super().proxy_manager_for(proxy, **proxy_kwargs)


def _cert_reqs(ctx: ssl.SSLContext) -> str:
    # urllib3 sets context.verify_mode from this on every connection: keep it the
    # context's own, so the shared context is never changed.
    return ssl.VerifyMode(ctx.verify_mode).name


def _hand_over(pool: dict[str, Any], ctx: ssl.SSLContext) -> None:
    for name in ("ca_certs", "ca_cert_dir", "cert_file", "key_file"):
        pool.pop(name, None)
    pool["ssl_context"] = ctx
    pool["cert_reqs"] = _cert_reqs(ctx)
