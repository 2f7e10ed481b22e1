"""The simulated month's machinery: the real definitions driven as the daemon would drive them
(schedule ticks at their times, sensors with their cursors, the run keys a sensor already used
skipped), on a moved clock, and the invariants that must hold at the end of every day."""

import collections
import datetime as dt
import json
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import pyarrow as pa
from deltalake import DeltaTable

from stock_assets import clock
from stock_assets.cli import materialize_range
from stock_assets.definitions import build_defs
from stock_assets.defs.quality import CHECKS
from stock_assets.lake import delta
from stock_assets.lake.storage import LakeStorage
from stock_assets.providers.synthetic import CSV_COLUMNS, synthetic_bars
from stock_assets.settings import Settings

NY = ZoneInfo("America/New_York")
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
RUN_BOUND_SECONDS = 60  # no run of a 3-symbol day may take longer: a wait on a lock, a pool or a ghost would
SETTLE_ROUNDS = 5  # sensor rounds a day may take before nothing more is asked for
LAKE_TABLES = ("lake/prices", "lake/deduped", "lake/dq_report", "lake/indicators")
# What legitimately differs between two runs over the same bars: when, from where and by which run they came.
VOLATILE = {"ingested_at", "loaded_at", "source", "checked_at", "computed_at", "year", "first_seen", "restated_at", "restated_by_run"}
KEYS = {"prices": ("symbol", "session"), "indicators": ("symbol", "session"), "corporate_actions": ("symbol", "session", "kind")}
IN_PROGRESS = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def evening(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(18, 30), NY)


def vendor_file(symbols: tuple[str, ...], sessions: list[dt.date]) -> bytes:
    """A file another system drops: the seed columns and the extras, the same bars the provider has."""
    frames = [synthetic_bars(s, sessions)[CSV_COLUMNS] for s in symbols]
    return "".join(f.to_csv(index=False, header=i == 0, lineterminator="\n") for i, f in enumerate(frames)).encode()


def stable(table: pa.Table, keys: tuple[str, ...]) -> pa.Table:
    """`table` without the volatile columns, in key order, sessions as dates."""
    kept = [c for c in table.column_names if c not in VOLATILE]
    return table.select(kept).sort_by([(k, "ascending") for k in keys if k in kept])


def assert_same(got: pa.Table, want: pa.Table, what: str) -> None:
    assert got.column_names == want.column_names, f"{what}: columns {got.column_names} != {want.column_names}"
    if got.equals(want):
        return
    assert got.num_rows == want.num_rows, f"{what}: {got.num_rows} rows, a clean run has {want.num_rows}"
    for name in got.column_names:
        a, b = got[name].to_pylist(), want[name].to_pylist()
        wrong = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
        assert not wrong, f"{what}: column {name} differs in {len(wrong)} rows, first {got.slice(wrong[0], 1).to_pylist()} != {want.slice(wrong[0], 1).to_pylist()}"


def in_sessions(table: pa.Table, sessions) -> pa.Table:
    return table.filter(pa.compute.is_in(table["session"], pa.array(sorted(sessions), pa.date32())))


def of_symbols(table: pa.Table, symbols) -> pa.Table:
    return table.filter(pa.compute.is_in(table["symbol"], pa.array(sorted(symbols), pa.string())))


def warehouse_tables(settings: Settings) -> dict[str, pa.Table]:
    path = settings.warehouse_url.removeprefix("duckdb:///")
    with duckdb.connect(path, read_only=True) as con:
        names = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        return {t: stable(con.sql(f"SELECT * FROM {t}").to_arrow_table(), keys) for t, keys in KEYS.items() if t in names}


def live_rows(settings: Settings) -> pa.Table:
    """The warehouse's live_prices (none before the first refresh)."""
    path = settings.warehouse_url.removeprefix("duckdb:///")
    with duckdb.connect(path, read_only=True) as con:
        if "live_prices" not in {r[0] for r in con.sql("SELECT table_name FROM information_schema.tables").fetchall()}:
            return pa.table({"symbol": pa.array([], pa.string()), "session": pa.array([], pa.date32()), "ts": pa.array([], pa.timestamp("us", tz="UTC"))})
        return con.sql("SELECT * FROM live_prices").to_arrow_table()


def reference(settings: Settings, sessions: list[dt.date]) -> dict[str, pa.Table]:
    """One clean run over `sessions`, in a home of its own."""
    clock.shift_to(evening(sessions[-1]))
    with dg.DagsterInstance.ephemeral() as instance:
        result = materialize_range(build_defs(settings), str(sessions[0]), str(sessions[-1]), instance)
    assert result.success, "the clean reference run failed"
    return warehouse_tables(settings)


class References:
    """Clean runs of every symbol the month ever has (`settings_for(home)`), from the month's first
    session, computed when first needed. Traded prices do not depend on what else was loaded, but
    adjusted ones (adj_close, adj_factor, the indicators, the corporate_actions table) depend on the
    actions known: a clean run over the whole month adjusts every session by every action of the
    month, while on a day before the month has loaded an action's ex-date, its warehouse rightly
    knows nothing of it. So each day is compared with the clean run that knows exactly what the
    month knows: the one over the sessions up to the day before the first ex-date (of the month's
    symbols) it has not loaded, else over the whole month. (A day that loaded sessions after such an
    ex-date would have no clean range equivalent: it would fail loudly, never pass unchecked.)"""

    def __init__(self, settings_for, sessions: list[dt.date]):
        self.settings_for, self.sessions, self.runs = settings_for, sessions, {}
        self.actions = self.over(sessions[-1])["corporate_actions"]

    def over(self, last: dt.date) -> dict[str, pa.Table]:
        if last not in self.runs:
            now = clock.now()  # computed mid-day: the month's clock goes on where it was
            self.runs[last] = reference(self.settings_for(f"reference-{last}"), [s for s in self.sessions if s <= last])
            clock.shift_to(now)
        return self.runs[last]

    def known_by(self, loaded: set[dt.date], symbols) -> dict[str, pa.Table]:
        """The clean run's tables (of `symbols`) that know what a warehouse holding `loaded` knows."""
        actions = of_symbols(self.actions, symbols)
        unknown = [d for d in actions["ex_date"].to_pylist() if d not in loaded]
        last = max((s for s in self.sessions if s < min(unknown)), default=self.sessions[0]) if unknown else self.sessions[-1]
        return {name: of_symbols(table, symbols) for name, table in self.over(last).items()}


Run = collections.namedtuple("Run", "day job run_id seconds success partition")


class Month:
    """The pipeline of `settings` on `instance`, day after day, with an alert webhook at `hook`."""

    def __init__(self, settings: Settings, instance: dg.DagsterInstance, references: References):
        self.settings, self.instance, self.references = settings, instance, references
        self.use(settings)
        self.lake = LakeStorage(settings.lake_url)
        self.cursors: dict[tuple, str | None] = {}
        self.run_keys: set[str] = set()
        self.requested: collections.Counter = collections.Counter()  # run requests per sensor
        self.runs: list[Run] = []
        self.day: dt.date | None = None
        self.sensor("run_failure_alert_sensor")  # a run status sensor starts from its first tick
        self.sensor("landed_files_sensor")

    def use(self, settings: Settings) -> None:
        """The code location deployed with `settings` (e.g. a symbol added to STOCK_ASSETS_SYMBOLS)."""
        self.settings, self.defs = settings, build_defs(settings)
        self.repository = self.defs.get_repository_def()

    # --- what the daemon does ------------------------------------------------------------
    def run(self, job: str, defs: dg.Definitions | None = None, instance: dg.DagsterInstance | None = None, run_config: dict | None = None,
            **kwargs) -> dg.ExecuteInProcessResult:  # fmt: skip
        started = time.monotonic()
        result = (defs or self.defs).resolve_job_def(job).execute_in_process(
            instance=instance or self.instance, run_config=QUIET | (run_config or {}), raise_on_error=False, **kwargs)  # fmt: skip
        self.runs.append(Run(self.day, job, result.run_id, time.monotonic() - started, result.success, kwargs.get("partition_key")))
        return result

    def request(self, request: dg.RunRequest, job: str, defs: dg.Definitions | None = None,
                instance: dg.DagsterInstance | None = None) -> dg.ExecuteInProcessResult | None:  # fmt: skip
        """A sensor's or schedule's request, run unless its run key ran before (as the daemon does)."""
        if request.run_key is not None and request.run_key in self.run_keys:
            return None
        self.run_keys.add(request.run_key)
        tags = {k: v for k, v in request.tags.items() if k != "dagster/partition"}
        return self.run(job, defs, instance, partition_key=request.partition_key, tags=tags)

    def daily_tick(self, day: dt.date, defs: dg.Definitions | None = None) -> dg.ExecuteInProcessResult:
        self.day = day
        clock.shift_to(evening(day))
        schedule = self.defs.resolve_schedule_def("daily_prices_job_schedule")
        [request] = schedule.evaluate_tick(dg.build_schedule_context(repository_def=self.repository, scheduled_execution_time=evening(day))).run_requests
        return self.request(request, "daily_prices_job", defs)

    def rerun(self, day: dt.date, defs: dg.Definitions | None = None, instance: dg.DagsterInstance | None = None) -> dg.ExecuteInProcessResult:
        """The operator, alerted, runs the session again (the UI's re-execute)."""
        return self.run("daily_prices_job", defs, instance, partition_key=str(day))

    def live_tick(self, day: dt.date, hour: int = 11) -> dg.ExecuteInProcessResult:
        """live_session_schedule's tick mid-session: live rows of every symbol up to then; `prices`
        and the final lake tables as they were."""
        self.day = day
        at = dt.datetime.combine(day, dt.time(hour), NY)
        clock.shift_to(at)
        before = warehouse_tables(self.settings), {p: delta.open_table(self.lake, p).version() for p in LAKE_TABLES}
        schedule = self.defs.resolve_schedule_def("live_session_schedule")
        with dg.instance_for_test() as looked_at:  # the schedule reads the instance's runs; an ephemeral one cannot be handed over
            [request] = schedule.evaluate_tick(dg.build_schedule_context(instance=looked_at, scheduled_execution_time=at)).run_requests
        result = self.request(request, "live_prices_job")
        assert result.success, f"{day}: the live refresh failed"
        rows = live_rows(self.settings)
        assert sorted(set(rows["symbol"].to_pylist())) == sorted(self.settings.symbols) and set(rows["session"].to_pylist()) == {day}
        assert max(rows["ts"].to_pylist()) < at, f"{day}: a live bar starts after {at:%H:%M}"
        after = warehouse_tables(self.settings), {p: delta.open_table(self.lake, p).version() for p in LAKE_TABLES}
        assert after[1] == before[1] and all(after[0][t].equals(before[0][t]) for t in before[0]), f"{day}: the live refresh touched history"
        return result

    def maintenance_tick(self, sunday: dt.date) -> dg.ExecuteInProcessResult:
        self.day = sunday
        at = dt.datetime.combine(sunday, dt.time(3, 0), NY)
        clock.shift_to(at)
        schedule = self.defs.resolve_schedule_def("lake_maintenance_job_schedule")
        [request] = schedule.evaluate_tick(dg.build_schedule_context(repository_def=self.repository, scheduled_execution_time=at)).run_requests
        return self.request(request, "lake_maintenance_job")

    def sensor(self, name: str, instance: dg.DagsterInstance | None = None) -> list[dg.RunRequest]:
        key = (name, id(instance))
        with dg.build_sensor_context(instance=instance or self.instance, cursor=self.cursors.get(key), definitions=self.defs,
                                     resources=self.defs.resources) as context:  # fmt: skip
            data = self.defs.resolve_sensor_def(name).evaluate_tick(context)
        self.cursors[key] = data.cursor
        self.requested[name] += len(data.run_requests)
        return list(data.run_requests)

    def settle(self) -> None:
        """The sensors' ticks until none asks for anything more."""
        jobs = {"landing_files_sensor": "land_dropped_file_job", "landed_files_sensor": "landing_to_lake_job",
                "stale_indicators_sensor": "indicators_job"}  # fmt: skip
        for _ in range(SETTLE_ROUNDS):
            ran = [self.request(r, job) for name, job in jobs.items() for r in self.sensor(name)]
            if not any(ran):
                self.sensor("run_failure_alert_sensor")
                return
        raise AssertionError(f"{self.day}: the sensors still ask for runs after {SETTLE_ROUNDS} rounds")

    def drop(self, name: str, body: bytes) -> None:
        self.lake.write_bytes(f"landing/incoming/{name}", body)
        self.lake.write_bytes(f"landing/incoming/{name}.done", b"")

    # --- the invariants -------------------------------------------------------------------
    def check(self, alerts: list[str]) -> None:
        """Every invariant, at the end of the day."""
        tables = warehouse_tables(self.settings)
        loaded = set(tables["prices"]["session"].to_pylist()) if "prices" in tables else set()
        clean = self.references.known_by(loaded, self.settings.symbols)
        self.check_warehouse(tables, loaded, clean)
        self.check_lake(tables, loaded)
        self.check_production(loaded, clean)
        live = live_rows(self.settings)
        assert not set(live["session"].to_pylist()) & loaded, f"{self.day}: live rows of sessions whose final bars are loaded"
        self.check_runs(alerts)

    def check_warehouse(self, tables: dict[str, pa.Table], loaded: set[dt.date], clean: dict[str, pa.Table]) -> None:
        month = clean["prices"]["session"].to_pylist()
        for session, run in self.successful_sessions().items():
            assert session in loaded, f"{self.day}: {session} was loaded by run {run} but is not in the warehouse"
        if not loaded:
            return
        assert_same(tables["prices"], in_sessions(clean["prices"], loaded), f"{self.day}: warehouse prices")
        prefix = [s for s in sorted(set(month)) if s <= max(loaded)]
        prefix = prefix[: next((i for i, s in enumerate(prefix) if s not in loaded), len(prefix))]  # indicators need every session before
        assert_same(in_sessions(tables["indicators"], prefix), in_sessions(clean["indicators"], prefix), f"{self.day}: warehouse indicators")
        assert_same(tables["corporate_actions"], clean["corporate_actions"], f"{self.day}: warehouse corporate_actions")

    def successful_sessions(self) -> dict[dt.date, str]:
        return {dt.date.fromisoformat(r.partition): r.run_id for r in self.runs if r.success and r.job == "daily_prices_job" and r.partition}

    def check_lake(self, tables: dict[str, pa.Table], loaded: set[dt.date]) -> None:
        """Each Delta table reads the same through deltalake and through DuckDB; deduped and
        indicators hold what the warehouse holds, for its sessions."""
        con = duckdb.connect()
        for prefix in LAKE_TABLES:
            uri = delta.table_uri(self.lake, prefix)
            if not DeltaTable.is_deltatable(uri):
                assert not loaded, f"{self.day}: the warehouse holds prices but {prefix} is not a Delta table"
                continue
            by_deltalake = DeltaTable(uri).to_pyarrow_table()
            files = delta.dataset(self.lake, prefix)  # noqa: F841 (DuckDB scans it by name)
            by_duckdb = con.sql("SELECT * FROM files").to_arrow_table()
            every = tuple(by_duckdb.column_names)
            assert_same(stable(by_duckdb, every), stable(by_deltalake.select(every), every), f"{self.day}: {prefix} by DuckDB and by deltalake")
            warehouse = {"lake/deduped": "prices", "lake/indicators": "indicators"}.get(prefix)
            if warehouse and loaded:
                lake = stable(in_sessions(by_deltalake, loaded), ("symbol", "session"))
                want = tables[warehouse]
                shared = [c for c in want.column_names if c in lake.column_names]
                assert_same(lake.select(shared), want.select(shared), f"{self.day}: {prefix} against warehouse {warehouse}")

    def check_production(self, loaded: set[dt.date], clean: dict[str, pa.Table]) -> None:
        """published/LATEST: a version of lake/deduped whose window is complete and checked."""
        try:
            latest = json.loads(self.lake.read_bytes("published/LATEST"))
        except FileNotFoundError:
            assert not loaded, f"{self.day}: the warehouse holds prices but nothing was published"
            return
        blocking = {name for name, _, severity in CHECKS if severity == "ERROR"}
        failed = [name for name, passed in latest["checks"].items() if name in blocking and not passed]
        assert blocking <= set(latest["checks"]) and not failed, f"{self.day}: production's checks {latest['checks']}"
        first, last = (dt.date.fromisoformat(d) for d in latest["window"])
        window = [s for s in sorted(set(clean["prices"]["session"].to_pylist())) if first <= s <= last]
        commits = DeltaTable(delta.table_uri(self.lake, "lake/deduped")).history()
        [written] = [c["timestamp"] for c in commits if c["version"] == latest["version"]]
        assert dt.datetime.fromisoformat(latest["version_written_at"]) == dt.datetime.fromtimestamp(written / 1000, dt.UTC), f"{self.day}: LATEST's time"
        rows = delta.dataset(self.lake, "lake/deduped", latest["version"]).to_table()
        assert rows.num_rows == latest["rows"], f"{self.day}: LATEST says {latest['rows']} rows, its version holds {rows.num_rows}"
        shared = [c for c in clean["prices"].column_names if c in rows.column_names]  # adj_factor is the warehouse's only
        assert_same(stable(in_sessions(rows, window), ("symbol", "session")).select(shared),
                    in_sessions(clean["prices"], window).select(shared), f"{self.day}: production (version {latest['version']}, {first}..{last})")  # fmt: skip

    def check_runs(self, alerts: list[str]) -> None:
        busy = self.instance.get_runs(dg.RunsFilter(statuses=IN_PROGRESS))
        assert not busy, f"{self.day}: runs still in progress at the end of the day: {[r.run_id for r in busy]}"
        for run in self.runs:
            assert run.seconds < RUN_BOUND_SECONDS, f"{run.day}: {run.job} run {run.run_id} took {run.seconds:.0f} s"
        failed = [r.run_id for r in self.instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))]
        unalerted = [r for r in failed if not any(f"/runs/{r}" in a for a in alerts)]
        assert not unalerted, f"{self.day}: failed runs never alerted: {unalerted}"

    def check_maintained(self) -> None:
        """At most one data file per year in each table's current version."""
        for prefix in LAKE_TABLES:
            years = collections.Counter(Path(p).parent.name for p in delta.current_files(self.lake, prefix))
            assert all(n <= 1 for n in years.values()), f"{self.day}: {prefix} after maintenance: files per year {dict(years)}"


def step_errors(result: dg.ExecuteInProcessResult) -> str:
    """What the run's failed steps said: their errors and the errors' causes."""
    texts = []
    for event in result.all_events:
        error = event.step_failure_data.error if event.event_type == dg.DagsterEventType.STEP_FAILURE else None
        while error is not None:
            texts.append(error.message)
            error = error.cause
    return "\n".join(texts)
