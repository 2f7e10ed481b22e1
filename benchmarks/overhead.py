"""Item 4, run overhead: one session of the whole graph from the CLI a user types
(`dagster asset materialize -m stock_assets.definitions --select '*' --partition <session>`,
a fresh STOCK_ASSETS_HOME and DAGSTER_HOME each time) against the same work as plain
functions (benchmarks/datapath.py, every stage including publish and dashboard, plus the
synthetic fetch that raw_prices does inside the run).

The CLI wall time is split into what the instance records as the run (start to end) and the
rest (interpreter, imports, loading the code location); the import alone is timed too.
"""

import subprocess
import sys
import time
from pathlib import Path

from benchmarks import datapath
from benchmarks.common import (
    REPEATS,
    ROOT,
    BenchError,
    child_env,
    child_main,
    median,
    new_home,
    remove_home,
    run_child,
    scaled,
    sessions_after,
    universe,
)

DAGSTER = Path(sys.executable).with_name("dagster")
SESSION_FROM = "2025-06-02"
CLI_BUDGET_S = 60  # repeats of the CLI run while they fit


def child() -> dict:
    """The only run on DAGSTER_HOME's instance: its duration and event count."""
    import dagster as dg

    from benchmarks.backfill import step_seconds

    with dg.DagsterInstance.get() as instance:
        (record,) = instance.get_run_records()
        records = instance.all_logs(record.dagster_run.run_id)
        steps, phases = step_seconds(records)
        return {"run_s": record.end_time - record.start_time, "events": len(records), "status": record.dagster_run.status.value,
                "steps": steps, "phases": phases}


def timed(command: list[str], env: dict) -> float:
    started = time.perf_counter()
    proc = subprocess.run(command, check=False, cwd=ROOT, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode:
        raise BenchError(f"{' '.join(command[:4])} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return elapsed


def run() -> dict:
    symbols = universe(scaled(500))
    session = sessions_after(SESSION_FROM, 1)[0]
    command = [str(DAGSTER), "asset", "materialize", "-m", "stock_assets.definitions", "--select", "*", "--partition", session]
    cli, runs = [], []
    while len(cli) < REPEATS and (not cli or sum(cli) + cli[-1] <= CLI_BUDGET_S):
        home = new_home("cli")
        try:
            env = child_env(home, symbols)
            cli.append(timed(command, env))
            runs.append(run_child("overhead", {}, env))
        finally:
            remove_home(home)
    home = new_home("import")
    try:
        env = child_env(home, symbols)
        imports = [timed([sys.executable, "-c", "import stock_assets.definitions"], env) for _ in range(REPEATS)]
        plain = datapath.run(home, symbols, [session], repeats=REPEATS)
    finally:
        remove_home(home)
    # raw_prices fetches inside the run; the plain path times the synthetic fetch apart (generate_s)
    cli_s, run_s, plain_s = median(cli), median([r["run_s"] for r in runs]), plain["all_total_s"] + plain["generate_s"]
    return {
        "symbols": len(symbols), "session": session, "cli_seconds": cli, "cli_s": cli_s, "run_s": run_s,
        "outside_run_s": cli_s - run_s, "import_s": median(imports), "events": runs[0]["events"],
        "statuses": sorted({r["status"] for r in runs}), "run_steps": runs[-1]["steps"], "run_phases": runs[-1]["phases"],
        "plain_s": plain_s, "plain_fetch_s": plain["generate_s"], "plain_stages": plain["stages"],
        "overhead_s": cli_s - plain_s,
    }


if __name__ == "__main__":
    child_main(child)
