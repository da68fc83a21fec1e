"""Server cost of ticket handshakes: tlsresume's ring and static key vs OpenSSL's own.

Runs interleaved rounds of in-memory handshake pairs (see pairs.py) for every
configuration, protocol and mode, and reports the median server time per pair
and its ratio to OpenSSL's built-in ticket keys measured in the same run.

    python bench/ticket_cost.py [--pairs 300] [--rounds 15] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pairs import Certs, configurations, interleaved  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=300, help="pairs per round")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    certs = Certs()
    configs = configurations()
    results: dict[str, dict[str, float]] = {}
    started = time.time()
    for version in ("tls1.2", "tls1.3"):
        client = certs.client(version)
        servers = {name: certs.server(version, setup) for name, setup in configs.items()}
        for mode in ("full", "resumed"):
            rows = interleaved(
                servers,
                client,
                rounds=args.rounds,
                pairs=args.pairs,
                resume=mode == "resumed",
                baseline="openssl-builtin",
            )
            for name, row in rows.items():
                results[f"{version} {mode} {name}"] = row
    width = max(len(k) for k in results)
    print(f"{'configuration':<{width}}  server µs/pair  ratio  pairs/s  resumed%")
    for key, row in results.items():
        print(
            f"{key:<{width}}  {row['server_us_per_pair']:>14.2f}  {row['ratio']:>5.3f}"
            f"  {row['pairs_per_s']:>7}  {row['resumed_pct']:>8}"
        )
    print(f"({args.rounds} rounds x {args.pairs} pairs, {time.time() - started:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
