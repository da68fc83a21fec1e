"""New TLS connections per second against ``uvicorn --workers 2``: stock uvicorn,
stock with TCP_NODELAY set (the same wrapper tlsresume uses, no resumption),
tlsresume with TCP_NODELAY left as uvicorn has it, and tlsresume as shipped.

Each server listens on a socket this script makes and hands down with ``--fd``
(the way socket activation and supervisors run uvicorn, and the way the tests run
it). A client reconnects sequentially, offering the session the previous
connection ended with, sends ``GET /`` and reads the whole answer; rounds are
interleaved (every server once per round, after a warm-up), and the table gives
the median connections per second over rounds with the range, plus the share of
resumed handshakes and the ratio to stock uvicorn.

Run: ``python bench/uvicorn_conns.py`` (``--conns``, ``--rounds``, ``--version``,
``--json``); ``--loadgen SECONDS`` measures with tlsresume's C load generator
(``tlsresume bench --target``) instead of the sequential Python client. Needs
uvicorn >= 0.47. Figures are ratios within one run; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trustme

VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
APP = (
    "async def app(scope, receive, send):\n"
    "    if scope['type'] != 'http':\n"
    "        return\n"
    "    await send({'type': 'http.response.start', 'status': 200,\n"
    "                'headers': [(b'content-length', b'2')]})\n"
    "    await send({'type': 'http.response.body', 'body': b'ok'})\n"
)
LAUNCH = (
    "import sys, uvicorn\n"
    "from tlsresume.integrations._shared import nodelay_protocol\n"
    "from tlsresume.integrations.uvicorn import Resumption\n"
    "\n"
    "def stock_nodelay(config, default_factory):  # uvicorn's context, TCP_NODELAY on\n"
    "    config.http_protocol_class = nodelay_protocol(config.http_protocol_class)\n"
    "    return default_factory()\n"
    "\n"
    "if __name__ == '__main__':  # the spawned workers import this file too\n"
    "    mode, fd, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]\n"
    "    factory = {'stock': None, 'stock-nodelay': stock_nodelay}.get(\n"
    "        mode, Resumption(nodelay=(mode == 'tlsresume')))\n"
    "    uvicorn.run('benchapp:app', fd=fd, workers=2, log_level='warning',\n"
    "                ssl_certfile=cert, ssl_keyfile=key, ssl_context_factory=factory,\n"
    "                timeout_graceful_shutdown=1)\n"
)
SERVERS = ("stock", "stock-nodelay", "tlsresume-no-nodelay", "tlsresume")


class Server:
    """One uvicorn master and its 2 workers, on a listening socket made here."""

    def __init__(self, mode: str, folder: Path, cert: str, key: str) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(512)
        self.port = self.listener.getsockname()[1]
        fd = self.listener.fileno()
        self.proc = subprocess.Popen(
            [sys.executable, str(folder / "launch.py"), mode, str(fd), cert, key],
            cwd=folder,
            pass_fds=(fd,),
            start_new_session=True,
        )

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.listener.close()


def connect(port: int, ctx: ssl.SSLContext, session: ssl.SSLSession | None) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    tls = ctx.wrap_socket(raw, server_hostname="localhost", session=session)
    tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    while tls.recv(65536):
        pass
    return tls


def round_of(port: int, ctx: ssl.SSLContext, conns: int) -> tuple[float, float]:
    """(connections per second, share resumed) for ``conns`` reconnections."""
    session = connect(port, ctx, None).session
    resumed = 0
    start = time.perf_counter()
    for _ in range(conns):
        tls = connect(port, ctx, session)
        resumed += tls.session_reused
        session = tls.session
        tls.close()
    return conns / (time.perf_counter() - start), resumed / conns


def loadgen_round(port: int, version: str, seconds: float) -> tuple[float, float]:
    """(connections per second, share resumed) from tlsresume's C load generator
    (``tlsresume bench --target``: 2 client processes, 16 sessions each, offered at
    random, so a server whose workers do not share resumes about half)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        subprocess.run(
            [sys.executable, "-m", "tlsresume.tools.bench", "--target", f"127.0.0.1:{port}"]
            + ["--tls", version, "--modes", "resumed", "--duration", str(seconds)]
            + ["--rounds", "1", "--json", str(out), "-q"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        (result,) = json.loads(out.read_text())["results"]
    return float(result["conn_per_s"]), float(result["resumed_pct"]) / 100


def wait_ready(port: int, ctx: ssl.SSLContext, deadline: float) -> None:
    while True:
        try:
            connect(port, ctx, None).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--conns", type=int, default=200, help="reconnections per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=50, help="reconnections before round 1")
    ap.add_argument("--version", choices=VERSIONS, default="1.3")
    ap.add_argument("--json", help="write the raw figures here")
    ap.add_argument(
        "--loadgen",
        type=float,
        metavar="SECONDS",
        help="measure with tlsresume's C load generator for SECONDS per round instead "
        "of the sequential Python client",
    )
    args = ap.parse_args()

    ca = trustme.CA(key_type=trustme.KeyType.ECDSA)
    leaf = ca.issue_cert("localhost", key_type=trustme.KeyType.ECDSA)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(ctx)
    ctx.minimum_version = ctx.maximum_version = VERSIONS[args.version]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "benchapp.py").write_text(APP)
        (folder / "launch.py").write_text(LAUNCH)
        cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
        leaf.cert_chain_pems[0].write_to_path(cert)
        leaf.private_key_pem.write_to_path(key)
        servers = {name: Server(name, folder, cert, key) for name in SERVERS}
        try:
            for server in servers.values():
                wait_ready(server.port, ctx, time.monotonic() + 30)
            rates: dict[str, list[float]] = {name: [] for name in SERVERS}
            reuse: dict[str, list[float]] = {name: [] for name in SERVERS}
            for server in servers.values():  # warm-up, not recorded
                round_of(server.port, ctx, args.warmup)
            for _ in range(args.rounds):
                for name, server in servers.items():
                    rate, share = (
                        loadgen_round(server.port, args.version, args.loadgen)
                        if args.loadgen
                        else round_of(server.port, ctx, args.conns)
                    )
                    rates[name].append(rate)
                    reuse[name].append(share)
        finally:
            for server in servers.values():
                server.stop()

    base = statistics.median(rates["stock"])
    client = (
        f"C load generator {args.loadgen:g} s"
        if args.loadgen
        else f"Python client, {args.conns} reconnections"
    )
    print(
        f"uvicorn --workers 2 --fd, TLS {args.version}, {client} x {args.rounds} rounds "
        f"(interleaved, after {args.warmup} warm-up reconnections)"
    )
    print(f"{'server':<22} {'conn/s median':>14} {'[min-max]':>18} {'resumed':>8} {'vs stock':>9}")
    for name in SERVERS:
        r = rates[name]
        print(
            f"{name:<22} {statistics.median(r):>14,.0f} "
            f"{f'[{min(r):,.0f}-{max(r):,.0f}]':>18} {statistics.median(reuse[name]):>8.0%} "
            f"{statistics.median(r) / base:>8.1f}x"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"rates": rates, "resumed": reuse}, indent=2))


if __name__ == "__main__":
    main()
