"""live_session_schedule and live_prices_fresh (stock_assets/live_schedule.py, defs/live.py): the
schedule's ticks as Dagster's own cron iterator yields them, each evaluated on the real
definitions with the clock moved to its time, against a real (SQLite) DagsterInstance; the
freshness rule and the sensor that reports it."""

import dataclasses
import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
from dagster._utils.schedules import schedule_execution_time_iterator

from stock_assets import clock
from stock_assets.cli import location_origin
from stock_assets.definitions import build_defs
from stock_assets.live_schedule import GRACE, freshness, refresh_due, schedule_crons
from stock_assets_tests.conftest import at

NY = ZoneInfo("America/New_York")
SESSION, EARLY_CLOSE, HOLIDAY, SATURDAY = dt.date(2026, 10, 13), dt.date(2026, 11, 27), dt.date(2026, 11, 26), dt.date(2026, 10, 17)


@pytest.fixture
def dagster_instance():
    with dg.instance_for_test() as instance:  # SQLite storage in a temporary DAGSTER_HOME
        yield instance


def ticks(defs: dg.Definitions, day: dt.date) -> list[dt.datetime]:
    """The schedule's ticks on `day`, as the daemon computes them."""
    schedule = defs.resolve_schedule_def("live_session_schedule")
    start = dt.datetime.combine(day, dt.time(0), NY).timestamp()
    found = []
    for tick in schedule_execution_time_iterator(start, schedule.cron_schedule, schedule.execution_timezone):
        if tick.astimezone(NY).date() != day:
            return found
        found.append(tick)
    return found


def evaluate(defs: dg.Definitions, instance: dg.DagsterInstance, tick: dt.datetime, late: dt.timedelta = dt.timedelta(0)):
    clock.shift_to(tick + late)
    schedule = defs.resolve_schedule_def("live_session_schedule")
    return schedule.evaluate_tick(dg.build_schedule_context(instance=instance, scheduled_execution_time=tick))


def refreshed(defs: dg.Definitions, instance: dg.DagsterInstance, day: dt.date) -> list[str]:
    """New York times of the ticks of `day` that ask for a refresh."""
    return [f"{t.astimezone(NY):%H:%M}" for t in ticks(defs, day) if evaluate(defs, instance, t).run_requests]


def test_every_15_minutes_from_the_open_to_the_close_of_a_session(settings, dagster_instance, moved_clock):
    defs = build_defs(settings)
    times = refreshed(defs, dagster_instance, SESSION)
    assert times[0] == "09:45" and times[-1] == "16:00" and len(times) == 26  # 6.5 hours / 15 minutes
    assert all(int(t[3:]) % 15 == 0 for t in times)


@pytest.mark.slow
def test_an_early_close_is_the_last_tick(settings, dagster_instance, moved_clock):
    defs = build_defs(dataclasses.replace(settings, live_refresh_minutes=8))  # 13:00 is not on an 8-minute grid from 09:30
    times = refreshed(defs, dagster_instance, EARLY_CLOSE)
    assert times[0] == "09:38" and times[-1] == "13:00" and times[-2] == "12:58"
    late = evaluate(defs, dagster_instance, at(EARLY_CLOSE, 13, 6))
    assert late.skip_message == "13:06 New York: after the early close (13:00) of 2026-11-27"
    assert refreshed(defs, dagster_instance, SESSION)[-1] == "16:00"  # and on a full day, the regular close


@pytest.mark.parametrize("day, says", [(HOLIDAY, "2026-11-26 (Thursday) is not an NYSE session"), (SATURDAY, "2026-10-17 (Saturday) is not an NYSE session")])
def test_no_refresh_on_a_holiday_or_a_weekend(settings, dagster_instance, moved_clock, day, says):
    defs = build_defs(settings)
    for tick in ticks(defs, day) if day.weekday() < 5 else [at(day, 11)]:  # the crons tick on weekdays only
        result = evaluate(defs, dagster_instance, tick)
        assert not result.run_requests and result.skip_message.startswith(says)


def test_a_tick_is_skipped_not_queued_while_a_live_run_is_in_progress(settings, dagster_instance, moved_clock):
    defs = build_defs(settings)
    tick = at(SESSION, 11)
    [request] = evaluate(defs, dagster_instance, tick).run_requests
    assert request.run_key == "live-2026-10-13T11:00:00-04:00"
    job = defs.resolve_job_def("live_prices_job")
    for status in (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTED):
        run = dagster_instance.create_run_for_job(job_def=job, status=status, remote_job_origin=location_origin(job.name))
        result = evaluate(defs, dagster_instance, tick)
        assert not result.run_requests
        assert result.skip_message == f"live run {run.run_id} is still {status.value.lower()}: this tick is skipped, not queued"
        dagster_instance.report_run_failed(run)
    assert evaluate(defs, dagster_instance, tick).run_requests  # once it has ended, the next tick refreshes
    other = dagster_instance.create_run_for_job(job_def=defs.resolve_job_def("daily_prices_job"), status=dg.DagsterRunStatus.STARTED)
    assert evaluate(defs, dagster_instance, tick).run_requests, f"the daily run {other.run_id} does not hold live refreshes back"


def test_a_late_tick_is_skipped(settings, dagster_instance, moved_clock):
    defs = build_defs(settings)
    assert evaluate(defs, dagster_instance, at(SESSION, 11), late=dt.timedelta(minutes=14)).run_requests
    result = evaluate(defs, dagster_instance, at(SESSION, 11), late=dt.timedelta(minutes=16))
    assert not result.run_requests and "16 minutes late: skipped" in result.skip_message


def test_the_cron_strings_tick_on_every_period_and_at_both_closes():
    assert schedule_crons(15)[0] == "45 9 * * 1-5" and schedule_crons(15)[-1] == "0 16 * * 1-5"
    assert schedule_crons(390) == ["0 13 * * 1-5", "0 16 * * 1-5"]  # once a session, at the close (13:00 for early closes)
    assert refresh_due(at(SESSION, 13), 390) == "13:00 New York: not one of the session's 390-minute ticks from the open"
    assert refresh_due(at(SESSION, 16), 390) is None and refresh_due(at(EARLY_CLOSE, 13), 390) is None
    assert refresh_due(at(SESSION, 9, 30), 15) == "09:30 New York: before the open (09:30)"


SYMBOLS = ("AAPL", "MSFT")


def test_freshness_during_market_hours_only():
    minutes, allowed = 15, dt.timedelta(minutes=15) + GRACE
    night = freshness({}, SYMBOLS, at(SESSION, 20), minutes)
    assert night.passed and not night.in_session
    assert freshness({}, SYMBOLS, at(HOLIDAY, 11), minutes).summary == "no NYSE session in progress: nothing to refresh"
    early = freshness({}, SYMBOLS, at(SESSION, 9, 45), minutes)
    assert early.passed and early.summary == "2026-10-13: the first refresh is due by 09:50 New York"
    assert not freshness({}, SYMBOLS, at(SESSION, 9, 51), minutes).passed  # nothing yet, 21 minutes after the open
    fresh = {s: at(SESSION, 11).astimezone(dt.UTC) for s in SYMBOLS}
    assert freshness(fresh, SYMBOLS, at(SESSION, 11) + allowed, minutes).passed
    stale = freshness(fresh | {"MSFT": at(SESSION, 10, 30)}, SYMBOLS, at(SESSION, 11, 1), minutes)
    assert not stale.passed and stale.stale == ("MSFT",) and stale.summary == "2026-10-13: older than 20 minutes: MSFT (10:30)"
    missing = freshness({"AAPL": at(SESSION, 11)}, SYMBOLS, at(SESSION, 11, 1), minutes)
    assert not missing.passed and missing.summary == "2026-10-13: older than 20 minutes: MSFT (none)"
    delayed = freshness(fresh, SYMBOLS, at(SESSION, 11, 30), minutes, delay=dt.timedelta(minutes=15))
    assert delayed.passed  # a feed 15 minutes behind may be 35 minutes old
    assert freshness(fresh, SYMBOLS, at(EARLY_CLOSE, 13, 30), minutes).passed  # after an early close


def test_the_sensor_reports_freshness_while_the_market_is_open_and_once_when_it_closes(settings, dagster_instance, moved_clock):
    defs = build_defs(settings)
    sensor = defs.resolve_sensor_def("live_prices_freshness_sensor")

    def tick(moment: dt.datetime, cursor: str | None):
        clock.shift_to(moment)
        with dg.build_sensor_context(instance=dagster_instance, cursor=cursor, definitions=defs, resources=defs.resources) as context:
            return sensor.evaluate_tick(context)

    opened = tick(at(SESSION, 11), None)
    [evaluation] = opened.asset_events
    assert (evaluation.check_name, evaluation.passed, opened.cursor) == ("live_prices_fresh", False, "open")  # nothing refreshed yet
    assert evaluation.metadata["stale_symbols"].value == "AAPL, MSFT, IBM" and evaluation.severity == dg.AssetCheckSeverity.WARN
    closed = tick(at(SESSION, 16, 5), opened.cursor)
    assert [e.passed for e in closed.asset_events] == [True] and closed.cursor == "closed"
    again = tick(at(SESSION, 16, 10), closed.cursor)
    assert not again.asset_events and again.skip_message == "no NYSE session in progress: nothing to be fresh for"


def test_the_sensor_judges_a_delayed_feed_by_its_delay(settings, dagster_instance, moved_clock, monkeypatch):
    defs = build_defs(dataclasses.replace(settings, provider="polygon", provider_base_url="http://127.0.0.1:9"))
    clock.shift_to(at(SESSION, 9, 55))  # 25 minutes after the open: a 15-minute feed's first refresh is due by 10:05

    def evaluate_sensor():
        with dg.build_sensor_context(instance=dagster_instance, definitions=defs, resources=defs.resources) as context:
            [evaluation] = defs.resolve_sensor_def("live_prices_freshness_sensor").evaluate_tick(context).asset_events
        return evaluation

    monkeypatch.setenv("POLYGON_API_KEY", "not-a-real-key")  # no request is made: the delay is the client's
    delayed = evaluate_sensor()
    assert delayed.passed and delayed.metadata["summary"].value == "2026-10-13: the first refresh is due by 10:05 New York"
    monkeypatch.delenv("POLYGON_API_KEY")  # no key, no refresh: stale, said, and the sensor does not break
    assert not evaluate_sensor().passed
