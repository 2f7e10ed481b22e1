"""Running unattended: the daily schedule across a holiday and a DST change, alerts delivered
to a real HTTP server, a failing provider retried then succeeding, backfill chunking."""

import dataclasses
import datetime as dt
import json
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
import pytest

from stock_assets.alerts import AlertsResource
from stock_assets.cli import backfill_chunks, materialize_range
from stock_assets.defs.alerts import run_failure_alert_sensor
from stock_assets.defs.schedules import daily_prices_job_schedule
from stock_assets.partitions import trading_sessions_partitions
from stock_assets_tests.conftest import defs_for, fixture_bytes, with_faults
from stock_assets_tests.fake_api import Reply

NY = ZoneInfo("America/New_York")
trading_sessions = trading_sessions_partitions("2012-01-03")
FIRST, LAST = "2024-01-02", "2024-01-05"


def test_the_schedule_runs_each_session_of_a_month_with_a_holiday_and_a_dst_change():
    # March 2024: clocks go forward on Sunday the 10th; Good Friday, the 29th, is an NYSE holiday.
    ticks = [dt.datetime(2024, 3, d, 18, 30, tzinfo=NY) for d in range(1, 32) if dt.date(2024, 3, d).weekday() < 5]
    requested, skipped = {}, []
    for tick in ticks:
        result = daily_prices_job_schedule(dg.build_schedule_context(scheduled_execution_time=tick))
        if isinstance(result, dg.SkipReason):
            skipped.append(tick.date())
        else:
            requested[tick.astimezone(dt.UTC).strftime("%H:%M")] = requested.get(tick.astimezone(dt.UTC).strftime("%H:%M"), 0) + 1
            assert result.partition_key == str(tick.date()) and result.run_key == str(tick.date())
            assert result.partition_key in trading_sessions.get_partition_keys(current_time=tick)
    assert skipped == [dt.date(2024, 3, 29)]
    assert requested == {"23:30": 6, "22:30": 14}  # EST before the 10th, EDT after: still 18:30 in New York
    sessions = pd.bdate_range("2024-03-01", "2024-03-31").difference(pd.DatetimeIndex(["2024-03-29"]))
    assert sum(requested.values()) == len(sessions) == 20


def alerts_to(url: str) -> dict:
    return {"alerts": AlertsResource(slack_webhook_url=url, ui_url="http://dagster.example:3000")}


@pytest.mark.slow
def test_a_failed_run_and_its_failed_checks_are_posted_to_slack(settings, instance, fake_api):
    fake_api.route("/hook", b"ok")
    result = materialize_range(defs_for(with_faults(settings, "ohlc")), FIRST, LAST, instance)
    assert not result.success
    run = instance.get_run_by_id(result.run_id)
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
    context = dg.build_run_status_sensor_context("run_failure_alert_sensor", failure, instance, run, resources=alerts_to(f"{fake_api.url}/hook"))
    run_failure_alert_sensor(context.for_run_failure())
    run_text, check_text = (json.loads(r.body)["text"] for r in fake_api.requests)
    assert f"sessions {FIRST}..{LAST}" in run_text and "__ASSET_JOB" in run_text and "dq_report" in run_text
    assert f"http://dagster.example:3000/runs/{result.run_id}" in run_text
    assert "`prices_ohlc_consistent` failed (ERROR) on `dq_report`" in check_text
    assert f"sessions {FIRST}..{LAST}: 1 failing rows in 1 sessions; sample AAPL@{LAST}" in check_text
    assert f"/runs/{result.run_id}" in check_text


def test_an_undeliverable_alert_is_logged_not_raised(caplog):
    secret_hook = "http://127.0.0.1:9/services/T000/B000/SECRETTOKEN"  # nothing listens on port 9
    assert AlertsResource(slack_webhook_url=secret_hook, timeout_seconds=2).send("hello") is False
    assert "alert delivery failed" in caplog.text and "SECRETTOKEN" not in caplog.text


@pytest.mark.slow
def test_a_failing_provider_step_is_retried_then_succeeds(settings, instance, fake_api, monkeypatch):
    monkeypatch.setenv("ALPHAVANTAGE_API_KEY", "k")
    body = fixture_bytes("alphavantage/time_series_daily_MSFT_compact_demo_2019_stockpoint.json")
    fake_api.route("/query", Reply(b"down", 503), Reply(b"down", 503), body)
    http = dataclasses.replace(settings, provider="alphavantage", symbols=("MSFT",), provider_base_url=fake_api.url,
                               requests_per_minute=6000, http_retries=0)
    result = materialize_range(defs_for(http), "2019-07-01", "2019-07-03", instance)
    assert result.success
    retries = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert len(retries) == 2 and len(fake_api.requests) == 3


def test_backfills_are_chunked_to_fit_a_run(settings):
    ten_years = backfill_chunks(settings, "2015-01-02", "2024-12-31")
    assert len(ten_years) == 1  # 3 symbols of daily bars: one run
    minute = dataclasses.replace(settings, interval="1min", symbols=tuple(f"S{i}" for i in range(100)))
    chunks = backfill_chunks(minute, "2024-01-02", "2024-06-28")  # 124 sessions of 100 x 390 bars
    sizes = [len(trading_sessions.get_partition_keys_in_range(dg.PartitionKeyRange(a, b))) for a, b in chunks]
    assert sizes == [51, 51, 22]  # 2,000,000 // (100 * 390) = 51 sessions a run
    covered = [k for a, b in chunks for k in trading_sessions.get_partition_keys_in_range(dg.PartitionKeyRange(a, b))]
    assert covered == trading_sessions.get_partition_keys_in_range(dg.PartitionKeyRange("2024-01-02", "2024-06-28"))
