"""Item 9, the orchestrator's bookkeeping: `make backfill` of 10 years x 100 symbols on the default
embedded instance as a user runs it (the CLI, a process of its own, a fresh STOCK_ASSETS_HOME and
DAGSTER_HOME with the project's dagster.yaml), and how planning a run (creating it: its planned
events) grows with the sessions in it and with the years since STOCK_ASSETS_START.

- backfill: wall; when the first line came and, after the first step ended, whether every step
  line was followed by the time left; peak RSS (the kernel's, wait4); DAGSTER_HOME's size after.
- planning: a run's creation alone on a fresh instance, median of BENCH_REPEATS, for N sessions
  and 10 N from a 2015 start, and 10 N from a 1995 start.
"""

import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import (
    REPEATS,
    ROOT,
    START,
    child_env,
    child_main,
    new_home,
    remove_home,
    run_child,
    scaled,
    sessions_after,
    universe,
)
from benchmarks.report import ROWS, row, seconds

EARLY_START = "1995-01-03"
STEP_ENDED = re.compile(r"  \S+\s+(done|FAILED).*, \d+\.\d s")  # stock_assets/progress.py's line for a step that ended


def du_mib(folder: Path) -> float:
    return sum(p.stat().st_blocks * 512 for p in folder.rglob("*") if p.is_file()) / 2**20


def backfill(symbols: list[str], first: str, last: str) -> dict:
    """The CLI's backfill, each line of its output with the seconds since it started."""
    home = new_home("bookkeeping")
    try:
        env = child_env(home, symbols, PYTHONUNBUFFERED="1")
        command = [sys.executable, "-m", "stock_assets.cli", "backfill", "--start", first, "--end", last]
        started = time.perf_counter()
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = [(time.perf_counter() - started, line.rstrip("\n")) for line in proc.stdout]
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        return {"wall_s": wall, "exit": os.waitstatus_to_exitcode(status), "peak_rss_mib": usage.ru_maxrss / 1024,
                "lines": lines, "dagster_home_mib": du_mib(home / "dagster")} | progress(lines)  # fmt: skip
    finally:
        remove_home(home)


def progress(lines: list[tuple[float, str]]) -> dict:
    """When the first line came, and how many of the step lines that say a step ended were followed by the time left."""
    ended = [i for i, (_, text) in enumerate(lines) if STEP_ENDED.fullmatch(text)]
    with_left = [i for i in ended if i + 1 < len(lines) and lines[i + 1][1].lstrip().startswith("time left")]
    return {"first_line_s": lines[0][0] if lines else None, "steps_ended": len(ended), "with_time_left": len(with_left)}


def plan(start: str, first: str, last: str) -> dict:
    """Child: the run's creation alone (as stock_assets.cli.materialize_range creates it), on fresh instances."""
    import tempfile
    import warnings

    warnings.filterwarnings("ignore")
    from stock_assets.cli import location_origin
    from stock_assets.definitions import build_defs
    from stock_assets.defs.common import RANGE_TAGS
    from stock_assets.instance import prepare_instance
    from stock_assets.settings import Settings

    defs = build_defs(Settings.from_env())  # STOCK_ASSETS_START=start (planning)
    job = defs.resolve_implicit_global_asset_job_def()
    every = frozenset(defs.resolve_asset_graph().get_all_asset_keys())
    subset = job.get_subset(asset_selection=every)
    took, events = [], 0
    for _ in range(max(1, REPEATS)):
        with tempfile.TemporaryDirectory(dir=os.environ["STOCK_ASSETS_HOME"]) as home:
            (Path(home) / "dagster.yaml").write_bytes((ROOT / "dagster.yaml").read_bytes())
            instance = prepare_instance(home)
            clock = time.perf_counter()
            run = instance.create_run_for_job(job_def=subset, asset_selection=every, tags=dict(zip(RANGE_TAGS, (first, last))),
                                              remote_job_origin=location_origin(job.name))  # fmt: skip
            took.append(time.perf_counter() - clock)
            events = len(instance.all_logs(run.run_id))
            instance.dispose()
    return {"start": start, "first": first, "last": last, "seconds": took, "median_s": statistics.median(took), "events": events}


def planning(start: str, sessions: list[str]) -> dict:
    home = new_home("planning")
    try:
        env = child_env(home, universe(2), STOCK_ASSETS_START=start)
        return run_child("bookkeeping", {"start": start, "first": sessions[0], "last": sessions[-1]}, env) | {"sessions": len(sessions)}
    finally:
        remove_home(home)


def run() -> dict:
    symbols = universe(scaled(100))
    sessions = sessions_after(START, scaled(2520, minimum=20))
    tenth = sessions[: max(2, len(sessions) // 10)]
    out = {"symbols": len(symbols), "sessions": len(sessions), "first": sessions[0], "last": sessions[-1]}
    out["backfill"] = backfill(symbols, sessions[0], sessions[-1])
    out["plan_n"] = planning(START, tenth)
    out["plan_10n"] = planning(START, sessions)
    out["plan_10n_early_start"] = planning(EARLY_START, sessions)
    out["growth_per_session"] = (out["plan_10n"]["median_s"] / out["plan_n"]["median_s"]) / (len(sessions) / len(tenth))
    out["growth_with_years"] = out["plan_10n_early_start"]["median_s"] / out["plan_10n"]["median_s"]
    return out


def rows(r: dict) -> list[tuple]:
    b, sessions = r["backfill"], r["sessions"]
    ok = b["exit"] == 0
    said = f"{b['with_time_left']} of {b['steps_ended']}"
    years = (int(r["first"][:4]) - int(EARLY_START[:4]), int(r["first"][:4]) - int(START[:4]))
    return [
        row("9", f"make backfill, {r['symbols']} sym x {sessions} sessions ({r['first']}..{r['last']}), embedded instance", "" if ok else f"EXIT {b['exit']}"),
        row("9", "  wall / peak RSS", f"{seconds(b['wall_s'])} / {b['peak_rss_mib']:,.0f} MiB", "<= 90 s", ok and b["wall_s"] <= 90),
        row("9", "  first line", seconds(b["first_line_s"] or 0), "<= 5 s", b["first_line_s"] is not None and b["first_line_s"] <= 5),
        row("9", "  'step done' lines followed by the time left", said, "all", b["steps_ended"] > 0 and b["with_time_left"] == b["steps_ended"]),
        row("9", "  DAGSTER_HOME after (it starts empty)", f"{b['dagster_home_mib']:,.0f} MiB", "<= 100 MB", b["dagster_home_mib"] * 2**20 <= 100e6),
        row("9", f"  planning {r['plan_n']['sessions']} / {sessions} sessions (start {START})",
            f"{seconds(r['plan_n']['median_s'])} / {seconds(r['plan_10n']['median_s'])} ({r['plan_n']['events']:,} / {r['plan_10n']['events']:,} events)"),
        row("9", "  planning time per session, 10x the sessions / 1x", f"{r['growth_per_session']:.2f} x", "<= 1.2 x", r["growth_per_session"] <= 1.2),
        row("9", f"  planning {sessions} sessions, {years[0]} / {years[1]} years after the start",
            f"{seconds(r['plan_10n_early_start']['median_s'])} / {seconds(r['plan_10n']['median_s'])}: {r['growth_with_years']:.2f} x", "<= 1.2 x", r["growth_with_years"] <= 1.2),
    ]  # fmt: skip


ROWS["bookkeeping"] = rows

if __name__ == "__main__":
    child_main(plan)
