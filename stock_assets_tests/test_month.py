"""A month of operation with no one watching, 5 October to 2 November 2026 (21 sessions, four
Sundays, the end of daylight saving time), on the real definitions: the daily schedule's tick
each session evening, the weekly maintenance each Sunday, files dropped into landing/, the
stale-indicators sensor, and a fault on some days. The invariants (month.py) hold at the end of
every day something ran; on a fault day the alert is read and acted on, as an operator would.

    day          what happens
    Mon Oct  5   first daily run
    Tue Oct  6   a vendor re-delivers Oct 5 (same bars: nothing changes) and drops a malformed file
    Wed Oct  7   FULL DISK: the run fails naming it; the disk is freed and the session run again
    Fri Oct  9   OUTAGE: the provider has no IBM: the run fails naming IBM, production stays
    Mon Oct 12   the provider is back: Oct 9 is run again, then Oct 12; Oct 9 is AAPL's 2:1 split
                 ex-date: that run restates AAPL's earlier sessions and says so (log, metadata, LATEST)
    Tue Oct 13   the daemon is down: no tick
    Wed Oct 14   LATE OUT-OF-ORDER WINDOW: Oct 14 loads, then Oct 13 arrives as a dropped file
    Thu Oct 15   LIVE: live_session_schedule's 11:00 tick refreshes live_prices; prices untouched;
                 the evening run loads the session and its live rows are gone
    Mon Oct 19   KILLED RUN: a `dagster asset materialize` of the session is SIGKILLed mid-run;
                 the next run on that instance fails it (and is not blocked by it)
    Wed Oct 21   SYMBOL ADDED: NVDA joins STOCK_ASSETS_SYMBOLS and a run tagged
                 stock_assets/symbols=NVDA loads its history; the others' rows stay as they were
    Fri Oct 23   NVDA's $0.08 dividend: its history (loaded on Oct 21) is restated
    Mon Oct 26   DAMAGED TABLE: lake/deduped's newest file is torn; the run fails naming it;
                 lake_repair_job rebuilds it and the session is run again
    Sun Nov  1   maintenance at 03:00 as clocks go back; Mon Nov 2 runs at 18:30 EST
"""

import dataclasses
import datetime as dt
import json
import os
import shutil
import subprocess
import warnings
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from stock_assets import clock
from stock_assets.calendar import sessions_between
from stock_assets.defs.common import RANGE_TAGS
from stock_assets.instance import fail_dead_runs
from stock_assets.lake import delta
from stock_assets.settings import Settings
from stock_assets.window import SYMBOLS_TAG
from stock_assets_tests.month import (
    Month,
    References,
    Run,
    step_errors,
    vendor_file,
    warehouse_tables,
)
from stock_assets_tests.month_faults import damage_newest_file, fill_disk, kill_after_step, start_materialize

pytestmark = pytest.mark.slow

FIRST, LAST = dt.date(2026, 10, 5), dt.date(2026, 11, 2)  # sessions closed in real time: full bars
SESSIONS = sessions_between(FIRST, LAST)
DAYS = [FIRST + dt.timedelta(days=i) for i in range((LAST - FIRST).days + 1)]
ROOT = Path(__file__).resolve().parents[1]
FULL_DISK, OUTAGE, PROVIDER_BACK = dt.date(2026, 10, 7), dt.date(2026, 10, 9), dt.date(2026, 10, 12)
DAEMON_DOWN, LATE_WINDOW, KILLED, DAMAGED = dt.date(2026, 10, 13), dt.date(2026, 10, 14), dt.date(2026, 10, 19), dt.date(2026, 10, 26)
SYMBOL_ADDED, ADDED = dt.date(2026, 10, 21), "NVDA"
LIVE = dt.date(2026, 10, 15)
# The synthetic schedule's actions in the month, and the loaded sessions each restates when first loaded.
SPLIT = {"symbol": "AAPL", "action": "2:1 split on 2026-10-09", "sessions": 4}  # Oct 5-8
DIVIDEND_DAY, DIVIDEND = dt.date(2026, 10, 23), {"symbol": "NVDA", "action": "$0.08 dividend on 2026-10-23", "sessions": 14}  # Oct 5-22


def month_settings(settings: Settings, home: Path) -> Settings:
    return dataclasses.replace(settings, home=home, start=str(FIRST), lake_url=str(home / "lake"),
                               warehouse_url=f"duckdb:///{home / 'warehouse.duckdb'}", slack_webhook_set=True)  # fmt: skip


@pytest.fixture
def small_disk(tmp_path):
    """The month's home on a 64 MiB tmpfs of its own, so that a full disk is a real one. Where
    none can be mounted (not root) the month runs without its full-disk day, loudly; with CI set
    it fails instead."""
    home = tmp_path / "home"
    home.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(home)], capture_output=True, check=False).returncode == 0
    if not mounted:
        if os.environ.get("CI"):
            pytest.fail("cannot mount a tmpfs here (not root?): the simulated month's full-disk day cannot run")
        warnings.warn("cannot mount a tmpfs here (not root?): the simulated month runs without its full-disk day", stacklevel=1)
    yield home, mounted
    if mounted:
        subprocess.run(["umount", "-l", str(home)], check=False)


@pytest.fixture
def moved_clock():
    yield clock
    clock.reset()


def test_a_month_of_operation(settings, tmp_path, fake_api, monkeypatch, moved_clock, small_disk):
    fake_api.route("/hook", b"ok")
    monkeypatch.setenv("STOCK_ASSETS_SLACK_WEBHOOK_URL", f"{fake_api.url}/hook")
    every_symbol = dataclasses.replace(settings, symbols=(*settings.symbols, ADDED))
    clean = References(lambda name: month_settings(every_symbol, tmp_path / name), SESSIONS)
    home, mounted = small_disk
    ours = month_settings(settings, home)

    def alerts() -> list[str]:
        return [json.loads(r.body)["text"] for r in fake_api.requests if r.path == "/hook"]

    def failed_naming(result: dg.ExecuteInProcessResult, *names: str) -> None:
        """The run failed, its failed step says what (each of `names`), and an alert was posted for it."""
        assert not result.success, f"{month.day}: the run succeeded"
        month.settle()
        said = step_errors(result)
        assert all(n in said for n in names), f"{month.day}: the failure does not name {names}: {said}"
        [alert] = [a for a in alerts() if f"/runs/{result.run_id}" in a and "run failed" in a]
        assert all(n in alert for n in names), f"{month.day}: the alert does not say {names}: {alert}"

    with dg.DagsterInstance.ephemeral() as instance:
        month = Month(ours, instance, clean)
        for day in DAYS:
            if day.weekday() == 5:
                continue  # nothing runs on Saturdays
            if day.weekday() == 6:
                assert month.maintenance_tick(day).success, f"{day}: lake maintenance failed"
                month.check_maintained()
            elif day == FULL_DISK and mounted:
                filler = fill_disk(home)
                failed_naming(month.daily_tick(day), "No space left on device", "the disk is full", str(home))
                filler.unlink()  # the operator frees the disk and runs the session again
                assert month.rerun(day).success
            elif day == OUTAGE:
                failed_naming(month.daily_tick(day, month_defs(ours, "missing_symbol")), "IBM")
            elif day == PROVIDER_BACK:
                clock.shift_to(dt.datetime.combine(day, dt.time(9), dt.UTC))
                restating = month.rerun(OUTAGE)
                assert restating.success, "the outage's session, run again once the provider is back"
                said_restated(month, restating, SPLIT, "AAPL: 2:1 split on 2026-10-09 — 4 earlier sessions restated, indicators recomputed")
                assert month.daily_tick(day).success
            elif day == DAEMON_DOWN:
                continue  # no tick: its session arrives late, tomorrow, as a dropped file
            elif day == LATE_WINDOW:
                assert month.daily_tick(day).success
                month.settle()
                month.check(alerts())
                month.drop("vendor_late_window.csv", vendor_file(ours.symbols, [DAEMON_DOWN]))
            elif day == KILLED:
                killed_run_day(month, ours, day, alerts)
            elif day == SYMBOL_ADDED:
                assert month.daily_tick(day).success
                month.settle()
                month.check(alerts())
                ours = symbol_added(month, day)
            elif day == DAMAGED:
                torn = damage_newest_file(month.lake, "lake/deduped")
                failed_naming(month.daily_tick(day), "lake/deduped", torn.rsplit("/", 1)[-1])
                assert month.run("lake_repair_job", run_config={"ops": {"rebuild_lake_table": {"config": {"table": "lake/deduped"}}}}).success
                assert month.rerun(day).success
            elif day in SESSIONS:
                if day == LIVE:
                    month.live_tick(day)  # month.check, after the evening run: no live row of a loaded session
                result = month.daily_tick(day)
                assert result.success, f"{day}: the daily run failed"
                if day == DIVIDEND_DAY:
                    said_restated(month, result, DIVIDEND, "NVDA: $0.08 dividend on 2026-10-23 — 14 earlier sessions restated, indicators recomputed")
                if day == dt.date(2026, 10, 6):
                    month.drop("vendor_redelivery.csv", vendor_file(ours.symbols, SESSIONS[:1]))
                    month.drop("vendor_garbled.csv", b"\x00\x01 not a CSV\n")
            month.settle()
            month.check(alerts())
        assert sorted(set(warehouse_tables(ours)["prices"]["session"].to_pylist())) == SESSIONS
        assert month.requested["landing_files_sensor"] == 3 and month.requested["landed_files_sensor"] == 2  # the garbled file lands nothing
        print(f"the month: {len(month.runs)} runs, {sum(r.seconds for r in month.runs):.0f} s in runs; sensor requests {dict(month.requested)}")


def month_defs(settings: Settings, *faults: str) -> dg.Definitions:
    from stock_assets.definitions import build_defs

    return build_defs(dataclasses.replace(settings, synthetic_faults=faults))


def killed_run_day(month: Month, settings: Settings, day: dt.date, alerts) -> None:
    """The session's run started by hand (`dagster asset materialize`) on the default (SQLite)
    instance and SIGKILLed once prices are in the warehouse, before its indicators. The
    stale-indicators sensor waits while the dead run looks alive; the check every start makes
    (`python -m stock_assets.instance`, our commands, each run's executor) fails it, the failure is
    alerted, and the sensor then recomputes the indicators the dead run never wrote."""
    dagster_home = settings.home / "dagster"
    dagster_home.mkdir(exist_ok=True)
    shutil.copy(ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    month.day = day
    clock.shift_to(dt.datetime.combine(day, dt.time(22, 30), dt.UTC))
    with dg.DagsterInstance.from_config(str(dagster_home)) as default:
        month.sensor("run_failure_alert_sensor", default)
        process = start_materialize(settings, day, dagster_home, STOCK_ASSETS_SLACK_WEBHOOK_URL=os.environ["STOCK_ASSETS_SLACK_WEBHOOK_URL"])
        killed = kill_after_step(process, default, "redshift_table")
        month.runs.append(Run(day, "daily_prices_job", killed, 0.0, False, None))
        stale = day not in set(warehouse_tables(settings)["indicators"]["session"].to_pylist())  # unless the kill came after them
        assert month.sensor("stale_indicators_sensor", default) == [], "the sensor did not wait for the run that looks alive"
        assert fail_dead_runs(default, say=lambda _: None) == [killed]
        assert default.get_run_by_id(killed).status == dg.DagsterRunStatus.FAILURE
        month.sensor("run_failure_alert_sensor", default)
        assert any(f"/runs/{killed}" in a for a in alerts()), "the killed run's failure was not alerted"
        requests = month.sensor("stale_indicators_sensor", default)
        assert len(requests) == stale, f"stale indicators ({stale}) but the sensor asked for {requests}"
        for request in requests:
            assert month.request(request, "indicators_job", instance=default).success


def said_restated(month: Month, result: dg.ExecuteInProcessResult, item: dict, text: str) -> None:
    """The run that first loads an action's ex-date restates the symbol's earlier sessions and says
    so: in its log, in corporate_actions' metadata and in the published manifest."""
    logged = [r.user_message for r in month.instance.all_logs(result.run_id) if r.is_dagster_event is False]
    assert text in logged, f"{month.day}: the run's log does not say {text!r}: {logged}"
    [meta] = [m.metadata for m in result.asset_materializations_for_node("corporate_actions")]
    assert meta["restatement"].value == text and meta["restated"].value == [item], f"{month.day}: corporate_actions says {meta}"
    latest = json.loads(month.lake.read_bytes("published/LATEST"))
    assert latest.get("restated") == [item] and latest["run_id"] == result.run_id, f"{month.day}: published/LATEST says {latest}"


def everything_but(settings: Settings, month: Month, symbol: str) -> dict[str, list]:
    """Every warehouse table's rows and lake/deduped's, but `symbol`'s (dq_report: but the rows of
    a window scoped to it), whole (ingested_at included)."""
    path = settings.warehouse_url.removeprefix("duckdb:///")
    with duckdb.connect(path, read_only=True) as con:
        names = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall()]
        rows = {}
        for table in names:
            columns = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]
            by = next((c for c in ("symbol", "scope") if c in columns), None)
            where = f" WHERE {by} <> ?" if by else ""
            if table.endswith("_loads"):  # a log of each session's loads, of every symbol's rows: the sessions' counts
                rows[table] = con.execute(f"SELECT session, rows FROM {table} ORDER BY ALL").fetchall()
            else:
                rows[table] = con.execute(f"SELECT * FROM {table}{where} ORDER BY ALL", [symbol] if by else []).fetchall()
    deduped = DeltaTable(delta.table_uri(month.lake, "lake/deduped")).to_pyarrow_table()
    rows["lake/deduped"] = sorted(map(str, deduped.filter(pc.not_equal(deduped["symbol"], symbol)).to_pylist()))
    return rows


def symbol_added(month: Month, day: dt.date) -> Settings:
    """NVDA joins the universe (the code location redeployed with it) and its history so far is
    loaded by one run tagged stock_assets/symbols=NVDA, as operations.md says; nothing of the
    other symbols changes. From here on the daily runs and the invariants include it."""
    before = everything_but(month.settings, month, ADDED)
    month.use(dataclasses.replace(month.settings, symbols=(*month.settings.symbols, ADDED)))
    result = month.run("daily_prices_job", tags={RANGE_TAGS[0]: str(FIRST), RANGE_TAGS[1]: str(day), SYMBOLS_TAG: ADDED})
    assert result.success, f"{day}: the run scoped to {ADDED} failed: {step_errors(result)}"
    after = everything_but(month.settings, month, ADDED)
    for table in before:
        want = [(session, rows + 1) for session, rows in before[table]] if table.endswith("_loads") else before[table]
        assert after[table] == want, f"{day}: the run scoped to {ADDED} changed other symbols' rows of {table}"
    assert set(after) == set(before), f"{day}: the run scoped to {ADDED} made tables {set(after) - set(before)}"
    prices = warehouse_tables(month.settings)["prices"]
    history = prices.filter(pc.equal(prices["symbol"], ADDED))["session"].to_pylist()
    assert history == [s for s in SESSIONS if s <= day], f"{day}: {ADDED}'s history is {history}"  # and equals the clean run's: month.check
    return month.settings
