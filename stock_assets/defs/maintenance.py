"""Lake maintenance: every Sunday (and from the UI), each Delta table of the lake is compacted
(one file per year) and vacuumed. Vacuum deletes the files no version newer than the retention
needs: versions older than STOCK_ASSETS_LAKE_RETENTION_DAYS can no longer be read "as of", except
the published production version, which is always kept readable."""

import datetime as dt
import json

import dagster as dg

from stock_assets.calendar import NY
from stock_assets.lake import delta
from stock_assets.lake.io_manager import LakeResource
from stock_assets.lake.storage import LakeStorage
from stock_assets.settings import Settings

LAKE_TABLES = ("lake/prices", "lake/deduped", "lake/dq_report", "lake/indicators")


def retention(storage: LakeStorage, days: float, now: dt.datetime) -> dt.timedelta:
    """The configured retention, stretched to keep the published production version readable."""
    keep = dt.timedelta(days=days)
    try:
        published = json.loads(storage.read_bytes("published/LATEST"))
    except FileNotFoundError:
        return keep
    written = dt.datetime.fromisoformat(published["version_written_at"])
    return max(keep, now - written + dt.timedelta(hours=1))


def maintain_lake(storage: LakeStorage, days: float, now: dt.datetime) -> list[dict]:
    keep = retention(storage, days, now)
    return [delta.maintain(storage, prefix, keep) | {"retention_hours": round(keep.total_seconds() / 3600, 1)} for prefix in LAKE_TABLES]


def build(settings: Settings) -> dg.Definitions:
    @dg.op
    def compact_and_vacuum_lake(context: dg.OpExecutionContext, lake: LakeResource) -> dg.Output[None]:
        """Compact and vacuum every Delta table of the lake (see the module's docstring)."""
        reports = maintain_lake(lake.storage(), settings.lake_retention_days, dt.datetime.now(dt.UTC))
        for report in reports:
            context.log.info(f"{report}")
        rows = "\n".join(f"| {r['table']} | {r.get('version', '-')} | {r.get('files', '-')} | {r.get('files_compacted', '-')} | {r.get('files_vacuumed', '-')} |" for r in reports)
        return dg.Output(None, metadata={
            "tables": dg.MetadataValue.md(f"| table | version | files | compacted | vacuumed |\n|---|---|---|---|---|\n{rows}"),
            "retention_hours": reports[0]["retention_hours"] if reports and "retention_hours" in reports[0] else 0,
        })  # fmt: skip

    @dg.job(description="Compact (one file per year) and vacuum (STOCK_ASSETS_LAKE_RETENTION_DAYS) the lake's Delta tables.")
    def lake_maintenance_job():
        compact_and_vacuum_lake()

    schedule = dg.ScheduleDefinition(job=lake_maintenance_job, cron_schedule="0 3 * * 0", execution_timezone=NY,
                                     default_status=dg.DefaultScheduleStatus.RUNNING)  # fmt: skip
    return dg.Definitions(jobs=[lake_maintenance_job], schedules=[schedule])
