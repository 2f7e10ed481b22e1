"""Every fault the synthetic provider can inject, caught by its check with exact counts and
keys through the real graph; the window checks on hand-made and on recorded market data;
the published snapshot and what blocks it."""

import datetime as dt
import json

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from stock_assets.cli import materialize_range
from stock_assets.defs.quality import evaluate_window
from stock_assets.lake import delta
from stock_assets.lake.storage import LakeStorage
from stock_assets.partitions import sessions_between
from stock_assets.seed_csv import from_landing_csv
from stock_assets.transforms.dedup import dedupe_latest
from stock_assets.transforms.quality_window import jumps, partial_bars, rows_per_session
from stock_assets_tests.conftest import defs_for, fixture_bytes, with_faults

FIRST, LAST, MIDDLE = "2024-01-02", "2024-01-31", "2024-01-17"  # 21 sessions; the 11th is the middle
UTC = dt.UTC


def checks(result) -> dict:
    """check -> (passed, severity, failing rows, sample)."""
    value = lambda e, key: e.metadata[key].value if key in e.metadata else None
    return {e.check_name: (e.passed, e.severity.value, value(e, "failing_rows"), value(e, "sample")) for e in result.get_asset_check_evaluations()}


def failed(outcome: dict) -> dict:
    return {name: v for name, v in outcome.items() if not v[0] and name != "prices_fresh"}


@pytest.mark.slow
@pytest.mark.parametrize(
    "fault, expected, loads",
    [
        ("nulls", {"prices_not_null": (False, "ERROR", 1, f"AAPL@{LAST}")}, False),
        ("zeros", {
            "prices_positive": (False, "ERROR", 1, f"AAPL@{LAST}"),
            "volume_nonzero": (False, "WARN", 1, f"AAPL@{LAST}"),
            "prices_no_unexplained_jumps": (False, "WARN", 1, f"AAPL@{LAST}"),
        }, False),
        ("ohlc", {"prices_ohlc_consistent": (False, "ERROR", 1, f"AAPL@{LAST}")}, False),
        ("duplicates", {"lake_duplicate_keys": (False, "WARN", 2, f"AAPL@{LAST}, AAPL@{LAST}")}, True),
        ("missing_session", {
            "prices_complete": (False, "WARN", 3, f"AAPL@{MIDDLE}, IBM@{MIDDLE}, MSFT@{MIDDLE}"),
            "prices_no_history_gaps": (False, "WARN", 3, f"AAPL 1d {MIDDLE} (1 session); IBM 1d {MIDDLE} (1 session); MSFT 1d {MIDDLE} (1 session)"),
        }, True),
        ("split_jump", {"prices_no_unexplained_jumps": (False, "WARN", 1, f"AAPL@{MIDDLE}")}, True),
    ],
)
def test_each_fault_is_caught_by_its_check(settings, instance, fault, expected, loads):
    result = materialize_range(defs_for(with_faults(settings, fault)), FIRST, LAST, instance)
    assert failed(checks(result)) == expected
    loaded = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert ("redshift_table" in loaded) is loads and ("published_prices" in loaded) is loads and result.success is loads
    with duckdb.connect(str(settings.home / "warehouse.duckdb"), read_only=True) as con:
        report = con.execute("SELECT check_name, sum(observed) FROM dq_report WHERE NOT passed GROUP BY ALL").fetchall()
    in_report = {name: float(count) for name, (_, _, count, _) in expected.items() if name != "prices_no_history_gaps"}  # whole-warehouse: not per session
    assert dict(report) == in_report


@pytest.mark.slow
def test_a_missing_symbol_fails_the_run_by_name_and_nothing_is_published(settings, instance):
    """missing_symbol: the provider has nothing for IBM (an outage). The window would lack it:
    raw_prices fails naming it after the step retries, nothing is checked, loaded or published;
    the provider back, a re-run completes and publishes the window."""
    result = materialize_range(defs_for(with_faults(settings, "missing_symbol")), FIRST, LAST, instance)
    assert not result.success and not result.get_asset_materialization_events() and not checks(result)
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    text = failure.event_specific_data.error.message
    assert failure.step_key == "raw_prices" and "IBM could not be fetched after 4 tries" in text and "missing_symbol" in text
    lake = LakeStorage(settings.lake_url)
    assert not lake.list_files("published") and not lake.list_files("lake")

    again = materialize_range(defs_for(settings), FIRST, LAST, instance)
    assert again.success and failed(checks(again)) == {}
    assert json.loads(lake.read_bytes("published/LATEST"))["rows"] == 63


@pytest.mark.slow
def test_clean_data_passes_every_check_and_is_published(settings, instance):
    result = materialize_range(defs_for(settings), FIRST, LAST, instance)
    assert failed(checks(result)) == {}
    assert checks(result)["warehouse_rows_reconcile"][0]
    lake = LakeStorage(settings.lake_url)
    latest = json.loads(lake.read_bytes("published/LATEST"))
    assert latest["window"] == [FIRST, LAST] and latest["rows"] == 63
    assert (latest["table"], latest["version"]) == (lake.uri("lake/deduped"), 0)
    assert latest["checks"]["prices_ohlc_consistent"] is True and all(latest["checks"].values())
    published = delta.read_window(lake, "lake/deduped", sessions_between(settings.start, FIRST, LAST), version=latest["version"])

    blocked = materialize_range(defs_for(with_faults(settings, "nulls")), FIRST, LAST, instance)
    assert not blocked.success
    assert delta.open_table(lake, "lake/deduped").version() == 1  # the failed run wrote the lake: its version is not production
    assert json.loads(lake.read_bytes("published/LATEST")) == latest  # a failed gate publishes nothing
    assert len(lake.list_files("published")) == 2  # LATEST and the one snapshot record
    again = delta.read_window(lake, "lake/deduped", sessions_between(settings.start, FIRST, LAST), version=latest["version"])
    assert again.equals(published) and pc.sum(pc.is_null(again["close"])).as_py() == 0  # "as of" production: the checked prices


@pytest.mark.slow
def test_a_backfill_publishes_once_in_a_run_of_its_own(settings, instance):
    """As a UI backfill runs it: the window's runs, then published_prices alone (it is not
    partitioned). It publishes the version the window's run wrote, with that run's checks."""
    defs = defs_for(settings)
    window = materialize_range(defs, FIRST, LAST, instance)
    lake = LakeStorage(settings.lake_url)
    lake.delete("published/LATEST")
    job = defs.resolve_implicit_global_asset_job_def()
    alone = job.get_subset(asset_selection={dg.AssetKey("published_prices")}).execute_in_process(instance=instance)
    assert alone.success and alone.run_id != window.run_id
    latest = json.loads(lake.read_bytes("published/LATEST"))
    assert (latest["version"], latest["window"], latest["rows"]) == (0, [FIRST, LAST], 63)
    assert latest["checks"] == {name: passed for name, (passed, *_) in checks(window).items()} and latest["checks"]["landing_rows_reconcile"]

    # A window whose blocking checks failed wrote a version too: publishing alone refuses it.
    assert not materialize_range(defs_for(with_faults(settings, "nulls")), FIRST, LAST, instance).success
    refused = job.get_subset(asset_selection={dg.AssetKey("published_prices")}).execute_in_process(instance=instance, raise_on_error=False)
    [failure] = [e for e in refused.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert "prices_not_null" in failure.event_specific_data.error.message and "not published" in failure.event_specific_data.error.message
    assert json.loads(lake.read_bytes("published/LATEST")) == latest


@pytest.mark.slow
def test_freshness_is_measured_against_the_last_closed_session(settings, instance):
    result = materialize_range(defs_for(settings), FIRST, LAST, instance)
    [fresh] = [e for e in result.get_asset_check_evaluations() if e.check_name == "prices_fresh"]
    assert (fresh.passed, fresh.severity.value) == (False, "WARN")  # January 2024 is not the latest session
    assert fresh.metadata["newest_loaded"].value == LAST


def recorded(*symbols: str) -> pa.Table:
    moment = dt.datetime(2025, 1, 2, tzinfo=UTC)
    return pa.concat_tables(
        [from_landing_csv(fixture_bytes(f"csv/seed_format_{s}_2012-2014_zipline_csvdir.csv"), source="seed", ingested_at=moment) for s in symbols]
    )


def test_recorded_market_data_raises_no_false_alarm():
    bars = recorded("AAPL", "IBM", "KO", "MSFT")
    sessions = sessions_between("2012-01-03", "2012-01-03", "2014-12-31")
    assert len(sessions) == 754 and dt.date(2012, 10, 29) not in sessions  # Hurricane Sandy
    report = evaluate_window(bars, (rows_per_session(bars), {}), dedupe_latest(bars), bars.slice(0, 0), sessions, ["AAPL", "IBM", "KO", "MSFT"], 0.25)
    assert report.num_rows == 754 * 12
    assert report.filter(pc.invert(report["passed"])).num_rows == 0


def test_a_split_explained_by_its_coefficient_does_not_warn():
    # AAPL's 7:1 split on 2014-06-09, with the raw (unadjusted) closes before it restored.
    raw = from_landing_csv(
        fixture_bytes("csv/zipline_csvdir_AAPL_2012-2014_with_dividend_split.csv").replace(b"date,", b"symbol,date,", 1).replace(b"\n2", b"\nAAPL,2"),
        source="seed", ingested_at=dt.datetime(2025, 1, 2, tzinfo=UTC),
    )
    before = pc.less(raw["session"], pa.scalar(dt.date(2014, 6, 9)))
    for column in ("open", "high", "low", "close"):
        raw = raw.set_column(raw.schema.get_field_index(column), column, pc.if_else(before, pc.multiply(raw[column], 7.0), raw[column]))
    sessions = sessions_between("2012-01-03", "2014-06-02", "2014-06-13")
    previous, window = raw.filter(pc.less(raw["session"], pa.scalar(sessions[0]))), raw.filter(pc.greater_equal(raw["session"], pa.scalar(sessions[0])))
    assert pc.sum(jumps(window, previous, sessions, 0.25, "d")["observed"]).as_py() == 0
    unexplained = window.set_column(window.schema.get_field_index("split_coefficient"), "split_coefficient", pa.nulls(window.num_rows, pa.float64()))
    report = jumps(unexplained, previous, sessions, 0.25, "d")
    assert report.filter(pc.invert(report["passed"])).select(["session", "sample"]).to_pylist() == [{"session": dt.date(2014, 6, 9), "sample": "AAPL@2014-06-09"}]


def test_a_split_without_its_step_in_the_traded_price_warns():
    """The zipline csvdir AAPL file as recorded holds split-adjusted prices AND a 7:1 split on
    2014-06-09: adjusting them again would divide the years before by 7 twice."""
    recorded_bars = from_landing_csv(
        fixture_bytes("csv/zipline_csvdir_AAPL_2012-2014_with_dividend_split.csv").replace(b"date,", b"symbol,date,", 1).replace(b"\n2", b"\nAAPL,2"),
        source="seed", ingested_at=dt.datetime(2025, 1, 2, tzinfo=UTC),
    )
    sessions = sessions_between("2012-01-03", "2014-06-02", "2014-06-13")
    previous = recorded_bars.filter(pc.less(recorded_bars["session"], pa.scalar(sessions[0])))
    window = recorded_bars.filter(pc.greater_equal(recorded_bars["session"], pa.scalar(sessions[0])))
    for ordered in (window, window.take(pa.array(range(window.num_rows - 1, -1, -1)))):  # NumPy's path and DuckDB's
        report = jumps(ordered, previous, sessions, 0.25, "d")
        assert report.filter(pc.invert(report["passed"])).select(["session", "sample"]).to_pylist() == [{"session": dt.date(2014, 6, 9), "sample": "AAPL@2014-06-09"}]


def test_a_bar_fetched_before_the_close_is_flagged_partial():
    day = dt.date(2024, 1, 2)
    close = dt.datetime(2024, 1, 2, 21, tzinfo=UTC)  # 16:00 New York
    bars = recorded("KO").slice(0, 2)
    bars = bars.set_column(bars.schema.get_field_index("session"), "session", pa.array([day, day], pa.date32()))
    bars = bars.set_column(bars.schema.get_field_index("symbol"), "symbol", pa.array(["EARLY", "LATE"]))
    fetched = pa.array([close - dt.timedelta(hours=2), close + dt.timedelta(minutes=5)], pa.timestamp("us", tz="UTC"))
    bars = bars.set_column(bars.schema.get_field_index("ingested_at"), "ingested_at", fetched)
    report = partial_bars(bars, [day], {day: close}, "d")
    assert report.select(["observed", "sample", "severity"]).to_pylist() == [{"observed": 1.0, "sample": f"EARLY@{day}", "severity": "WARN"}]
