"""Event-driven paths: files dropped into landing/incoming/ become lake Parquet, checked and
loaded; indicators left stale by a load that did not recompute them are recomputed."""

import datetime as dt
import json

import dagster as dg

from stock_assets.lake.io_manager import LakeResource
from stock_assets.lake.landing_drop import INCOMING, land_dropped_file
from stock_assets.partitions import SETTINGS_START, nyse_calendar
from stock_assets.transforms.history import describe_sessions, stale_in_warehouse
from stock_assets.transforms.indicators import LOOKBACK_SESSIONS
from stock_assets.warehouse.io_manager import WarehouseResource

RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")
FILES_PER_TICK = 50

landing_to_lake_job = dg.define_asset_job(
    "landing_to_lake_job",
    selection=dg.AssetSelection.assets("lake_parquet").downstream(),
    description="Landing CSV of a session range -> lake Parquet -> dedup -> checks -> warehouse -> indicators.",
)


def _after(cursor: dict, mtime_ns: int, key: str) -> bool:
    return mtime_ns > cursor["mtime_ns"] or (mtime_ns == cursor["mtime_ns"] and key not in cursor["keys"])


@dg.sensor(job=landing_to_lake_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def landing_files_sensor(context: dg.SensorEvaluationContext, lake: LakeResource):
    """One run per new file in landing/incoming/, over the sessions it holds; malformed files
    and rows go to quarantine/ with the reason. The cursor (last modification time seen, and
    the files seen at that time) makes each file processed once, across restarts."""
    storage = lake.storage()
    cursor = json.loads(context.cursor) if context.cursor else {"mtime_ns": 0, "keys": []}
    found = sorted((i.mtime_ns, storage.relative(i.path)) for i in storage.file_infos(INCOMING))
    new = [(m, k) for m, k in found if _after(cursor, m, k)][:FILES_PER_TICK]
    if not new:
        yield dg.SkipReason(f"no new file in {storage.uri(INCOMING)}")
        return
    sessions = {d.date() for d in nyse_calendar(SETTINGS_START).sessions if d.date() <= dt.date.today()}
    now = dt.datetime.now(dt.UTC)
    for mtime_ns, key in new:
        outcome = land_dropped_file(storage, key, sessions, now)
        if outcome.error or outcome.rejected_rows:
            context.log.warning(f"{key}: {outcome.error or f'{outcome.rejected_rows} rows rejected'}; see {outcome.quarantined[0]}")
        if outcome.sessions:
            first, last = min(outcome.sessions), max(outcome.sessions)
            yield dg.RunRequest(
                run_key=f"landing-{outcome.digest}",  # the same bytes dropped again: no second run
                tags=dict(zip(RANGE_TAGS, (str(first), str(last)))) | {"stock_assets/landing_file": key},
            )
    last_mtime = new[-1][0]
    seen = [k for m, k in new if m == last_mtime] + (cursor["keys"] if last_mtime == cursor["mtime_ns"] else [])
    context.update_cursor(json.dumps({"mtime_ns": last_mtime, "keys": seen}))


indicators_job = dg.define_asset_job(
    "indicators_job",
    selection=dg.AssetSelection.assets("indicators"),
    description="Indicators (and their lookback's later sessions) recomputed over a session range.",
)
IN_PROGRESS = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


@dg.sensor(job=indicators_job, minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.RUNNING)
def stale_indicators_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource):
    """Prices loaded without the indicators that depend on them (a run that selected the
    warehouse load only, or failed after it): one run recomputes the stale range. Waits while
    any run is in progress, since that run may be about to recompute them itself."""
    busy = context.instance.get_runs(dg.RunsFilter(statuses=IN_PROGRESS), limit=1)
    if busy:
        return dg.SkipReason(f"run {busy[0].run_id} is in progress")
    store = warehouse.get()
    stale = stale_in_warehouse(store, "indicators", LOOKBACK_SESSIONS)
    if not stale:
        return dg.SkipReason("indicators are current for every session with prices")
    first, last = str(stale[0]), str(stale[-1])
    newest_load = store.query("SELECT max(loaded_at) AS t FROM prices_loads")["t"][0].as_py()
    context.log.info(f"stale indicators: {describe_sessions(stale)}")
    return dg.RunRequest(
        # One request per state of the prices: a recomputation that fails is not retried until
        # prices load again (or by hand), rather than every few minutes.
        run_key=f"stale-indicators-{first}-{last}-{newest_load:%Y%m%dT%H%M%S%f}",
        tags=dict(zip(RANGE_TAGS, (first, last))),
    )
