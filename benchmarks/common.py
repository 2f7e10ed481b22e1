"""What every benchmark shares: sizes (BENCH_SCALE), the universe and sessions, medians, peak
RSS, and measurements run in a child process with a home of their own.

A child is `python -m benchmarks.<module> '<json kwargs>'`; it prints one line
`BENCH_RESULT {...}` that the parent reads. Children give each measurement a fresh
interpreter (per-stage peak RSS, environment read at import) and keep the parent small.
"""

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MARK = "BENCH_RESULT "
SCALE = float(os.environ.get("BENCH_SCALE", "1.0"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
BUDGET_S = float(os.environ.get("BENCH_BUDGET_S", "20"))  # no further repeat once it would pass this
START = "2015-01-02"  # the project's default first partition
PG_URL = os.environ.get("STOCK_ASSETS_TEST_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
KEEP_ENV = ("STOCK_ASSETS_TEST_POSTGRES_URL", "STOCK_ASSETS_BENCH_POSTGRES_URL")


class BenchError(RuntimeError):
    pass


def scaled(n: int, minimum: int = 1) -> int:
    return max(minimum, round(n * SCALE))


def universe(n: int) -> list[str]:
    return [f"SYM{i:04d}" for i in range(n)]


def sessions_after(first: str, count: int) -> list[str]:
    """`count` NYSE sessions from `first` on, as YYYY-MM-DD."""
    import exchange_calendars as xcals

    sessions = xcals.get_calendar("XNYS", start=START).sessions
    picked = sessions[sessions >= first][:count]
    if len(picked) < count:
        raise BenchError(f"only {len(picked)} sessions from {first}")
    return [d.strftime("%Y-%m-%d") for d in picked]


def median(values: list[float]) -> float:
    return statistics.median(values)


def repeat(fn: Callable[[], object], repeats: int = REPEATS, budget_s: float = BUDGET_S) -> tuple[list[float], object]:
    """Wall seconds of each call, and the last call's result: `repeats` calls, fewer when one
    more would take the total past `budget_s` (a median where it is cheap, one call where not)."""
    seconds, result = [], None
    while len(seconds) < max(1, repeats):
        started = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - started)
        if sum(seconds) + seconds[-1] > budget_s:
            break
    return seconds, result


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def new_home(tag: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"bench-{tag}-"))


def remove_home(home: Path) -> None:
    shutil.rmtree(home, ignore_errors=True)


def child_env(home: Path, symbols: list[str], instance: dict | None = None, **extra: str) -> dict:
    """Environment of a child: a clean STOCK_ASSETS_HOME and DAGSTER_HOME (the project's
    dagster.yaml, updated with `instance`), the bench universe, nothing else inherited."""
    import yaml

    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True, exist_ok=True)
    config = (yaml.safe_load((ROOT / "dagster.yaml").read_text()) or {}) | (instance or {})
    (dagster_home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STOCK_ASSETS_", "DAGSTER_")) or k in KEEP_ENV}
    return env | {
        "STOCK_ASSETS_HOME": str(home),
        "DAGSTER_HOME": str(dagster_home),
        "STOCK_ASSETS_SYMBOLS": ",".join(symbols),
        "STOCK_ASSETS_START": START,
        "PYTHONHASHSEED": "0",
    } | extra


def run_child(module: str, args: dict, env: dict | None = None, timeout: float = 1800) -> dict:
    command = [sys.executable, "-m", f"benchmarks.{module}", json.dumps(args)]
    proc = subprocess.run(command, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    raise BenchError(f"benchmarks.{module} {args} exited {proc.returncode}:\n{proc.stderr[-4000:]}")


def child_main(fn: Callable[..., dict]) -> None:
    """Entry point of a child: kwargs from argv[1] as JSON, result printed as one line."""
    result = fn(**json.loads(sys.argv[1]))
    print(MARK + json.dumps(result), flush=True)
