"""What enters the history is what ended and what was kept: no final bar for a session that has
not closed; every bar a provider returns landed, set aside with its reason, or outside the
window, and the counts prove it; a landing file changed after it was written fails a blocking
check that names it, and a re-run repairs it."""

import datetime as dt
import json

import duckdb
import pyarrow as pa
import pytest

from stock_assets.cli import materialize_range
from stock_assets.lake.storage import LakeStorage
from stock_assets.providers.registry import parse_payload
from stock_assets.providers.synthetic import SyntheticProvider
from stock_assets.transforms.quality_window import partial_bars
from stock_assets_tests.conftest import defs_for, fixture_bytes
from stock_assets_tests.test_provider_graph import KEY, http_settings  # noqa: F401 (fixture)

RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")
UTC = dt.UTC


def fetched_at(now: dt.datetime, sessions: list[dt.date]):
    result = SyntheticProvider(clock=lambda: now).fetch(["AAPL", "MSFT"], sessions, "1d")
    return pa.concat_tables([parse_payload(p) for p in result.payloads]) if result.payloads else None, result


def test_no_bar_before_the_open_and_a_partial_one_during_the_session():
    days = [dt.date(2026, 11, 24), dt.date(2026, 11, 25)]
    before_open, result = fetched_at(dt.datetime(2026, 11, 25, 9, 47, tzinfo=UTC), days)  # 04:47 New York
    assert sorted(set(before_open["session"].to_pylist())) == [days[0]]
    assert "not yet open" in result.notes[0] and "2026-11-25" in result.notes[0]

    during, result = fetched_at(dt.datetime(2026, 11, 25, 17, 0, tzinfo=UTC), days)  # noon New York
    after, _ = fetched_at(dt.datetime(2026, 11, 25, 22, 0, tzinfo=UTC), days)
    partial = during.filter(pa.compute.equal(during["session"], days[1])).to_pylist()
    final = after.filter(pa.compute.equal(after["session"], days[1])).to_pylist()
    for p, f in zip(partial, final):
        assert p["open"] == f["open"] and p["close"] != f["close"] and 0 < p["volume"] < f["volume"]
        assert p["low"] <= min(p["open"], p["close"]) <= max(p["open"], p["close"]) <= p["high"]
    assert "in progress" in result.notes[0]
    closes = {d: dt.datetime.combine(d, dt.time(21, 0), UTC) for d in days}
    flagged = partial_bars(during, days, closes, "deduped_prices").to_pylist()
    assert [(r["session"], r["passed"], r["observed"]) for r in flagged] == [(days[0], True, 0.0), (days[1], False, 2.0)]
    assert all(r["passed"] for r in partial_bars(after, days, closes, "deduped_prices").to_pylist())


@pytest.mark.slow
def test_every_bar_a_provider_returns_is_landed_set_aside_or_outside_the_window(http_settings, fake_api, instance):  # noqa: F811
    body = json.loads(fixture_bytes("alphavantage/time_series_daily_MSFT_compact_demo_2019_stockpoint.json"))
    series = body["Time Series (Daily)"]
    bar = series["2019-05-24"]
    series["2019-05-27"] = bar  # Memorial Day: a listing elsewhere traded, NYSE did not
    series["2019-06-08"] = bar  # a Saturday
    fake_api.route("/query", json.dumps(body).encode(), symbol="MSFT")
    settings = http_settings("alphavantage", ("MSFT",))

    result = materialize_range(defs_for(settings), "2019-05-20", "2019-06-28", instance)
    assert result.success
    landing = next(e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "landing_csv")
    meta = {k: v.value for k, v in landing.step_materialization_data.materialization.metadata.items()}
    in_window = [d for d in series if "2019-05-20" <= d <= "2019-06-28"]
    assert meta["bars_returned"] == len(series) == 102
    assert meta["bars_landed"] == len(in_window) - 2 == 29  # every session of the window
    assert meta["bars_set_aside"] == 2 and meta["bars_outside_window"] == 102 - 31
    assert "MSFT@2019-05-27" in meta["set_aside"] and "MSFT@2019-06-08" in meta["set_aside"]
    accounted = next(e for e in result.get_asset_check_evaluations() if e.check_name == "landing_bars_accounted")
    assert accounted.passed and accounted.metadata["unaccounted"].value == 0
    assert accounted.metadata["bars_in_landing_files"].value == 29

    lake = LakeStorage(settings.lake_url)
    reasons = [p for p in lake.list_files("quarantine/provider") if p.endswith(".reason.txt")]
    assert len(reasons) == 1 and "not an NYSE session" in lake.read_bytes(reasons[0]).decode()
    logs = "\n".join(str(r.user_message) for r in instance.all_logs(result.run_id))
    assert "2 bars set aside" in logs and "MSFT@2019-05-27" in logs
    with duckdb.connect(str(settings.home / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM prices").fetchone()[0] == 29


@pytest.mark.slow
def test_a_landing_file_changed_after_it_was_written_fails_a_blocking_check_naming_it(settings, instance):
    defs = defs_for(settings)
    assert materialize_range(defs, "2024-03-04", "2024-03-08", instance).success
    lake = LakeStorage(settings.lake_url)
    target = next(p for p in lake.list_files("landing/2024-03-06") if p.endswith(".csv"))
    lines = lake.read_bytes(target).decode().splitlines(keepends=True)
    assert len(lines) == 4  # header and three symbols
    lake.write_bytes(target, "".join(lines[:3]).encode())  # truncated: one bar gone

    landing_job = defs.resolve_job_def("landing_to_lake_job")
    damaged = landing_job.execute_in_process(instance=instance, tags=dict(zip(RANGE_TAGS, ("2024-03-04", "2024-03-08"))), raise_on_error=False)
    assert not damaged.success  # the blocking check stops the load
    intact = next(e for e in damaged.get_asset_check_evaluations() if e.check_name == "landing_files_intact")
    assert not intact.passed and target.rsplit("/", 1)[1] in intact.metadata["sample"].value
    assert "recorded 3 rows" in intact.metadata["sample"].value
    with duckdb.connect(str(settings.home / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM prices WHERE session = '2024-03-06'").fetchone()[0] == 3  # untouched

    lake.write_bytes(target, b"")  # emptied
    again = landing_job.execute_in_process(instance=instance, tags=dict(zip(RANGE_TAGS, ("2024-03-06", "2024-03-06"))), raise_on_error=False)
    assert not again.success

    repaired = materialize_range(defs, "2024-03-04", "2024-03-08", instance)  # lands again from the provider
    assert repaired.success
    assert next(e for e in repaired.get_asset_check_evaluations() if e.check_name == "landing_files_intact").passed
