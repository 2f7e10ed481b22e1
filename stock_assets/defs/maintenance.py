"""Lake maintenance: every Sunday (and from the UI), each Delta table of the lake is compacted
(one file per year, in the table's own order) and vacuumed. Vacuum deletes the files no version
newer than the retention needs: versions older than STOCK_ASSETS_LAKE_RETENTION_DAYS can no
longer be read "as of", except the published production version, which is always kept readable
(its files are kept by version, whatever its age). Each table is reported as it finishes; one
that fails is named and the others are still maintained."""

import datetime as dt
import json
from collections.abc import Iterator

import dagster as dg

from stock_assets import clock
from stock_assets.calendar import NY
from stock_assets.lake import delta
from stock_assets.lake.io_manager import LakeResource
from stock_assets.lake.storage import LakeStorage
from stock_assets.settings import Settings

LAKE_TABLES = ("lake/prices", "lake/deduped", "lake/dq_report", "lake/indicators")
PUBLISHED = "published/LATEST"


def production(storage: LakeStorage) -> tuple[str, int] | None:
    """(table prefix, version) of the published production version, or None before the first
    publish (or when LATEST points at a table moved aside by a rebuild, which is not maintained)."""
    try:
        body = storage.read_bytes(PUBLISHED)
    except FileNotFoundError:
        return None
    try:
        published = json.loads(body)
        table, version = published["table"].rstrip("/"), int(published["version"])
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{storage.uri(PUBLISHED)}: not a readable production manifest ({type(err).__name__}: {err}); "
                         "nothing was vacuumed, as the production version to keep is unknown") from err  # fmt: skip
    prefix = next((p for p in LAKE_TABLES if table.endswith(f"/{p}")), None)
    return (prefix, version) if prefix else None


def retention(days: float, now: dt.datetime) -> dt.timedelta:
    """The retention as delta-rs applies it: it compares the files' removal times with its own
    (system) clock, so the cutoff `now - days` is given as a span back from that clock."""
    return max(dt.timedelta(0), dt.datetime.now(dt.UTC) - (now - dt.timedelta(days=days)))


def maintain_tables(storage: LakeStorage, days: float, now: dt.datetime) -> Iterator[dict]:
    """Each table's report as it is maintained; a table that fails yields its error and the next goes on."""
    kept = production(storage)
    keep = retention(days, now)
    for prefix in LAKE_TABLES:
        versions = (kept[1],) if kept and kept[0] == prefix else ()
        try:
            report = delta.maintain(storage, prefix, keep, versions)
        except RuntimeError as err:  # named by delta.maintain; reported, and the next table is maintained
            report = {"table": prefix, "uri": storage.uri(prefix), "error": str(err)}
        yield report | {"retention_hours": round(days * 24, 1)}


def maintain_lake(storage: LakeStorage, days: float, now: dt.datetime) -> list[dict]:
    return list(maintain_tables(storage, days, now))


def summary(reports: list[dict]) -> str:
    """The reports as a Markdown table, one row per table."""
    rows = ["| table | version | files | compacted | vacuumed | result |", "|---|---|---|---|---|---|"]
    for r in reports:
        result = (r.get("error") or r.get("skipped") or "ok").replace("|", "\\|")
        rows.append(f"| {r['table']} | {r.get('version', '-')} | {r.get('files', '-')} | {r.get('files_compacted', '-')} | {r.get('files_vacuumed', '-')} | {result} |")
    return "\n".join(rows)


def build(settings: Settings) -> dg.Definitions:
    @dg.op
    def compact_and_vacuum_lake(context: dg.OpExecutionContext, lake: LakeResource) -> dg.Output[None]:
        """Compact and vacuum every Delta table of the lake (see the module's docstring)."""
        reports = []
        for report in maintain_tables(lake.storage(), settings.lake_retention_days, clock.now()):
            reports.append(report)
            if "error" in report:
                context.log.error(f"could not maintain {report['error']}")
            else:
                context.log.info(f"maintained {report['uri']}: {json.dumps({k: v for k, v in report.items() if k not in ('table', 'uri')})}")
        metadata = {"tables": dg.MetadataValue.md(summary(reports)), "retention_hours": round(settings.lake_retention_days * 24, 1)}
        if failed := [r for r in reports if "error" in r]:
            raise dg.Failure(f"lake maintenance failed for {len(failed)} of {len(reports)} tables (the others were maintained): "
                             + "; ".join(r["error"] for r in failed), metadata=metadata, allow_retries=False)  # fmt: skip
        return dg.Output(None, metadata=metadata)

    @dg.job(description="Compact (one file per year) and vacuum (STOCK_ASSETS_LAKE_RETENTION_DAYS) the lake's Delta tables.")
    def lake_maintenance_job():
        compact_and_vacuum_lake()

    schedule = dg.ScheduleDefinition(job=lake_maintenance_job, cron_schedule="0 3 * * 0", execution_timezone=NY,
                                     default_status=dg.DefaultScheduleStatus.RUNNING)  # fmt: skip
    return dg.Definitions(jobs=[lake_maintenance_job], schedules=[schedule])
