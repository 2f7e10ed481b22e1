"""A month of operation with no one watching, October 2026 to the first week of November, on the
real definitions: the daily schedule's tick each session evening, the weekly maintenance each
Sunday, files dropped into landing/, the stale-indicators sensor, and faults on some days. The
invariants (stock_assets_tests/month.py) hold at the end of every day."""

import dataclasses
import datetime as dt
import json

import dagster as dg
import pytest

from stock_assets import clock
from stock_assets.calendar import sessions_between
from stock_assets_tests.month import Month, reference, vendor_file

FIRST, LAST = dt.date(2026, 10, 1), dt.date(2026, 11, 6)  # sessions closed in real time: full bars
SESSIONS = sessions_between(FIRST, LAST)
DAYS = [FIRST + dt.timedelta(days=i) for i in range((LAST - FIRST).days + 1)]


def month_settings(settings, home) -> object:
    return dataclasses.replace(settings, home=home, start=str(FIRST), lake_url=str(home / "lake"),
                               warehouse_url=f"duckdb:///{home / 'warehouse.duckdb'}", slack_webhook_set=True)  # fmt: skip


@pytest.fixture
def moved_clock():
    yield clock
    clock.reset()


def test_a_month_of_operation(settings, tmp_path, fake_api, monkeypatch, moved_clock):
    fake_api.route("/hook", b"ok")
    monkeypatch.setenv("STOCK_ASSETS_SLACK_WEBHOOK_URL", f"{fake_api.url}/hook")
    clean = reference(month_settings(settings, tmp_path / "reference"), SESSIONS)
    ours = month_settings(settings, tmp_path / "home")

    def alerts() -> list[str]:
        return [json.loads(r.body)["text"] for r in fake_api.requests if r.path == "/hook"]

    with dg.DagsterInstance.ephemeral() as instance:
        month = Month(ours, instance, clean)
        for day in DAYS:
            if day.weekday() == 6:
                result = month.maintenance_tick(day)
                assert result.success, f"{day}: lake maintenance failed"
                month.check_maintained()
            if day in SESSIONS:
                result = month.daily_tick(day)
                assert result.success, f"{day}: the daily run failed"
            if day == dt.date(2026, 10, 6):  # a re-delivery of the first two sessions: same bars, nothing changes
                month.drop("vendor_redelivery.csv", vendor_file(ours.symbols, SESSIONS[:2]))
            month.settle()
            month.check(alerts())
