"""Event-driven paths: files dropped into landing/incoming/ become lake Parquet, checked and
loaded; indicators left stale by a load that did not recompute them are recomputed."""

import datetime as dt
import hashlib
import json

import dagster as dg

from stock_assets.calendar import nyse_calendar
from stock_assets.lake.io_manager import LakeResource
from stock_assets.lake.landing_drop import INCOMING, land_dropped_file
from stock_assets.settings import Settings
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


STABLE_SECONDS = 30  # a file unchanged (size and time) for this long, over two ticks, is complete
DONE_SUFFIX = ".done"  # or its writer says so: drop `<name>.done` beside it when it is complete


def _ready(storage, infos) -> tuple[list, dict, set, float]:
    """The files of incoming/ to look at now, and what to remember of those still being written.

    A file is complete when `<name>.done` exists, or when its size and time were the same at the
    previous tick and are STABLE_SECONDS old. Hidden or partial names (`.x`, `_x`, `*.tmp`,
    `*.part`) are someone's write in progress."""
    names = {storage.relative(i.path) for i in infos}
    now = dt.datetime.now(dt.UTC).timestamp()
    files = [i for i in infos if not i.base_name.startswith((".", "_")) and not i.base_name.endswith((".tmp", ".part", DONE_SUFFIX))]
    return files, {storage.relative(i.path): [i.size, i.mtime_ns] for i in files}, names, now


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


def build(settings: Settings) -> dg.Definitions:
    @dg.sensor(job=landing_to_lake_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
    def landing_files_sensor(context: dg.SensorEvaluationContext, lake: LakeResource):
        """One run per new file in landing/incoming/, over the sessions it holds; malformed files
        and rows go to quarantine/ with the reason. A file is known by its name and content (not its
        time: `cp -p`, `mv` and `rsync -t` keep old ones), picked up once it is complete, and never
        deleted: a file that changes is picked up again. The cursor remembers both, across restarts."""
        storage = lake.storage()
        cursor = json.loads(context.cursor) if context.cursor else {}
        seen, sizes = cursor.get("seen", {}), cursor.get("sizes", {})  # name -> [size, mtime, digest]; name -> [size, mtime]
        files, now_sizes, names, now = _ready(storage, storage.file_infos(INCOMING))
        todo, waiting = [], []
        for info in sorted(files, key=lambda i: i.path):
            key, stamp = storage.relative(info.path), [info.size, info.mtime_ns]
            if seen.get(key, [None, None])[:2] == stamp:
                continue  # looked at already, unchanged
            complete = f"{key}{DONE_SUFFIX}" in names or (
                sizes.get(key) == stamp and now - info.mtime_ns / 1e9 >= STABLE_SECONDS)
            (todo if complete else waiting).append((key, stamp))
        if waiting:
            context.log.info(f"waiting for {len(waiting)} file(s) still being written (unchanged for {STABLE_SECONDS} s, or a {DONE_SUFFIX} marker): {', '.join(k for k, _ in waiting[:5])}")
        sessions = {d.date() for d in nyse_calendar().sessions if settings.start <= str(d.date()) and d.date() <= dt.date.today()}
        stamp_now = dt.datetime.now(dt.UTC)
        requests = []
        for key, stamp in todo[:FILES_PER_TICK]:
            digest = hashlib.sha256(storage.read_bytes(key)).hexdigest()[:16]
            if seen.get(key, [None, None, None])[2] == digest:
                seen[key] = [*stamp, digest]  # touched, same bytes: nothing new
                continue
            outcome = land_dropped_file(storage, key, sessions, stamp_now)
            seen[key] = [*stamp, outcome.digest]
            if outcome.error or outcome.rejected_rows:
                context.log.warning(f"{key}: {outcome.error or f'{outcome.rejected_rows} rows rejected'}; see {outcome.quarantined[0]}")
            if outcome.sessions:
                first, last = min(outcome.sessions), max(outcome.sessions)
                requests.append(dg.RunRequest(
                    run_key=f"landing-{outcome.digest}",  # the same bytes dropped again: no second run
                    tags=dict(zip(RANGE_TAGS, (str(first), str(last)))) | {"stock_assets/landing_file": key},
                ))
        seen = {k: v for k, v in seen.items() if k in names}  # forget files that were removed
        context.update_cursor(json.dumps({"seen": seen, "sizes": now_sizes}))
        if not requests:
            yield dg.SkipReason(f"no new complete file in {storage.uri(INCOMING)}" + (f" ({len(waiting)} still being written)" if waiting else ""))
        yield from requests

    return dg.Definitions(sensors=[landing_files_sensor, stale_indicators_sensor])
