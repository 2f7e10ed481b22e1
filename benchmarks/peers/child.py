"""What every peer script shares (standard library only: it runs in the peers' environment and
in ours): the two phases a peer script is run for, and how the two queries are timed.

    python -m benchmarks.peers.<peer> '{"phase": "ingest", "input": ..., "store": ..., ...}'
    python -m benchmarks.peers.<peer> '{"phase": "query", "store": ..., "symbol": ..., "session": ..., ...}'

Each phase is a fresh process, run by benchmarks/peers/run.py, which measures its wall time and
peak RSS from outside; the script prints one line `BENCH_RESULT {...}`: `startup_s` from the
spawn to this module running, `import_s` for the tool's imports, `work_s` for the phase after
them (the rest of the wall time is the process's exit).

Queries: the store is opened (timed apart), then "one symbol, 10 years" and "all symbols, one
session" run once each (`first_s`: the first call in a fresh process, after opening), then
`repeats` more times each (`median_s`). Each returns the open/high/low/close/volume of its bars;
the rows and the sum of `close` are reported, so the stores can be checked against each other.
"""

import json
import statistics
import sys
import time
from collections.abc import Callable

MARK = "BENCH_RESULT "


def time_queries(open_store: Callable[[], object], one_symbol: Callable[[object], tuple[int, float]],
                 one_session: Callable[[object], tuple[int, float]], repeats: int) -> dict:
    started = time.perf_counter()
    handle = open_store()
    out: dict = {"open_s": time.perf_counter() - started}
    queries = {"symbol": one_symbol, "session": one_session}
    for name, query in queries.items():
        started = time.perf_counter()
        rows, close_sum = query(handle)
        out[name] = {"first_s": time.perf_counter() - started, "rows": int(rows), "close_sum": float(close_sum), "seconds": []}
    for _ in range(max(1, repeats)):
        for name, query in queries.items():
            started = time.perf_counter()
            query(handle)
            out[name]["seconds"].append(time.perf_counter() - started)
    for name in queries:
        out[name]["median_s"] = statistics.median(out[name]["seconds"])
    return out


def main(ingest: Callable[..., dict], query: Callable[..., dict], imports: Callable[[], None] = lambda: None) -> None:
    """Entry point of a peer script: the phase and its arguments from argv[1] as JSON. `imports`
    imports what the phase needs (timed as `import_s`); `work_s` is the phase's time after it."""
    args = json.loads(sys.argv[1])
    phase, spawned_at = args.pop("phase"), args.pop("spawned_at", None)
    startup_s = time.time() - spawned_at if spawned_at else None  # the interpreter's own start, before any import here
    started = time.perf_counter()
    imports()
    import_s = time.perf_counter() - started
    started = time.perf_counter()
    result = (ingest if phase == "ingest" else query)(**args)
    result |= {"startup_s": startup_s, "import_s": import_s, "work_s": time.perf_counter() - started}
    print(MARK + json.dumps(result), flush=True)
