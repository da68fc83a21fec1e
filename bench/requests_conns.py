"""N sequential new HTTPS connections with requests: stock, stock with a resuming
context handed through ``init_poolmanager`` (the old recipe), and
``tlsresume.integrations.requests.ResumingAdapter``.

The server is ``tlsresume serve --workers 2`` on loopback (shared tickets); clients
verify it against certifi's bundle with the run's CA appended (the size of bundle
requests loads for ``verify=True``): the CA and server of ``tlsresume bench
--client-libs``, which measures httpx and urllib3 too. Every request carries
``Connection: close``, so each one is a new TCP and TLS connection. Rounds are
interleaved (every client once per round, after a warm-up); the table gives the
median wall time of a round with its range, client CPU per connection, the share
resumed and the ratio to stock requests.

Run: ``python bench/requests_conns.py`` (``--conns``, ``--rounds``, ``--json``).
Figures are ratios within one run; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import ssl
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter

import tlsresume
from tlsresume.integrations.requests import ResumingAdapter
from tlsresume.tools.bench.clientlibs import serving, write_ca

CLIENTS = ("stock", "context-only", "adapter")


class ContextOnly(HTTPAdapter):
    """The recipe before the adapter: a resuming context, but requests still hands
    urllib3 the CA bundle, which loads it into the context at every connection."""

    def __init__(self, ctx: Any) -> None:
        self._ctx = ctx
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._ctx
        super().init_poolmanager(*args, **kwargs)


def make_session(kind: str, cafile: str) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.verify = cafile
    if kind == "context-only":
        session.mount("https://", ContextOnly(tlsresume.client_context(cafile=cafile)))
    elif kind == "adapter":
        session.mount("https://", ResumingAdapter())
    return session


def round_of(session: requests.Session, url: str, n: int) -> tuple[float, float, float]:
    """(wall seconds, client CPU seconds, share resumed) for n new connections."""
    resumed = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        r = session.get(url, headers={"Connection": "close"}, timeout=10)
        resumed += r.headers.get("x-session-reused") == "yes"
    return time.perf_counter() - wall0, time.process_time() - cpu0, resumed / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--conns", type=int, default=200, help="new connections per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--json", help="write the raw figures here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cert, key, bundle = write_ca(Path(tmp))
        cafile = str(bundle)
        with serving("1.3", cert, key, Path(tmp)) as url:
            sessions = {kind: make_session(kind, cafile) for kind in CLIENTS}
            for session in sessions.values():
                round_of(session, url, args.warmup)
            runs: dict[str, list[tuple[float, float, float]]] = {k: [] for k in CLIENTS}
            for _ in range(args.rounds):
                for kind, session in sessions.items():
                    runs[kind].append(round_of(session, url, args.conns))
    base = statistics.median(w for w, _, _ in runs["stock"])
    print(
        f"requests, {args.conns} new connections x {args.rounds} rounds (interleaved, after "
        f"{args.warmup} warm-up), tlsresume serve --workers 2, {ssl.OPENSSL_VERSION}"
    )
    print(
        f"{'client':<14} {'wall s median':>13} {'[min-max]':>14} {'CPU/conn':>9} "
        f"{'resumed':>8} {'vs stock':>9}"
    )
    for kind in CLIENTS:
        walls = [w for w, _, _ in runs[kind]]
        cpu = statistics.median(c for _, c, _ in runs[kind]) / args.conns
        share = statistics.median(s for _, _, s in runs[kind])
        wall = statistics.median(walls)
        print(
            f"{kind:<14} {wall:>13.2f} {f'[{min(walls):.2f}-{max(walls):.2f}]':>14} "
            f"{cpu * 1000:>7.2f}ms {share:>8.0%} {wall / base:>8.2f}x"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main()
