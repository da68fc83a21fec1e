"""How long a handshake waits for Redis on a local session miss: p50, p99 and max
of the session tier's lookups, with Redis healthy, slow, and stopped.

Each handshake offers a session that the server's own store does not hold, so the
store asks its Redis tier (``SessionTier``, default bound 5 ms) and then completes
a full handshake. What is timed is the tier's ``get`` as the handshake calls it.

* **healthy**: a real ``redis-server`` on loopback (the session is not there: a
  miss, answered at once);
* **slow**: the same Redis behind a loopback proxy that holds every reply for
  50 ms (ten times the bound);
* **stopped**: Redis under SIGSTOP (the kernel accepts, nothing ever answers);
* **cluster** and **cluster, its master stopped**: a Redis Cluster of three
  masters, healthy, then with the master that holds the session's slot under
  SIGSTOP (the lookup that meets it also waits for the cluster client's slot-map
  refresh from the other masters).

Run: ``python bench/redis_wait.py`` (``--handshakes``, ``--json``). Needs
``redis-server`` and redis-py. Nothing is asserted (tests/test_redis.py holds the
bound loosely).
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import ssl
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import trustme

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tlsresume  # noqa: E402
from tests.handshake import memory_pair  # noqa: E402
from tests.redisutil import ClusterGroup, RedisServer  # noqa: E402
from tlsresume.redis import SessionTier  # noqa: E402

BOUND = 0.005
DELAY = 0.050


class TimedTier(SessionTier):
    """The tier as shipped, with each lookup's duration kept."""

    waits: list[float]

    def get(self, session_id: bytes) -> bytes | None:
        t0 = time.perf_counter()
        try:
            return super().get(session_id)
        finally:
            self.waits.append(time.perf_counter() - t0)


class SlowProxy:
    """A loopback TCP proxy that holds every chunk from the server for ``delay`` s."""

    def __init__(self, port: int, delay: float) -> None:
        self.target, self.delay = port, delay
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        with client, server:
            while True:
                ready, _, _ = select.select([client, server], [], [])
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is server:
                        time.sleep(self.delay)
                        client.sendall(data)
                    else:
                        server.sendall(data)

    def close(self) -> None:
        self.listener.close()


def measure(url: str, handshakes: int, pause: Any = None) -> list[float]:
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost")
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(client)
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    client.options |= ssl.OP_NO_TICKET

    def server_ctx(store: tlsresume.SessionStore) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        leaf.configure_cert(ctx)
        ctx.options |= ssl.OP_NO_TICKET
        tlsresume.install(ctx, session_cache=store)
        return ctx

    with tlsresume.SessionStore("1M") as origin, tlsresume.SessionStore("1M") as store:
        session, _ = memory_pair(server_ctx(origin), client)
        tier = TimedTier(url, name="bench", timeout=BOUND, insecure_unsealed=True)
        tier.waits = []
        store.set_remote(tier)
        try:
            deadline = time.monotonic() + 3
            while tier.stats()["connections"] == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            if pause is not None:
                pause(tier.prefix + session.id.hex())
            ctx = server_ctx(store)
            for _ in range(handshakes):
                memory_pair(ctx, client, session)
        finally:
            store.set_remote(None)
            tier.stop(flush=0)
        return tier.waits


def summary(waits: list[float]) -> dict[str, float]:
    ms = sorted(w * 1000 for w in waits)
    return {
        "lookups": len(ms),
        "p50_ms": round(statistics.median(ms), 3),
        "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 3),
        "max_ms": round(ms[-1], 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--handshakes", type=int, default=300)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    out: dict[str, dict[str, float]] = {}
    with RedisServer() as redis_server:
        out["healthy"] = summary(measure(redis_server.url, args.handshakes))
        proxy = SlowProxy(redis_server.port, DELAY)
        try:
            out["slow"] = summary(measure(f"redis://127.0.0.1:{proxy.port}/0", args.handshakes))
        finally:
            proxy.close()
        try:
            out["stopped"] = summary(
                measure(redis_server.url, args.handshakes, lambda _key: redis_server.pause())
            )
        finally:
            redis_server.resume()
    with ClusterGroup() as cluster:
        out["cluster"] = summary(measure(cluster.url, args.handshakes))
        stopped: list[RedisServer] = []

        def stop_slot_master(key: str) -> None:
            client = cluster.client()
            port = client.get_node_from_key(key).port
            client.close()
            stopped.extend(n for n in cluster.nodes if n.port == port)
            stopped[0].pause()

        try:
            out["cluster, its master stopped"] = summary(
                measure(cluster.url, args.handshakes, stop_slot_master)
            )
        finally:
            for node in stopped:
                node.resume()
    print(
        f"session tier lookups on a local miss, bound {BOUND * 1000:g} ms, "
        f"{args.handshakes} handshakes"
    )
    print(f"{'Redis':<28} {'lookups':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for state, s in out.items():
        print(
            f"{state:<28} {s['lookups']:>8} {s['p50_ms']:>8.3f} {s['p99_ms']:>8.3f} "
            f"{s['max_ms']:>8.3f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
