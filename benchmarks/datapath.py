"""Item 1, the data path without the orchestrator: every stage of the graph as its plain
functions, in order, in one child process, as an in-process run executes them. Each stage
gets its inputs the way the run's IO managers give them: raw read back from the lake; landing
and the Parquet windows handed on in memory after being written, within the same bound
(stock_assets/lake/handoff.py); the warehouse queried. Generating the synthetic bars is
timed apart from the stages. The whole chain is repeated (a median per stage) while it fits
the budget; peak RSS is the process's, after each stage.

Also used to prepare history for the incremental day (item 3) and as the plain-function
side of the run overhead (item 4).
"""

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import REPEATS, child_env, child_main, median, peak_rss_mib, rss_mib, run_child

CORE = ("raw", "landing", "lake", "dedup", "checks", "warehouse", "indicators")  # the data path's stages
EXTRAS = ("publish", "dashboard")  # the graph's other two assets
CHAIN_BUDGET_S = 90  # no further repeat of the chain once it would pass this


@dataclass
class Ctx:
    storage: object
    warehouse: object
    sessions: list[dt.date]
    symbols: list[str]
    jump_threshold: float
    home: Path
    payloads: list = field(default_factory=list)
    handoff: object = None  # the run's lake IO manager's (stock_assets.lake.io_manager.Handoff)

    @property
    def window(self) -> tuple[dt.date, dt.date]:
        return self.sessions[0], self.sessions[-1]

    def store(self, prefix: str, table) -> None:
        """What the run's lake IO manager does with an output: written, and handed on."""
        from stock_assets.lake.handoff import store_window

        store_window(self.handoff, self.storage, prefix, table, self.sessions)

    def load(self, prefix: str):
        """What the run's lake IO manager loads: the window handed on, or else read from the lake."""
        from stock_assets.lake.handoff import load_window

        return load_window(self.handoff, self.storage, prefix, self.sessions)


def stage_raw(ctx: Ctx) -> int:
    from benchmarks.adapters import layout

    layout.write_raw(ctx.storage, ctx.payloads, *ctx.window)
    ctx.payloads = []  # the run lets go of raw_prices' output once it is stored
    return len(ctx.sessions) * len(ctx.symbols)  # bars held by the payloads


def stage_landing(ctx: Ctx) -> int:
    from benchmarks.adapters import layout, parse_payloads
    from stock_assets.transforms.accounting import sort_window_bars

    bars = sort_window_bars(parse_payloads(layout.read_raw(ctx.storage, *ctx.window, exact=True)), ctx.sessions).landed
    ctx.store("landing", bars)
    return bars.num_rows


def stage_lake(ctx: Ctx) -> int:
    bars = ctx.load("landing")
    ctx.store("lake/prices", bars)
    return bars.num_rows


def stage_dedup(ctx: Ctx) -> int:
    from stock_assets.transforms.dedup import dedupe_latest

    lake = ctx.load("lake/prices")
    ctx.store("lake/deduped", dedupe_latest(lake))
    return lake.num_rows


def stage_checks(ctx: Ctx) -> int:
    import pyarrow as pa

    from benchmarks.adapters import evaluate_window, layout
    from stock_assets.calendar import session_offset
    from stock_assets.schema import constant

    lake, deduped = ctx.load("lake/prices"), ctx.load("lake/deduped")
    before = session_offset(ctx.sessions[0], -1)
    previous = layout.read_sessions(ctx.storage, "lake/deduped", [before] if before < ctx.sessions[0] else [])
    report = evaluate_window(ctx.storage, lake, deduped, previous, ctx.sessions, ctx.symbols, ctx.jump_threshold)
    n, schema = report.num_rows, report.schema
    report = report.set_column(schema.get_field_index("run_id"), "run_id", constant("bench", pa.string(), n))
    at = schema.field("checked_at").type
    report = report.set_column(schema.get_field_index("checked_at"), "checked_at", constant(dt.datetime.now(dt.UTC), at, n))
    layout.write_sessions(ctx.storage, "lake/dq_report", report, ctx.sessions)
    ctx.warehouse.replace_window("dq_report", report, *ctx.window)
    return lake.num_rows


def stage_warehouse(ctx: Ctx) -> int:
    deduped = ctx.load("lake/deduped")
    ctx.warehouse.replace_window("prices", deduped, *ctx.window)
    ctx.warehouse.query("SELECT session, count(*) AS n FROM prices WHERE session BETWEEN ? AND ? GROUP BY session", list(ctx.window))
    return deduped.num_rows


def stage_indicators(ctx: Ctx) -> int:
    from benchmarks.adapters import indicators_for_window, layout

    values = indicators_for_window(ctx.warehouse, *ctx.window)
    layout.write_sessions(ctx.storage, "lake/indicators", values, ctx.sessions)
    ctx.warehouse.replace_window("indicators", values, *ctx.window)
    return values.num_rows


def stage_publish(ctx: Ctx) -> int:
    from benchmarks.adapters import publish_window

    return publish_window(ctx.storage, ctx.sessions)


def stage_dashboard(ctx: Ctx) -> int:
    from stock_assets.defs import analytics
    from stock_assets.reports.data import read_report_data
    from stock_assets.reports.page import render, write_atomic

    cap = getattr(analytics, "REPORT_SYMBOLS", None)  # as the asset reads: bounded sessions (and symbols)
    data = read_report_data(ctx.warehouse, analytics.REPORT_SESSIONS, cap or None, last=ctx.sessions[-1])
    write_atomic(ctx.home / "reports" / "dashboard.html", render(data, dt.datetime.now(dt.UTC)))
    return len(data.bars)


def child(stages: list[str], first: str, last: str, repeats: int = REPEATS) -> dict:
    """The chain of `stages` over first..last in this process (environment from child_env)."""
    from benchmarks.adapters import fetch_synthetic
    from stock_assets.lake.handoff import Handoff
    from stock_assets.lake.storage import LakeStorage
    from stock_assets.partitions import sessions_between
    from stock_assets.settings import Settings
    from stock_assets.warehouse.warehouse import warehouse_for_url

    settings = Settings.from_env()
    sessions = sessions_between(settings.start, first, last)
    ctx = Ctx(LakeStorage(settings.lake_url), warehouse_for_url(settings.warehouse_url), sessions, list(settings.symbols),
              settings.dq_jump_threshold, settings.home)
    out = {"sessions": len(sessions), "symbols": len(ctx.symbols), "rss_before_mib": round(rss_mib(), 1)}
    timings: dict[str, list[float]] = {s: [] for s in stages}
    rows, peaks, chains = {}, {}, []
    while len(chains) < max(1, repeats):
        started = time.perf_counter()
        ctx.payloads = fetch_synthetic(ctx.symbols, sessions)  # what raw_prices fetches; not a stage
        out.setdefault("generate_seconds", time.perf_counter() - started)
        ctx.handoff = Handoff()  # a new run: nothing handed on yet
        began = time.perf_counter()
        for stage in stages:
            started = time.perf_counter()
            rows[stage] = globals()[f"stage_{stage}"](ctx)
            timings[stage].append(time.perf_counter() - started)
            peaks.setdefault(stage, round(peak_rss_mib(), 1))  # the first chain: later ones start from its peak
        chains.append(time.perf_counter() - began)
        if sum(chains) + chains[-1] > CHAIN_BUDGET_S:
            break
    out["stages"] = [
        {"stage": s, "seconds": timings[s], "median_s": median(timings[s]), "rows": rows[s],
         "rows_per_s": rows[s] / median(timings[s]), "peak_rss_mib": peaks[s]}
        for s in stages
    ]
    return out


def run(home: Path, symbols: list[str], sessions: list[str], stages=CORE + EXTRAS, repeats: int = REPEATS) -> dict:
    """The chain of `stages` over `sessions` in one child; the lake and warehouse stay in `home`."""
    env = child_env(home, symbols)
    result = run_child("datapath", {"stages": list(stages), "first": sessions[0], "last": sessions[-1], "repeats": repeats}, env)
    results = result["stages"]
    core = [r for r in results if r["stage"] in CORE]
    return {
        "home": str(home),
        "symbols": len(symbols),
        "sessions": len(sessions),
        "bars": len(symbols) * len(sessions),
        "generate_s": result["generate_seconds"],
        "stages": results,
        "core_total_s": sum(r["median_s"] for r in core),
        "all_total_s": sum(r["median_s"] for r in results),
        "core_peak_rss_mib": max(r["peak_rss_mib"] for r in core),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in results),
    }


if __name__ == "__main__":
    child_main(child)
