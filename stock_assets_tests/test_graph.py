"""The whole graph, materialized for real into a temporary lake and DuckDB warehouse.

Each test runs the seven assets in one Dagster run over a range of sessions (a single-run
backfill) on a test instance, then reads what landed: files, Parquet, warehouse tables.
"""

from collections import Counter

import duckdb
import pyarrow.compute as pc
import pytest

from stock_assets.cli import materialize_range
from stock_assets.lake import delta
from stock_assets.lake.layout import read_sessions
from stock_assets.lake.storage import LakeStorage
from stock_assets.partitions import sessions_between
from stock_assets_tests.conftest import SYMBOLS, defs_for, with_faults

FIRST, LAST = "2024-01-02", "2024-01-31"  # 21 sessions: Jan 1 and MLK day are holidays


def warehouse(settings) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(settings.home / "warehouse.duckdb"), read_only=True)


def materialized(result) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


@pytest.mark.slow
def test_every_stage_lands_for_a_range(settings, instance):
    result = materialize_range(defs_for(settings), FIRST, LAST, instance)
    assert result.success
    assert materialized(result) == {"raw_prices", "landing_csv", "lake_parquet", "corporate_actions", "deduped_prices", "dq_report", "redshift_table", "indicators", "published_prices", "dashboard"}
    sessions = sessions_between(settings.start, FIRST, LAST)
    assert len(sessions) == 21
    # One record per session for each partitioned asset; the page and the pointer are one thing each.
    counts = Counter(e.asset_key.to_user_string() for e in result.get_asset_materialization_events())
    assert counts.pop("dashboard") == counts.pop("published_prices") == 1 and set(counts.values()) == {21}
    lake = LakeStorage(settings.lake_url)

    raw = lake.list_files(f"raw/{FIRST}_{LAST}")
    assert [p.split("__")[2] for p in raw] == sorted(SYMBOLS)
    landing = [p for p in lake.list_files("landing") if p.endswith(".csv")]  # beside each, its record _<file>.json
    assert sorted({p.split("/")[1] for p in landing}) == [str(s) for s in sessions]
    assert len(landing) == 21
    for prefix in ("lake/prices", "lake/deduped"):
        table = delta.open_table(lake, prefix)
        assert table.version() == 0 and [p.split("/")[0] for p in delta.current_files(lake, prefix)] == ["year=2024"]  # one commit, one file
        rows = delta.dataset(lake, prefix)  # what DuckDB, pandas or Spark read
        assert duckdb.sql("SELECT count(*), count(DISTINCT session) FROM rows").fetchall() == [(63, 21)]

    con = warehouse(settings)
    assert con.execute("SELECT count(*), count(DISTINCT symbol), count(DISTINCT session) FROM prices").fetchall() == [(63, 3, 21)]
    assert con.execute("SELECT count(*), bool_and(passed) FROM dq_report").fetchall() == [(21 * 12, True)]
    assert con.execute("SELECT count(*) FROM indicators").fetchall() == [(63,)]
    # SMA 7 is undefined until the 7th bar, then the mean of the last 7 closes.
    rows = con.execute("SELECT i.sma_7, i.pct_change, p.close FROM indicators i JOIN prices p USING (symbol, session) WHERE symbol = 'MSFT' ORDER BY session").fetchall()
    assert all(r[0] is None for r in rows[:6])
    closes = [r[2] for r in rows]
    assert abs(rows[6][0] - sum(closes[:7]) / 7) < 1e-9
    assert abs(rows[20][0] - sum(closes[14:21]) / 7) < 1e-9
    assert rows[0][1] is None and abs(rows[1][1] - (closes[1] / closes[0] - 1)) < 1e-12
    assert instance.get_runs_count() == 1


@pytest.mark.slow
def test_a_rerun_changes_no_row_and_no_value(settings, instance):
    defs = defs_for(settings)
    columns = "symbol, session, ts, interval, open, high, low, close, adj_close, volume, vwap, trades, source"
    assert materialize_range(defs, FIRST, LAST, instance).success
    with warehouse(settings) as con:
        prices = con.execute(f"SELECT {columns} FROM prices ORDER BY ALL").fetchall()
        indicators = con.execute("SELECT * FROM indicators ORDER BY ALL").fetchall()
        first_ingest = con.execute("SELECT max(ingested_at) FROM prices").fetchall()[0][0]
    lake = LakeStorage(settings.lake_url)

    assert materialize_range(defs, FIRST, LAST, instance).success
    with warehouse(settings) as con:
        assert con.execute(f"SELECT {columns} FROM prices ORDER BY ALL").fetchall() == prices
        assert con.execute("SELECT * FROM indicators ORDER BY ALL").fetchall() == indicators
        assert con.execute("SELECT count(*) FROM dq_report").fetchall() == [(21 * 12,)]
        assert con.execute("SELECT min(ingested_at) FROM prices").fetchall()[0][0] > first_ingest  # really re-fetched
    table = delta.open_table(lake, "lake/prices")
    assert table.version() == 1 and len(delta.current_files(lake, "lake/prices")) == 1  # the window replaced in one commit, never a second copy
    assert len(lake.list_files("landing")) == 2 * 21  # a file and its record per session
    sessions = sessions_between(settings.start, FIRST, LAST)
    again, before = read_sessions(lake, "lake/prices", sessions), delta.read_window(lake, "lake/prices", sessions, version=0)
    assert again.num_rows == before.num_rows == 63  # and the first load still reads as it was
    assert again.drop_columns(["ingested_at"]).equals(before.drop_columns(["ingested_at"]))


@pytest.mark.slow
def test_a_second_window_leaves_the_first_untouched(settings, instance):
    defs = defs_for(settings)
    assert materialize_range(defs, FIRST, LAST, instance).success
    with warehouse(settings) as con:
        january = con.execute("SELECT * EXCLUDE (adj_close, adj_factor) FROM prices ORDER BY ALL").fetchall()
    assert materialize_range(defs, "2024-02-01", "2024-02-09", instance).success
    with warehouse(settings) as con:
        # What traded is untouched; a dividend in February restates January's adjusted close (test_restatement.py).
        assert con.execute("SELECT * EXCLUDE (adj_close, adj_factor) FROM prices WHERE session < '2024-02-01' ORDER BY ALL").fetchall() == january
        assert con.execute("SELECT bool_and(adj_close = close * adj_factor) FROM prices").fetchall() == [(True,)]
        assert con.execute("SELECT count(*) FROM prices WHERE session >= '2024-02-01'").fetchall() == [(7 * 3,)]
        # February's indicators read January through the lookback: SMA 7 is defined at once.
        assert con.execute("SELECT count(*) FROM indicators WHERE session >= '2024-02-01' AND sma_7 IS NULL").fetchall() == [(0,)]


@pytest.mark.slow
def test_a_failed_blocking_check_stops_the_load_and_lands_in_dq_report(settings, instance):
    assert materialize_range(defs_for(settings), FIRST, LAST, instance).success
    with warehouse(settings) as con:
        clean = con.execute("SELECT * FROM prices ORDER BY ALL").fetchall()

    result = materialize_range(defs_for(with_faults(settings, "nulls", "ohlc")), FIRST, LAST, instance)
    assert not result.success
    assert "redshift_table" not in materialized(result) and "indicators" not in materialized(result)
    failed = {e.check_name: e for e in result.get_asset_check_evaluations() if not e.passed}
    assert set(failed) == {"prices_not_null", "prices_ohlc_consistent"}
    assert failed["prices_not_null"].metadata["failing_rows"].value == 1
    assert failed["prices_not_null"].metadata["sample"].value == f"AAPL@{LAST}"

    with warehouse(settings) as con:
        assert con.execute("SELECT * FROM prices ORDER BY ALL").fetchall() == clean  # the bad window never loaded
        rows = con.execute("SELECT session::VARCHAR, check_name, observed, sample, severity FROM dq_report WHERE NOT passed ORDER BY check_name").fetchall()
    assert rows == [
        (LAST, "prices_not_null", 1.0, f"AAPL@{LAST}", "ERROR"),
        (LAST, "prices_ohlc_consistent", 1.0, f"AAPL@{LAST}", "ERROR"),
    ]
    lake = LakeStorage(settings.lake_url)
    report = read_sessions(lake, "lake/dq_report", sessions_between(settings.start, LAST, LAST), schema=None)
    assert pc.sum(pc.invert(report["passed"])).as_py() == 2


@pytest.mark.slow
def test_duplicate_bars_are_resolved_by_dedup_without_blocking(settings, instance):
    result = materialize_range(defs_for(with_faults(settings, "duplicates")), FIRST, LAST, instance)
    assert result.success
    dedup = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "deduped_prices"]
    assert dedup[0].step_materialization_data.materialization.metadata["duplicates_dropped"].value == 1
    with warehouse(settings) as con:
        assert con.execute("SELECT count(*) FROM prices").fetchall() == [(63,)]


def test_zero_prices_block_and_zero_volume_warns(settings, instance):
    result = materialize_range(defs_for(with_faults(settings, "zeros")), FIRST, LAST, instance)
    assert not result.success
    outcomes = {e.check_name: (e.passed, e.severity.value) for e in result.get_asset_check_evaluations()}
    assert outcomes["prices_positive"] == (False, "ERROR")
    assert outcomes["volume_nonzero"] == (False, "WARN")
    assert outcomes["prices_not_null"] == (True, "ERROR")
