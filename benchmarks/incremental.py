"""Item 3, the incremental day: the whole graph materialized for ONE new session (an
orchestrated run on a fresh SQLite instance, as the daily schedule does), with 1 year and
with 10 years of history behind it. The history is prepared with the plain functions
(benchmarks/datapath.py: lake, dedup, checks, warehouse, indicators), not by Dagster runs.
"""

from pathlib import Path

from benchmarks import datapath
from benchmarks.common import (
    REPEATS,
    START,
    child_env,
    new_home,
    remove_home,
    run_child,
    scaled,
    sessions_after,
    universe,
)

RUN_BUDGET_S = 120  # repeats of the one-session run while they fit: a median where runs are short


def history(years: int) -> int:
    return scaled(252 * years)


def timeline() -> tuple[list[str], str]:
    """The 10-year history's sessions (from START on, as item 1 uses) and the new session after."""
    sessions = sessions_after(START, history(10) + 1)
    return sessions[:-1], sessions[-1]


def run(ten_year_home: str | None = None) -> dict:
    """`ten_year_home`: item 1's home when it holds exactly this history (saves preparing it again)."""
    symbols = universe(scaled(500))
    sessions, new = timeline()
    out = {"symbols": len(symbols), "new_session": new, "repeats": REPEATS}
    for years in (1, 10):
        behind = sessions[-history(years):]
        reuse = years == 10 and ten_year_home and Path(ten_year_home).exists()
        home = Path(ten_year_home) if reuse else new_home(f"incr{years}y")
        try:
            prepare_s = None
            if not reuse:
                prepared = datapath.run(home, symbols, behind, stages=datapath.CORE, repeats=1)
                prepare_s = prepared["core_total_s"]
            args = {"mode": "ours", "first": new, "last": new, "runs": REPEATS, "budget_s": RUN_BUDGET_S}
            day = run_child("backfill", args, child_env(home, symbols))
        finally:
            if not reuse:
                remove_home(home)
        out[f"{years}y"] = day | {"history_sessions": len(behind), "history_bars": len(behind) * len(symbols), "prepare_s": prepare_s}
    out["ratio"] = out["10y"]["median_s"] / out["1y"]["median_s"]
    return out
