"""History built by many runs stays true: windows loaded out of order end as one run over their
union would; a hole in a symbol's history is reported over the whole warehouse and never
averaged across; indicators left stale by a prices-only load are reported and recomputed by the
sensor's run; each partition's materialization carries its own row count and preview."""

import dataclasses
import datetime as dt
import os
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pytest

from stock_assets.cli import materialize_range
from stock_assets.defs.analytics import indicators_current
from stock_assets.defs.sensors import stale_indicators_sensor
from stock_assets.partitions import sessions_between
from stock_assets.reports.data import read_report_data
from stock_assets.reports.figures import NOT_LOADED, quality_grid
from stock_assets.transforms.history import history_gaps, not_loaded, stale_sessions
from stock_assets.transforms.indicators import VALUES, compute_indicators
from stock_assets.warehouse.warehouse import warehouse_for_url
from stock_assets_tests.browser import Chromium, chromium_binary
from stock_assets_tests.conftest import defs_for, with_faults

RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")
HOLE_STATE = """(() => {
  const price = document.querySelector('.js-plotly-plot')._fullData.find(t => t.visible === true && t.name === 'price');
  return {x: Array.from(price.x), y: Array.from(price.y, v => (v === null || Number.isNaN(v)) ? null : v)};
})()"""


def indicator_rows(settings) -> list[tuple]:
    with duckdb.connect(str(settings.home / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(f"SELECT symbol, session, {', '.join(VALUES)} FROM indicators ORDER BY symbol, session").fetchall()


def assert_same_values(got: list[tuple], want: list[tuple]) -> None:
    assert [r[:2] for r in got] == [r[:2] for r in want]
    for g, w in zip(got, want):
        for a, b in zip(g[2:], w[2:]):
            assert (a is None) == (b is None), (g[:2], a, b)
            assert a is None or abs(a - b) <= 1e-9 * max(1.0, abs(b)), (g[:2], a, b)


def check(result, name: str):
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == name)


@pytest.mark.slow
def test_windows_loaded_out_of_order_end_as_one_run_over_their_union(settings, instance, tmp_path):
    # Later history first, then earlier history overlapping it: the later sessions' lookback
    # changed (sma_50 becomes defined there), so they are recomputed in the second run.
    defs = defs_for(settings)
    assert materialize_range(defs, "2023-10-02", "2023-12-29", instance).success
    second = materialize_range(defs, "2023-07-03", "2023-10-31", instance)
    assert second.success
    recomputed = {e.partition for e in second.get_asset_materialization_events() if e.asset_key.to_user_string() == "indicators"}
    assert {"2023-11-01", "2023-12-29"} <= recomputed  # after the window, marked as materialized by this run

    union = dataclasses.replace(settings, home=tmp_path / "union", lake_url=str(tmp_path / "union" / "lake"),
                                warehouse_url=f"duckdb:///{tmp_path / 'union' / 'warehouse.duckdb'}")
    with dg.DagsterInstance.ephemeral() as other:
        assert materialize_range(defs_for(union), "2023-07-03", "2023-12-29", other).success
    got, want = indicator_rows(settings), indicator_rows(union)
    assert len(got) == 3 * 126
    assert sum(r[2 + VALUES.index("sma_50")] is not None for r in got) == 3 * 77  # defined from the 50th session
    assert_same_values(got, want)


@pytest.mark.slow
def test_a_hole_is_reported_and_never_averaged_across_then_filling_it_recomputes(settings, instance, tmp_path):
    """March never loaded: no symbol's gap (the check passes, and says what was not loaded), but
    no indicator reaches across it and the dashboard shows it."""
    defs = defs_for(settings)
    assert materialize_range(defs, "2025-01-02", "2025-02-28", instance).success
    later = materialize_range(defs, "2025-04-01", "2025-05-30", instance)
    assert later.success
    gaps = check(later, "prices_no_history_gaps")
    hole = sessions_between(settings.start, "2025-03-03", "2025-03-31")
    assert gaps.passed and gaps.metadata["gaps"].value == 0 and len(hole) == 21
    assert gaps.metadata["not_loaded"].value == "2025-03-03..2025-03-31 (21)"

    with duckdb.connect(str(settings.home / "warehouse.duckdb"), read_only=True) as con:
        after = con.execute("SELECT session, sma_7, sma_20, rsi_14, p.close FROM indicators JOIN prices p USING (symbol, session) "
                            "WHERE symbol = 'MSFT' AND session >= '2025-04-01' ORDER BY session").fetchall()
    assert all(r[1] is None for r in after[:6]) and after[6][1] is not None  # the hole restarts the series
    assert abs(after[6][1] - sum(r[4] for r in after[:7]) / 7) < 1e-9  # from post-hole closes only
    assert all(r[2] is None for r in after[:19]) and after[19][2] is not None
    assert all(r[3] is None for r in after[:14]) and after[14][3] is not None

    data = read_report_data(warehouse_for_url(settings.warehouse_url), 250)  # the dashboard shows the hole
    assert (data.first, data.last, data.not_loaded) == (dt.date(2025, 1, 2), dt.date(2025, 5, 30), hole)
    msft = data.bars[data.bars["symbol"] == "MSFT"].set_index("session")
    assert msft.loc[hole, "price"].isna().all() and msft.drop(index=hole)["price"].notna().all()
    grid = quality_grid(data)
    assert (grid[hole] == NOT_LOADED).all().all() and (grid.drop(columns=hole) != NOT_LOADED).all().all()
    page = settings.home / "reports" / "dashboard.html"
    assert "Not loaded: 21 of the 102 sessions shown have no bar (2025-03-03..2025-03-31 (21))" in page.read_text()
    browser = Chromium(chromium_binary())
    try:  # as a person sees it: the price line breaks over March, the March quality cells are grey
        browser.open(page.as_uri())
        drawn = browser.evaluate(HOLE_STATE)
        assert drawn["x"][0] == "2025-01-02" and drawn["x"][-1] == "2025-05-30" and len(drawn["x"]) == 102
        assert [x for x, y in zip(drawn["x"], drawn["y"]) if y is None] == [str(s) for s in hole]
        assert browser.problems() == []
        artifacts = Path(os.environ.get("STOCK_ASSETS_TEST_ARTIFACTS") or tmp_path)
        artifacts.mkdir(parents=True, exist_ok=True)
        shot = browser.screenshot(artifacts / "dashboard_with_hole.png")
    finally:
        browser.close()
    assert shot.stat().st_size > 50_000

    filled = materialize_range(defs, "2025-03-03", "2025-03-31", instance)
    assert filled.success and check(filled, "prices_no_history_gaps").passed
    # What one run over the union computes: every bar's indicators from the whole (shorter than
    # the lookback) history, now without a hole.
    whole = compute_indicators(warehouse_for_url(settings.warehouse_url).query("SELECT * FROM prices"))
    want = sorted(tuple(r.values()) for r in whole.select(["symbol", "session", *VALUES]).to_pylist())
    assert_same_values(indicator_rows(settings), want)


def test_gaps_are_runs_of_missing_sessions_between_a_symbols_first_and_last_bar():
    days = sessions_between("2015-01-02", "2024-07-01", "2024-07-31")
    keys = pa.table({
        "symbol": ["A"] * 5 + ["B"] * 3,
        "interval": ["1d"] * 8,
        "session": [days[0], days[1], days[5], days[6], days[10], days[3], days[4], days[5]],
    })  # fmt: skip
    gaps = history_gaps(keys).to_pylist()
    assert [(g["symbol"], str(g["first_missing"]), str(g["last_missing"]), g["sessions"]) for g in gaps] == [
        ("A", str(days[2]), str(days[4]), 3),
        ("A", str(days[7]), str(days[9]), 3),
    ]  # B starts later: not a gap; 2024-07-04 is a holiday: not a gap either
    loaded = [days[i] for i in (0, 1, 3, 4, 5, 6, 10)]  # no run loaded days 2, 7, 8, 9
    assert [(g["symbol"], str(g["first_missing"]), str(g["last_missing"]), g["sessions"]) for g in history_gaps(keys, loaded).to_pylist()] == [
        ("A", str(days[3]), str(days[4]), 2),  # B has them: A skipped them
    ]  # fmt: skip
    assert not_loaded(loaded) == [days[2], days[7], days[8], days[9]]


def test_staleness_counts_the_lookback_in_sessions():
    days = sessions_between("2015-01-02", "2024-01-02", "2024-03-28")

    def loads(rows: dict) -> pa.Table:
        return pa.table({"session": list(rows), "rows": [3] * len(rows), "loaded_at": [pa.scalar(t * 1_000_000, pa.timestamp("us", tz="UTC")).as_py() for t in rows.values()],
                         "run_id": ["r"] * len(rows)})

    prices = loads({d: 100 for d in days} | {days[10]: 200})  # day 10 reloaded at t=200
    derived = loads({d: 150 for d in days})  # every indicator computed at t=150
    assert stale_sessions(prices, derived, lookback=5) == days[10:16]  # day 10 and the 5 after it
    assert stale_sessions(prices, loads({d: 150 for d in days[:-1]}), lookback=5) == days[10:16] + [days[-1]]


@pytest.mark.slow
def test_a_prices_only_load_leaves_indicators_visibly_stale_until_the_sensors_run(settings, instance):
    defs = defs_for(settings)
    assert materialize_range(defs, "2024-03-01", "2024-04-30", instance).success
    job = defs.resolve_implicit_global_asset_job_def()
    upstream = [dg.AssetKey(k) for k in ("raw_prices", "landing_csv", "lake_parquet", "deduped_prices", "dq_report", "redshift_table")]
    prices_only = job.execute_in_process(instance=instance, asset_selection=upstream, tags=dict(zip(RANGE_TAGS, ("2024-02-01", "2024-02-29"))))
    assert prices_only.success

    stale = indicators_current(warehouse=defs.resources["warehouse"])
    assert not stale.passed
    assert stale.metadata["stale_sessions"].value == 20 + 42  # February, and every later session with prices
    assert stale.metadata["sample"].value == "2024-02-01..2024-04-30 (62)"

    with dg.build_sensor_context(instance=instance, resources=defs.resources) as context:
        request = stale_indicators_sensor(context)
    assert isinstance(request, dg.RunRequest)
    assert (request.tags[RANGE_TAGS[0]], request.tags[RANGE_TAGS[1]]) == ("2024-02-01", "2024-04-30")
    rerun = defs.resolve_job_def("indicators_job").execute_in_process(instance=instance, tags=request.tags)
    assert rerun.success and check(rerun, "indicators_current").passed
    with dg.build_sensor_context(instance=instance, resources=defs.resources) as context:
        assert isinstance(stale_indicators_sensor(context), dg.SkipReason)


def test_each_partition_carries_its_own_row_count_and_preview(settings, instance):
    result = materialize_range(defs_for(with_faults(settings, "missing_session")), "2024-11-18", "2024-11-22", instance)
    assert result.success
    events = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "deduped_prices"]
    counts = {e.partition: e.step_materialization_data.materialization.metadata["dagster/row_count"].value for e in events}
    assert counts == {"2024-11-18": 3, "2024-11-19": 3, "2024-11-20": 0, "2024-11-21": 3, "2024-11-22": 3}
    for event in events:
        meta = event.step_materialization_data.materialization.metadata
        preview = meta["preview"].value
        assert meta["window_rows"].value == 12
        if event.partition != "2024-11-20":
            assert preview.count(event.partition) == 3 and "2024-11-1" not in preview.replace(event.partition, "")
