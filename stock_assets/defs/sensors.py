"""Event-driven path: files dropped into landing/incoming/ become lake Parquet, checked and loaded."""

import datetime as dt
import json

import dagster as dg

from stock_assets.lake.io_manager import LakeResource
from stock_assets.lake.landing_drop import INCOMING, land_dropped_file
from stock_assets.partitions import SETTINGS_START, nyse_calendar, trading_sessions

RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")
FILES_PER_TICK = 50

landing_to_lake_job = dg.define_asset_job(
    "landing_to_lake_job",
    selection=dg.AssetSelection.assets("lake_parquet").downstream(),
    partitions_def=trading_sessions,
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
