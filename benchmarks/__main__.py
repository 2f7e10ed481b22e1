"""`python -m benchmarks [item ...]` (`make bench`): the nine measurements, a table
on stdout, everything in benchmarks/results/latest.json.

    BENCH_SCALE=0.05 python -m benchmarks              # every size x 0.05: a quick check
    python -m benchmarks backfill incremental          # some items only
    BENCH_REPEATS=5                                    # repeats where a median is taken (3)

Item 8 (peers) runs when benchmarks/.peers-venv exists (`make bench-peers` creates it) and
prints a table of its own; without it, the item says how to get it.

No timing is asserted anywhere: misses are reported, not raised.
"""

import datetime as dt
import sys
import time
import traceback
from pathlib import Path

from benchmarks import backfill, bookkeeping, datapath, incremental, indicators, intraday, loader, overhead
from benchmarks.common import REPEATS, SCALE, new_home, remove_home, scaled, universe
from benchmarks.peers import run as peers
from benchmarks.report import peers_table, table, write_json

ITEMS = ("datapath", "backfill", "incremental", "overhead", "loader", "indicators", "intraday", "peers", "bookkeeping")


def run_datapath() -> dict:
    """500 symbols x 2,520 sessions from the first partition on; the home is kept for item 3."""
    sessions, _ = incremental.timeline()
    home = new_home("datapath")
    try:
        return datapath.run(home, universe(scaled(500)), sessions)
    except BaseException:
        remove_home(home)
        raise


def main(argv: list[str]) -> int:
    chosen = argv or list(ITEMS)
    unknown = set(chosen) - set(ITEMS)
    if unknown:
        print(f"unknown items {sorted(unknown)}; choose from {', '.join(ITEMS)}", file=sys.stderr)
        return 2
    started, clock = dt.datetime.now(dt.UTC), time.perf_counter()
    runners = {
        "datapath": run_datapath,
        "backfill": backfill.run,
        "overhead": overhead.run,
        "loader": loader.run,
        "indicators": indicators.run,
        "intraday": intraday.run,
        "bookkeeping": bookkeeping.run,
        "peers": lambda: peers.run(results.get("backfill")),  # item 2's figures quoted when this run has them
    }
    results: dict = {}
    print(f"benchmarks: BENCH_SCALE={SCALE} repeats={REPEATS} items={','.join(chosen)}", file=sys.stderr)
    for item in [i for i in ITEMS if i in chosen]:
        t = time.perf_counter()
        print(f"  {item} ...", end="", flush=True, file=sys.stderr)
        try:
            if item == "incremental":
                results[item] = incremental.run(results.get("datapath", {}).get("home"))
            else:
                results[item] = runners[item]()
        except Exception as err:  # noqa: BLE001 - one item failing must not lose the others
            results[item] = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
        print(f" {time.perf_counter() - t:.0f} s", file=sys.stderr)
        done_with_history = item == "incremental" or (item == "datapath" and "incremental" not in chosen)
        if done_with_history and (home := results.get("datapath", {}).get("home")):
            remove_home(Path(home))  # item 1's lake and warehouse, item 3's 10-year history
    path = write_json(results, started, time.perf_counter() - clock)
    print(table(results))
    if "runs" in results.get("peers", {}):
        print("\n" + peers_table(results["peers"]))
    scale_note = "" if SCALE == 1 else f"; BENCH_SCALE={SCALE}: the goals are for full size"
    print(f"\n{path} written, {time.perf_counter() - clock:.0f} s{scale_note}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
