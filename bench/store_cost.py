"""Shared session store: get/put latency, and the server cost of resuming by ID.

1. get and put medians, timed one by one in C for ordinary-size sessions;
2. in-memory handshake pairs resumed by session ID: tlsresume's shared store vs
   OpenSSL's internal per-process cache, interleaved rounds, same run; reports the
   median server time per pair and the ratio.

    python bench/store_cost.py [--pairs 300] [--rounds 15] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pairs import Certs, id_client, id_configurations, interleaved  # noqa: E402

import tlsresume  # noqa: E402
from tlsresume._extra import bench, foreign, store_functions  # noqa: E402

ffi, lib = bench()
put_fn, get_fn = store_functions(ffi)


def store_latency(entries: int = 20000, der_len: int = 150, repeats: int = 5) -> dict[str, float]:
    puts, gets = [], []
    for _ in range(repeats):
        with tlsresume.SessionStore("16M") as store:
            put_ns, get_ns = ffi.new("int64_t *"), ffi.new("int64_t *")
            if (
                lib.tlsr_bench_store(
                    foreign(ffi, "tlsr_store *", store._handle()),
                    put_fn,
                    get_fn,
                    entries,
                    der_len,
                    put_ns,
                    get_ns,
                )
                != 1
            ):
                raise RuntimeError("store benchmark lost entries")
            puts.append(put_ns[0])
            gets.append(get_ns[0])
    return {
        "put_median_ns": statistics.median(puts),
        "get_median_ns": statistics.median(gets),
        "entries": entries,
        "der_bytes": der_len,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    started = time.time()
    results: dict[str, object] = {"store": store_latency()}
    print(
        f"store put median {results['store']['put_median_ns']:.0f} ns, "  # type: ignore[index]
        f"get median {results['store']['get_median_ns']:.0f} ns"
    )  # type: ignore[index]
    certs = Certs()
    configs = id_configurations()
    for version in ("tls1.2", "tls1.3"):
        client = id_client(certs, version)
        servers = {name: certs.server(version, setup) for name, setup in configs.items()}
        rows = interleaved(
            servers,
            client,
            rounds=args.rounds,
            pairs=args.pairs,
            resume=True,
            baseline="openssl-cache",
        )
        for name, row in rows.items():
            results[f"{version} resumed-by-id {name}"] = row
            print(
                f"{version} resumed-by-id {name:<16} {row['server_us_per_pair']:>8.2f} µs/pair "
                f"ratio {row['ratio']:.3f} resumed {row['resumed_pct']}%"
            )
    print(f"({args.rounds} rounds x {args.pairs} pairs, {time.time() - started:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
