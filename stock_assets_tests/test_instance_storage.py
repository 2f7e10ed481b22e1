"""The local instance's storage (dagster.yaml, stock_assets/instance_storage.py) against Dagster's own
SQLite storage: the same runs of a small session-partitioned graph on each, in real SQLite
DAGSTER_HOMEs, leave the same materializations, partition statuses (failed ones too), tags and
asset records; a check, and an asset without partitions, are planned once per run instead of once
per session; the UI's live run log still sees every event."""

import threading
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.execution.api import execute_run
from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value

from stock_assets.defs.common import RANGE_TAGS
from stock_assets.instance_storage import BatchedSqliteEventLogStorage, LocalInstance, RangeRunStorage
from stock_assets.partitions import sessions_between, trading_sessions_partitions

ROOT = Path(__file__).resolve().parents[1]
SESSIONS = trading_sessions_partitions("2012-01-03")
WINDOW = [str(s) for s in sessions_between("2012-01-03", "2024-01-02", "2024-01-31")]  # 21 sessions
T = dg.DagsterEventType


@dg.asset(partitions_def=SESSIONS, backfill_policy=dg.BackfillPolicy.single_run(), check_specs=[dg.AssetCheckSpec("bars_positive", asset="bars")])
def bars(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    for key in context.partition_keys:
        context.add_asset_metadata({"dagster/row_count": 2}, partition_key=key)
    return dg.MaterializeResult(metadata={"window_rows": 2 * len(context.partition_keys)}, check_results=[dg.AssetCheckResult(passed=True)])


@dg.asset(partitions_def=SESSIONS, backfill_policy=dg.BackfillPolicy.single_run(), deps=[bars])
def derived(context: dg.AssetExecutionContext) -> None:
    if context.run.tags.get("fail"):
        raise dg.Failure("asked to fail", allow_retries=False)


@dg.asset(deps=[derived], backfill_policy=dg.BackfillPolicy.single_run())
def catalog() -> None:
    """Not partitioned, as published_prices and dashboard. Dagster takes a run's partitions from the
    last asset of its plan, by name: here, as in the code location, a partitioned one (derived)."""


DEFS = dg.Definitions(assets=[bars, derived, catalog], executor=dg.in_process_executor)


def instance_in(folder: Path, ours: bool) -> dg.DagsterInstance:
    """A DAGSTER_HOME with the project's dagster.yaml, or the same without its instance_class (Dagster's storage)."""
    folder.mkdir()
    config = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    assert config.pop("instance_class")["class"] == "LocalInstance"
    (folder / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text() if ours else yaml.safe_dump(config))
    return dg.DagsterInstance.from_config(str(folder))


def backfill(instance: dg.DagsterInstance, first: str, last: str, **tags: str) -> str:
    """One run of the whole graph over first..last, as the CLI runs a backfill."""
    job = DEFS.resolve_implicit_global_asset_job_def()
    run = instance.create_run_for_job(job_def=job, tags=dict(zip(RANGE_TAGS, (first, last))) | tags)
    execute_run(InMemoryJob(job), run, instance)
    return run.run_id


def history(instance: dg.DagsterInstance, runs: list[str]) -> dict:
    """What each run logged (asset events by asset and partition) and what the instance knows of each asset."""
    logged = [sorted((r.dagster_event_type.value, r.dagster_event.asset_key.to_user_string(), r.dagster_event.partition or "")
                     for r in instance.all_logs(run_id) if r.dagster_event_type in (T.ASSET_MATERIALIZATION, T.ASSET_MATERIALIZATION_PLANNED))
              for run_id in runs]  # fmt: skip
    assets = {}
    for key in (bars.key, derived.key):
        status = get_and_update_asset_status_cache_value(instance, key, SESSIONS)
        latest = instance.fetch_materializations(key, limit=1).records[0]
        assets[key.to_user_string()] = {
            "materialized": sorted(instance.get_materialized_partitions(key)),
            "failed": sorted(status.deserialize_failed_partition_subsets(SESSIONS).get_partition_keys()),
            "latest": (latest.partition_key, runs.index(latest.run_id), sorted(latest.asset_materialization.tags)),
            "record_run": runs.index(instance.get_asset_records([key])[0].asset_entry.last_run_id),
        }
    return {"logged": logged, "assets": assets}


def test_the_local_instance_keeps_dagsters_files_with_its_storage(tmp_path):
    instance = instance_in(tmp_path / "home", ours=True)
    assert isinstance(instance, LocalInstance)
    assert isinstance(instance.event_log_storage, BatchedSqliteEventLogStorage)
    assert isinstance(instance.run_storage, RangeRunStorage)
    assert Path(instance.event_log_storage._base_dir) == tmp_path / "home" / "history" / "runs"  # where Dagster's default keeps them
    assert (tmp_path / "home" / "history" / "runs.db").exists()


@pytest.mark.slow
def test_backfills_leave_what_dagsters_storage_leaves_with_checks_planned_once(tmp_path):
    found = {}
    for ours in (True, False):
        with instance_in(tmp_path / str(ours), ours) as instance:
            runs = [backfill(instance, WINDOW[0], WINDOW[-1]), backfill(instance, WINDOW[5], WINDOW[9], fail="yes")]
            assert [instance.get_run_by_id(r).status for r in runs] == [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE]
            found[ours] = history(instance, runs)
            check = dg.AssetCheckKey(bars.key, "bars_positive")
            found[ours]["checks"] = sorted((e.run_id == runs[0], e.status.value, e.partition) for e in
                                           instance.event_log_storage.get_asset_check_execution_history(check, limit=1000))  # fmt: skip
            assert instance.get_run_by_id(runs[0]).tags[RANGE_TAGS[1]] == WINDOW[-1]
            if ours:
                assert instance.get_run_by_id(runs[0]).partitions_subset is None

    ours, dagsters = found[True], found[False]
    assert ours["assets"] == dagsters["assets"]
    assert ours["assets"]["derived"]["failed"] == WINDOW[5:10]  # a failed run still marks its sessions failed
    assert ours["assets"]["bars"]["materialized"] == WINDOW
    for mine, theirs, sessions in zip(ours["logged"], dagsters["logged"], (len(WINDOW), 5), strict=True):
        # Dagster's storage plans the unpartitioned asset once per session of the run; ours once.
        catalog_planned = [e for e in theirs if e[:2] == ("ASSET_MATERIALIZATION_PLANNED", "catalog")]
        assert len(catalog_planned) == sessions and mine.count(("ASSET_MATERIALIZATION_PLANNED", "catalog", "")) == 1
        assert [e for e in mine if e[:2] != ("ASSET_MATERIALIZATION_PLANNED", "catalog")] == [e for e in theirs if e not in catalog_planned]
    assert ours["logged"][0].count(("ASSET_MATERIALIZATION", "bars", WINDOW[0])) == 1
    # The check, evaluated once per run: one row per run (Dagster's storage: one per session, left PLANNED).
    assert ours["checks"] == [(False, "SUCCEEDED", None), (True, "SUCCEEDED", None)]
    assert dagsters["checks"].count((True, "PLANNED", WINDOW[0])) == 1 and len(dagsters["checks"]) == 2 + len(WINDOW) + 5


def test_the_ui_sees_a_run_s_batched_events_as_they_are_written(tmp_path):
    """The UI follows a run's log by watching its SQLite file: each batch is one write of it."""
    with instance_in(tmp_path / "home", ours=True) as instance:
        job = DEFS.resolve_implicit_global_asset_job_def()
        run = instance.create_run_for_job(job_def=job, tags=dict(zip(RANGE_TAGS, (WINDOW[0], WINDOW[-1]))))
        seen, all_seen = [], threading.Event()

        def callback(event, _cursor):
            seen.append(event)
            if sum(e.dagster_event_type == T.ASSET_MATERIALIZATION for e in seen) == 2 * len(WINDOW) + 1:
                all_seen.set()

        instance.watch_event_logs(run.run_id, None, callback)
        execute_run(InMemoryJob(job), run, instance)
        assert all_seen.wait(30), f"the watcher saw {len(seen)} events of {len(instance.all_logs(run.run_id))}"
        instance.end_watch_event_logs(run.run_id, callback)

