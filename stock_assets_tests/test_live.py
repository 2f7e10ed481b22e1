"""live_prices end to end (stock_assets/live.py, defs/live.py): the real definitions and the
synthetic provider, time moved with stock_assets.clock (or a process run under `faketime`), the
DuckDB warehouse and a local lake, PostgreSQL for the one-transaction replacement, real processes
for the lock. A refresh at 11:00 New York keeps every bar ended by 11:00 and none later and
leaves `prices` and the final lake tables as they were; 11:15's replaces it; a holiday and a
weekend fetch nothing; the daily run's load of the session removes its live rows."""

import dataclasses
import datetime as dt
import os
import re
import subprocess
import sys
import time
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from stock_assets import clock
from stock_assets.cli import materialize_range
from stock_assets.definitions import build_defs
from stock_assets.instance import PID_TAG
from stock_assets.lake import delta
from stock_assets.lake.storage import LakeStorage
from stock_assets.live import LAKE_PATH, LIVE_SCHEMA, drop_final, fetch_live, read_live, store_live
from stock_assets.providers.synthetic import SyntheticProvider, synthetic_intraday
from stock_assets.warehouse.postgres import PostgresWarehouse
from stock_assets.warehouse.warehouse import warehouse_for_url
from stock_assets_tests.conftest import at
from stock_assets_tests.test_cli import ROOT, environment

NY = ZoneInfo("America/New_York")
SESSION, BEFORE, HOLIDAY, SATURDAY = dt.date(2026, 10, 13), dt.date(2026, 10, 12), dt.date(2026, 11, 26), dt.date(2026, 10, 17)
FINAL_TABLES = ("lake/prices", "lake/deduped", "lake/dq_report", "lake/indicators", "lake/corporate_actions")


def refresh(defs: dg.Definitions, instance: dg.DagsterInstance, moment: dt.datetime) -> dg.ExecuteInProcessResult:
    clock.shift_to(moment)
    result = defs.resolve_job_def("live_prices_job").execute_in_process(instance=instance, raise_on_error=False)
    assert result.success
    return result


def said(instance: dg.DagsterInstance, result) -> list[str]:
    return [r.user_message for r in instance.all_logs(result.run_id) if r.user_message.startswith("live_prices: ")]


def warehouse_rows(settings, table: str) -> pa.Table:
    with duckdb.connect(settings.warehouse_url.removeprefix("duckdb:///"), read_only=True) as con:
        return con.sql(f"SELECT * FROM {table} ORDER BY ALL").to_arrow_table()


def final_state(settings) -> tuple:
    """`prices` as it is and the version of each final lake table."""
    lake = LakeStorage(settings.lake_url)
    return warehouse_rows(settings, "prices"), {p: delta.open_table(lake, p).version() for p in FINAL_TABLES}


def expected_bars(symbol: str, until: dt.datetime) -> pa.Table:
    """The synthetic provider's 5min bars of SESSION that ended by `until`."""
    bars = synthetic_intraday(symbol, SESSION, "5min")
    return bars[bars["ts"] + dt.timedelta(minutes=5) <= until]


def assert_rows_up_to(rows: pa.Table, symbols, until: dt.datetime) -> None:
    """Every symbol: exactly the 5min bars ended by `until` (values as the provider made them) and
    a 1d bar aggregated from them, all as of `until` (and the few seconds the refresh took)."""
    assert rows.column_names == LIVE_SCHEMA.names
    assert sorted(set(rows["symbol"].to_pylist())) == sorted(symbols)
    for symbol in symbols:
        mine = rows.filter(pc.equal(rows["symbol"], symbol)).to_pandas()
        bars, daily = mine[mine["interval"] == "5min"], mine[mine["interval"] == "1d"]
        want = expected_bars(symbol, until)
        assert list(bars["ts"]) == list(want["ts"]) and bars["ts"].max() + dt.timedelta(minutes=5) == until  # up to `until`, none later
        for column in ("open", "high", "low", "close", "volume"):
            assert list(bars[column]) == list(want[column]), f"{symbol} {column}"
        assert len(daily) == 1 and daily["ts"].iloc[0] == at(SESSION, 9, 30)
        assert (daily["open"].iloc[0], daily["high"].iloc[0], daily["low"].iloc[0], daily["close"].iloc[0], daily["volume"].iloc[0]) == (
            want["open"].iloc[0], want["high"].max(), want["low"].min(), want["close"].iloc[-1], want["volume"].sum())  # fmt: skip
    as_of = set(rows["as_of"].to_pylist())
    assert len(as_of) == 1 and until <= as_of.pop() < until + dt.timedelta(minutes=1)


@pytest.mark.slow
def test_a_session_refreshed_at_11_then_11_15_then_loaded_after_the_close(settings, moved_clock):
    defs = build_defs(settings)
    lake = LakeStorage(settings.lake_url)
    with dg.DagsterInstance.ephemeral() as instance:
        clock.shift_to(at(BEFORE, 18, 30))
        assert materialize_range(defs, str(BEFORE), str(BEFORE), instance).success  # history up to the day before
        before = final_state(settings)

        eleven = refresh(defs, instance, at(SESSION, 11))
        [materialized] = eleven.asset_materializations_for_node("live_prices")
        assert materialized.metadata["as_of"].value == "2026-10-13 11:00 New York" and materialized.metadata["intraday_bars"].value == 3 * 18
        assert [c.passed for c in eleven.get_asset_check_evaluations()] == [True]  # live_prices_fresh
        page = settings.home / "reports" / "dashboard.html"
        assert materialized.metadata["dashboard"].value == str(page) and "as of 11:00 New York" in page.read_text()  # redrawn with today so far
        assert_rows_up_to(warehouse_rows(settings, "live_prices"), settings.symbols, at(SESSION, 11))
        order = [("symbol", "ascending"), ("interval", "ascending"), ("ts", "ascending")]
        assert read_live(lake).to_pylist() == warehouse_rows(settings, "live_prices").sort_by(order).to_pylist()
        after_eleven = final_state(settings)
        assert after_eleven[0].equals(before[0]) and after_eleven[1] == before[1], "a live refresh touched prices or a final lake table"
        version = DeltaTable(delta.table_uri(lake, LAKE_PATH)).version()

        refresh(defs, instance, at(SESSION, 11, 15))
        rows = warehouse_rows(settings, "live_prices")
        assert_rows_up_to(rows, settings.symbols, at(SESSION, 11, 15))  # 11:00's rows replaced, none left
        assert DeltaTable(delta.table_uri(lake, LAKE_PATH)).version() == version + 1  # one commit
        assert read_live(lake).num_rows == rows.num_rows == 3 * 22
        assert final_state(settings)[1] == before[1]

        clock.shift_to(at(SESSION, 18, 30))  # the daily run loads the session's final bars
        daily = defs.resolve_job_def("daily_prices_job").execute_in_process(instance=instance, partition_key=str(SESSION), raise_on_error=False)
        assert daily.success
        assert warehouse_rows(settings, "live_prices").num_rows == 0 and read_live(lake).num_rows == 0
        logged = [r.user_message for r in instance.all_logs(daily.run_id) if r.user_message.startswith("live_prices:")]
        assert logged == [f"live_prices: {3 * 22} rows of {SESSION}..{SESSION} removed: their final bars are loaded"]
        prices = warehouse_rows(settings, "prices")
        assert sorted(prices.filter(pc.equal(prices["session"], SESSION))["symbol"].to_pylist()) == sorted(settings.symbols)
        assert warehouse_rows(settings, "prices").filter(pc.not_equal(prices["session"], SESSION)).equals(before[0])


class Recording(SyntheticProvider):
    """The synthetic provider, noting each fetch it is asked for."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.asked = []

    def fetch(self, symbols, sessions, interval):
        self.asked.append((tuple(symbols), tuple(sessions), interval))
        return super().fetch(symbols, sessions, interval)


@pytest.mark.parametrize("moment", [at(HOLIDAY, 11), at(SATURDAY, 11), at(SESSION, 9, 29), at(SESSION, 16, 1)])
def test_nothing_is_fetched_outside_a_session(settings, moved_clock, moment):
    provider = Recording(clock=lambda: moment)
    fetched = fetch_live(provider, settings.symbols, "5min", moment)
    assert provider.asked == [] and fetched.session is None and fetched.rows.num_rows == 0
    assert fetched.notes == [f"no NYSE session in progress at {moment:%Y-%m-%d %H:%M} New York: nothing fetched"]
    with dg.DagsterInstance.ephemeral() as instance:
        result = refresh(build_defs(settings), instance, moment)
        assert result.get_asset_materialization_events() == [] and said(instance, result) == [f"live_prices: {fetched.notes[0]}"]
    assert delta.open_table(LakeStorage(settings.lake_url), LAKE_PATH) is None
    assert not (settings.home / "warehouse.duckdb").exists()


def test_the_close_itself_refreshes_the_whole_day_and_an_early_close_ends_sooner(settings):
    full = fetch_live(SyntheticProvider(clock=lambda: at(SESSION, 16)), ["AAPL"], "5min", at(SESSION, 16))
    assert full.rows.num_rows == 78 + 1
    early = dt.date(2026, 11, 27)
    short = fetch_live(SyntheticProvider(clock=lambda: at(early, 13)), ["AAPL"], "30min", at(early, 13))
    assert short.session == early and short.rows.num_rows == 7 + 1  # 09:30 .. 12:30, and its day so far
    hourly = fetch_live(SyntheticProvider(clock=lambda: at(SESSION, 16)), ["AAPL"], "60min", at(SESSION, 16))
    assert hourly.rows.num_rows == 7 + 1  # 15:30's bar ends at the close


def test_a_symbol_that_fails_keeps_its_last_rows_and_is_named(settings, moved_clock):
    with dg.DagsterInstance.ephemeral() as instance:
        refresh(build_defs(settings), instance, at(SESSION, 11))
        faulty = build_defs(dataclasses.replace(settings, synthetic_faults=("missing_symbol",)))  # the last symbol, IBM
        result = refresh(faulty, instance, at(SESSION, 11, 15))
        [materialized] = result.asset_materializations_for_node("live_prices")
        assert materialized.metadata["not_refreshed"].value == "IBM"
        assert "live_prices: IBM not refreshed: no bars returned (synthetic fault missing_symbol)" in said(instance, result)
    rows = warehouse_rows(settings, "live_prices")
    as_of = {s: {a.astimezone(NY).strftime("%H:%M") for a in rows.filter(pc.equal(rows["symbol"], s))["as_of"].to_pylist()} for s in settings.symbols}
    assert as_of == {"AAPL": {"11:15"}, "MSFT": {"11:15"}, "IBM": {"11:00"}}  # IBM's 11:00 rows kept, as of 11:00


def test_a_provider_with_no_live_prices_fails_the_refresh_naming_every_symbol(settings, tmp_path, moved_clock):
    folder = tmp_path / "csv"
    folder.mkdir()
    csvdir = dataclasses.replace(settings, provider="csvdir", csvdir_url=str(folder))
    clock.shift_to(at(SESSION, 11))
    with dg.DagsterInstance.ephemeral() as instance:
        result = build_defs(csvdir).resolve_job_def("live_prices_job").execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    [failure] = [e.step_failure_data.error.message for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert "no symbol could be refreshed for 2026-10-13" in failure and all(f"{s}: " in failure for s in settings.symbols)


@pytest.mark.slow
def test_a_session_window_run_does_not_refresh_live_prices(settings, moved_clock):
    clock.shift_to(at(SESSION, 11))  # market hours: the whole graph over the day before, as `make run` or the UI's 'materialize all'
    with dg.DagsterInstance.ephemeral() as instance:
        job = build_defs(settings).resolve_implicit_global_asset_job_def()
        result = job.execute_in_process(instance=instance, partition_key=str(BEFORE), raise_on_error=False)
        assert result.success and "live_prices" not in {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
        assert said(instance, result)[0].startswith("live_prices: skipped: a run of session partitions (dagster/partition)")


def test_drop_final_removes_only_the_loaded_symbols_rows(settings):
    lake, warehouse = LakeStorage(settings.lake_url), warehouse_for_url(settings.warehouse_url)
    assert drop_final(lake, warehouse, [SESSION]) == 0 and delta.open_table(lake, LAKE_PATH) is None  # nothing made
    store_live(lake, warehouse, fetch_live(SyntheticProvider(clock=lambda: at(SESSION, 11)), settings.symbols, "5min", at(SESSION, 11)).rows)
    assert drop_final(lake, warehouse, [BEFORE]) == 0
    assert drop_final(lake, warehouse, [BEFORE, SESSION], symbols=["MSFT"]) == 19
    assert sorted(set(read_live(lake)["symbol"].to_pylist())) == ["AAPL", "IBM"]
    assert sorted(set(warehouse.query("SELECT DISTINCT symbol FROM live_prices")["symbol"].to_pylist())) == ["AAPL", "IBM"]
    store_live(lake, warehouse, read_live(lake))  # another refresh: another version, the old files kept for readers "as of"
    assert drop_final(lake, warehouse, [SESSION], keep_days=0) == 38  # and the files no version needs are vacuumed
    assert [p for p in lake.list_files(LAKE_PATH) if p.endswith(".parquet")] == [] and read_live(lake).num_rows == 0


def test_postgresql_replaces_the_table_in_one_transaction(settings, postgres_url):
    import psycopg2

    lake = LakeStorage(settings.lake_url)
    eleven = fetch_live(SyntheticProvider(clock=lambda: at(SESSION, 11)), settings.symbols, "5min", at(SESSION, 11)).rows
    quarter = fetch_live(SyntheticProvider(clock=lambda: at(SESSION, 11, 15)), settings.symbols, "5min", at(SESSION, 11, 15)).rows
    seen = []

    def look() -> None:  # from another connection, while the replacement is inserted but not committed
        with psycopg2.connect(postgres_url) as con, con.cursor() as cur:
            cur.execute("SELECT count(*), count(DISTINCT as_of) FROM live_prices")
            seen.append(cur.fetchone())
        lake_now = read_live(lake)
        seen.append((lake_now.num_rows, len(set(lake_now["as_of"].to_pylist()))))

    store_live(lake, PostgresWarehouse(postgres_url), eleven)
    store_live(lake, PostgresWarehouse(postgres_url, before_commit=look), quarter)
    assert seen == [(eleven.num_rows, 1), (quarter.num_rows, 1)]  # the warehouse: 11:00's rows until COMMIT; the lake: committed first
    got = PostgresWarehouse(postgres_url).query("SELECT * FROM live_prices ORDER BY symbol, interval, ts")
    assert got.num_rows == quarter.num_rows and got["close"].to_pylist() == quarter["close"].to_pylist()
    assert set(got["as_of"].to_pylist()) == set(quarter["as_of"].to_pylist())
    assert [v["version"] for v in DeltaTable(delta.table_uri(lake, LAKE_PATH)).history()] == [1, 0]  # one commit each
    assert drop_final(lake, PostgresWarehouse(postgres_url), [SESSION]) == quarter.num_rows
    assert PostgresWarehouse(postgres_url).query("SELECT count(*) AS n FROM live_prices")["n"].to_pylist() == [0]


def test_a_refresh_skips_while_another_process_holds_the_lock(settings, moved_clock):
    hold = "import sys, time, datetime as dt, pathlib\nfrom stock_assets.live_lock import refresh_lock\n" \
           "with refresh_lock(pathlib.Path(sys.argv[1]), dt.datetime.now(dt.UTC)):\n    print('held', flush=True)\n    time.sleep(60)\n"  # fmt: skip
    holder = subprocess.Popen([sys.executable, "-c", hold, str(settings.home)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with dg.DagsterInstance.ephemeral() as instance:
            result = refresh(build_defs(settings), instance, at(SESSION, 11))
            assert result.get_asset_materialization_events() == []
            [line] = said(instance, result)
            assert line.startswith(f"live_prices: skipped: another refresh is in progress (PID {holder.pid} since ")
    finally:
        holder.kill()
        holder.wait()
    assert delta.open_table(LakeStorage(settings.lake_url), LAKE_PATH) is None


def test_the_core_reads_without_dagster():
    probe = "import sys\nimport stock_assets.live, stock_assets.live_lock, stock_assets.live_schedule\nprint(sorted(m for m in sys.modules if m.split('.')[0] == 'dagster'))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.slow
def test_two_refreshes_launched_at_once_end_as_one(tmp_path):
    """`python -m stock_assets.cli live` twice at once, each a process under faketime at 11:00 New
    York. The warehouse file is held open meanwhile, so whichever takes the lock first is still
    holding it, waiting to write, when the other reaches it: that one skips, naming it."""
    env = environment(tmp_path, STOCK_ASSETS_SYMBOLS="AAPL,MSFT")
    command = ["faketime", "2026-10-13 15:00:00", sys.executable, "-m", "stock_assets.cli", "live"]
    busy = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    try:
        both = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        deadline = time.monotonic() + 120
        while all(p.poll() is None for p in both) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        busy.close()
    outs = {p.pid: p.communicate(timeout=120)[0] for p in both}
    assert [p.returncode for p in both] == [0, 0], outs
    [winner] = [pid for pid, out in outs.items() if out.startswith("stock_assets live: refreshed")]
    [loser] = [out for pid, out in outs.items() if pid != winner]
    assert loser.startswith("stock_assets live: nothing refreshed")
    holder = re.search(r"skipped: another refresh is in progress \(PID (\d+) since 2026-10-13 15:00:\d\d UTC\)", loser)
    assert holder, loser
    assert "2026-10-13, as of 11:00 New York" in outs[winner]
    lake = LakeStorage(str(tmp_path / "lake"))
    assert len(DeltaTable(delta.table_uri(lake, LAKE_PATH)).history()) == 1  # one refresh's commit
    os.environ["DAGSTER_HOME"], saved = str(tmp_path / "dagster"), os.environ.get("DAGSTER_HOME")
    try:
        with dg.DagsterInstance.get() as instance:
            runs = instance.get_runs()
            assert [(r.job_name, r.status, r.remote_job_origin.location_name) for r in runs] == [
                ("live_prices_job", dg.DagsterRunStatus.SUCCESS, "stock_assets")] * 2  # fmt: skip
            refreshed = instance.get_run_by_id(instance.get_latest_materialization_event(dg.AssetKey("live_prices")).run_id)
            assert refreshed.tags[PID_TAG] == holder[1]  # the lock's holder named is the process that refreshed
    finally:
        os.environ.pop("DAGSTER_HOME") if saved is None else os.environ.update(DAGSTER_HOME=saved)
