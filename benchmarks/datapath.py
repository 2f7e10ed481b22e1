"""Item 1, the data path without the orchestrator: every stage of the graph as its plain
functions, each stage reading what the one before stored (as the IO managers do), each in a
child process of its own so that its peak RSS is its own. Generating the synthetic bars is
timed apart from the stages.

Also used to prepare history for the incremental day (item 3) and as the plain-function
side of the run overhead (item 4).
"""

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import REPEATS, child_env, child_main, median, peak_rss_mib, repeat, rss_mib, run_child

CORE = ("raw", "landing", "lake", "dedup", "checks", "warehouse", "indicators")  # what issue 9 lists
EXTRAS = ("publish", "dashboard")  # the graph's other two assets


@dataclass
class Ctx:
    storage: object
    warehouse: object
    sessions: list[dt.date]
    symbols: list[str]
    jump_threshold: float
    home: Path

    @property
    def window(self) -> tuple[dt.date, dt.date]:
        return self.sessions[0], self.sessions[-1]


def stage_raw(ctx: Ctx, payloads: list) -> int:
    from benchmarks.adapters import layout

    layout.write_raw(ctx.storage, payloads, *ctx.window)
    return len(payloads)


def stage_landing(ctx: Ctx) -> int:
    import pyarrow.compute as pc

    from benchmarks.adapters import layout, parse_payloads

    bars = parse_payloads(layout.read_raw(ctx.storage, *ctx.window, exact=True))
    first, last = ctx.window
    bars = bars.filter(pc.and_(pc.greater_equal(bars["session"], first), pc.less_equal(bars["session"], last)))
    layout.write_landing(ctx.storage, bars, ctx.sessions)
    return bars.num_rows


def stage_lake(ctx: Ctx) -> int:
    from benchmarks.adapters import layout

    bars = layout.read_landing(ctx.storage, ctx.sessions)
    layout.write_sessions(ctx.storage, "lake/prices", bars, ctx.sessions)
    return bars.num_rows


def stage_dedup(ctx: Ctx) -> int:
    from benchmarks.adapters import layout
    from stock_assets.transforms.dedup import dedupe_latest

    deduped = dedupe_latest(layout.read_sessions(ctx.storage, "lake/prices", ctx.sessions))
    layout.write_sessions(ctx.storage, "lake/deduped", deduped, ctx.sessions)
    return deduped.num_rows


def stage_checks(ctx: Ctx) -> int:
    import pyarrow as pa

    from benchmarks.adapters import evaluate_window, layout
    from stock_assets.partitions import session_offset

    lake = layout.read_sessions(ctx.storage, "lake/prices", ctx.sessions)
    deduped = layout.read_sessions(ctx.storage, "lake/deduped", ctx.sessions)
    before = session_offset(ctx.sessions[0], -1)
    previous = layout.read_sessions(ctx.storage, "lake/deduped", [before] if before < ctx.sessions[0] else [])
    report = evaluate_window(ctx.storage, lake, deduped, previous, ctx.sessions, ctx.symbols, ctx.jump_threshold)
    n, schema = report.num_rows, report.schema
    report = report.set_column(schema.get_field_index("run_id"), "run_id", pa.array(["bench"] * n, pa.string()))
    at = schema.field("checked_at").type
    report = report.set_column(schema.get_field_index("checked_at"), "checked_at", pa.array([dt.datetime.now(dt.UTC)] * n, at))
    layout.write_sessions(ctx.storage, "lake/dq_report", report, ctx.sessions)
    ctx.warehouse.replace_window("dq_report", report, *ctx.window)
    return lake.num_rows


def stage_warehouse(ctx: Ctx) -> int:
    from benchmarks.adapters import layout

    deduped = layout.read_sessions(ctx.storage, "lake/deduped", ctx.sessions)
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
    from benchmarks.adapters import layout

    bars = layout.read_sessions(ctx.storage, "lake/deduped", ctx.sessions)
    prefix = f"published/{layout.stamp(dt.datetime.now(dt.UTC))}"
    layout.write_sessions(ctx.storage, prefix, bars, ctx.sessions)
    ctx.storage.write_bytes(f"{prefix}/_manifest.json", b"{}")
    return bars.num_rows


def stage_dashboard(ctx: Ctx) -> int:
    from stock_assets.defs import analytics
    from stock_assets.reports.data import read_report_data
    from stock_assets.reports.page import render, write_atomic

    cap = getattr(analytics, "REPORT_SYMBOLS", None)  # as the asset reads: bounded sessions (and symbols)
    data = read_report_data(ctx.warehouse, ctx.sessions[-1], analytics.REPORT_SESSIONS, *([cap] if cap else []))
    write_atomic(ctx.home / "reports" / "dashboard.html", render(data, dt.datetime.now(dt.UTC)))
    return len(data.bars)


def child(stage: str, first: str, last: str, repeats: int = REPEATS) -> dict:
    """One stage over first..last in this process (environment from child_env)."""
    from stock_assets.lake.storage import LakeStorage
    from stock_assets.partitions import sessions_between
    from stock_assets.settings import Settings
    from stock_assets.warehouse.warehouse import warehouse_for_url

    settings = Settings.from_env()
    sessions = sessions_between(settings.start, first, last)
    ctx = Ctx(LakeStorage(settings.lake_url), warehouse_for_url(settings.warehouse_url), sessions, list(settings.symbols),
              settings.dq_jump_threshold, settings.home)
    out = {"stage": stage, "sessions": len(sessions), "symbols": len(ctx.symbols)}
    if stage == "raw":
        from benchmarks.adapters import fetch_synthetic

        gen_seconds, payloads = repeat(lambda: fetch_synthetic(ctx.symbols, sessions), 1)
        out["generate_seconds"] = gen_seconds[0]
        fn = lambda: stage_raw(ctx, payloads)
    else:
        fn = lambda: globals()[f"stage_{stage}"](ctx)
    out["rss_before_mib"] = round(rss_mib(), 1)
    seconds, rows = repeat(fn, repeats)
    if stage == "raw":
        rows = len(sessions) * len(ctx.symbols)  # bars held by the payloads
    return out | {"seconds": seconds, "median_s": median(seconds), "rows": rows, "rows_per_s": rows / median(seconds),
                  "peak_rss_mib": round(peak_rss_mib(), 1)}


def run(home: Path, symbols: list[str], sessions: list[str], stages=CORE + EXTRAS, repeats: int = REPEATS) -> dict:
    """Every stage in order over `sessions`, each in a child; the lake and warehouse stay in `home`."""
    env = child_env(home, symbols)
    results = [run_child("datapath", {"stage": s, "first": sessions[0], "last": sessions[-1], "repeats": repeats}, env) for s in stages]
    core = [r for r in results if r["stage"] in CORE]
    return {
        "home": str(home),
        "symbols": len(symbols),
        "sessions": len(sessions),
        "bars": len(symbols) * len(sessions),
        "generate_s": next(r["generate_seconds"] for r in results if r["stage"] == "raw"),
        "stages": results,
        "core_total_s": sum(r["median_s"] for r in core),
        "all_total_s": sum(r["median_s"] for r in results),
        "core_peak_rss_mib": max(r["peak_rss_mib"] for r in core),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in results),
    }


if __name__ == "__main__":
    child_main(child)
