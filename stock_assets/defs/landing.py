"""Files other systems drop into landing/incoming/ (seed CSV format).

The sensor only notices: a complete file with bytes it has not seen asks for a run of
`land_dropped_file_job`. That run lands it (good rows into landing/<session>/, bad rows and
unreadable files to quarantine/ with the reason), so the work has a run: its log, retries and
the run-failure alert. Once it succeeds, `landed_files_sensor` runs the sessions the file held
through the lake to the warehouse (`landing_to_lake_job`)."""

import datetime as dt
import json

import dagster as dg

from stock_assets import clock
from stock_assets.calendar import nyse_calendar
from stock_assets.defs.common import RANGE_TAGS
from stock_assets.lake.io_manager import LakeResource, stop_when_disk_full
from stock_assets.lake.landing_drop import INCOMING, file_digest, land_dropped_file
from stock_assets.lake.landing_scope import EXTERNAL, symbols_in_file
from stock_assets.settings import Settings
from stock_assets.window import SYMBOLS_TAG

FILE_TAG, DIGEST_TAG = "stock_assets/landing_file", "stock_assets/landing_digest"
FILES_PER_TICK = 50
STABLE_SECONDS = 30  # a file unchanged (size and time) for this long, over two ticks, is complete
DONE_SUFFIX = ".done"  # or its writer says so: drop `<name>.done` beside it when it is complete

landing_to_lake_job = dg.define_asset_job(
    "landing_to_lake_job",
    selection=dg.AssetSelection.assets("lake_parquet").downstream(),
    description="Landing CSV of a session range -> lake Parquet -> dedup -> checks -> warehouse -> indicators.",
)


def _ready(storage, infos) -> tuple[list, dict, set, float]:
    """The files of incoming/ to look at now, and what to remember of those still being written.

    A file is complete when `<name>.done` exists, or when its size and time were the same at the
    previous tick and are STABLE_SECONDS old. Hidden or partial names (`.x`, `_x`, `*.tmp`,
    `*.part`) are someone's write in progress."""
    names = {storage.relative(i.path) for i in infos}
    now = dt.datetime.now(dt.UTC).timestamp()
    files = [i for i in infos if not i.base_name.startswith((".", "_")) and not i.base_name.endswith((".tmp", ".part", DONE_SUFFIX))]
    return files, {storage.relative(i.path): [i.size, i.mtime_ns] for i in files}, names, now


def valid_sessions(start: str) -> set[dt.date]:
    """The sessions a dropped row may be dated on: from the partitions' first to today."""
    today = clock.today()
    return {d.date() for d in nyse_calendar().sessions if start <= str(d.date()) and d.date() <= today}


def build(settings: Settings) -> dg.Definitions:
    @dg.op(retry_policy=dg.RetryPolicy(max_retries=2, delay=5))  # a lake that did not answer, once
    def land_dropped_file_op(context: dg.OpExecutionContext, lake: LakeResource) -> dg.Output[None]:
        """Land the file the run is for; its sessions and symbols go on the run's tags for landed_files_sensor."""
        storage, key = lake.storage(), context.run.tags[FILE_TAG]
        with stop_when_disk_full():
            outcome = land_dropped_file(storage, key, valid_sessions(settings.start), dt.datetime.now(dt.UTC))
        set_aside = ", ".join(storage.uri(p) for p in outcome.quarantined[::2]) or "none"
        if outcome.error:
            raise dg.Failure(
                f"{storage.uri(key)} cannot be landed: {outcome.error}. A copy and the reason are in {set_aside}; "
                "the dropped file stays where it is: replace it to try again",
                allow_retries=False,
            )
        if outcome.rejected_rows:
            context.log.warning(f"{key}: {outcome.rejected_rows} rows set aside with their reason in {set_aside}")
        sessions = sorted(outcome.sessions)
        if sessions:
            # The window the lake run takes: the file's sessions and symbols (another symbol's rows there stay as they are).
            symbols = set().union(*(symbols_in_file(storage, f"landing/{s}/{EXTERNAL}{outcome.digest}.csv") for s in sessions))
            tags = dict(zip(RANGE_TAGS, (str(sessions[0]), str(sessions[-1])))) | {SYMBOLS_TAG: ",".join(sorted(symbols))}
            context.instance.add_run_tags(context.run_id, tags)
        context.log.info(f"{key}: {outcome.landed_rows} rows landed in {len(sessions)} sessions")
        return dg.Output(None, metadata={
            "file": storage.uri(key), "landed_rows": outcome.landed_rows, "rejected_rows": outcome.rejected_rows,
            "sessions": f"{sessions[0]}..{sessions[-1]}" if sessions else "none", "quarantine": set_aside,
        })  # fmt: skip

    @dg.job(description="Land one file dropped in landing/incoming/ (the run's stock_assets/landing_file tag).")
    def land_dropped_file_job():
        land_dropped_file_op()

    @dg.run_status_sensor(
        run_status=dg.DagsterRunStatus.SUCCESS, monitored_jobs=[land_dropped_file_job], request_job=landing_to_lake_job,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )  # fmt: skip
    def landed_files_sensor(context: dg.RunStatusSensorContext):
        """A landed file's sessions, through the lake to the warehouse: one run per file's bytes."""
        tags = context.dagster_run.tags
        if RANGE_TAGS[0] not in tags:
            return dg.SkipReason(f"{tags.get(FILE_TAG)}: no row landed")
        return dg.RunRequest(run_key=f"landed-{tags[DIGEST_TAG]}", tags={k: tags[k] for k in (*RANGE_TAGS, FILE_TAG, SYMBOLS_TAG) if k in tags})

    return dg.Definitions(jobs=[land_dropped_file_job], sensors=[landing_files_sensor, landed_files_sensor])


@dg.sensor(job_name="land_dropped_file_job", minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def landing_files_sensor(context: dg.SensorEvaluationContext, lake: LakeResource):
    """One run per new complete file in landing/incoming/. A file is known by its name and content
    (not its time: `cp -p`, `mv` and `rsync -t` keep old ones), picked up once it is complete, and
    never deleted: a file that changes is picked up again; the same bytes under another name get
    the same run key, so they land once. The cursor remembers both, across restarts."""
    storage = lake.storage()
    cursor = json.loads(context.cursor) if context.cursor else {}
    seen, sizes = cursor.get("seen", {}), cursor.get("sizes", {})  # name -> [size, mtime, digest]; name -> [size, mtime]
    files, now_sizes, names, now = _ready(storage, storage.file_infos(INCOMING))
    todo, waiting = [], []
    for info in sorted(files, key=lambda i: i.path):
        key, stamp = storage.relative(info.path), [info.size, info.mtime_ns]
        if seen.get(key, [None, None])[:2] == stamp:
            continue  # looked at already, unchanged
        complete = f"{key}{DONE_SUFFIX}" in names or (sizes.get(key) == stamp and now - info.mtime_ns / 1e9 >= STABLE_SECONDS)
        (todo if complete else waiting).append((key, stamp))
    if waiting:
        context.log.info(f"waiting for {len(waiting)} file(s) still being written (unchanged for {STABLE_SECONDS} s, or a {DONE_SUFFIX} marker): {', '.join(k for k, _ in waiting[:5])}")
    requests = []
    for key, stamp in todo[:FILES_PER_TICK]:
        digest = file_digest(storage, key)  # read a block at a time: a dropped file may be bigger than memory
        known = seen.get(key, [None, None, None])[2] == digest
        seen[key] = [*stamp, digest]
        if not known:  # touched, same bytes: nothing new
            requests.append(dg.RunRequest(run_key=f"landing-{digest}", tags={FILE_TAG: key, DIGEST_TAG: digest}))
    seen = {k: v for k, v in seen.items() if k in names}  # forget files that were removed
    context.update_cursor(json.dumps({"seen": seen, "sizes": now_sizes}))
    if not requests:
        yield dg.SkipReason(f"no new complete file in {storage.uri(INCOMING)}" + (f" ({len(waiting)} still being written)" if waiting else ""))
    yield from requests
