"""Published snapshot: once every blocking check of the run passed, the version of lake/deduped
the run wrote becomes the production one. published/<timestamp>.json records it (table, Delta
version, time, the run's checks) and published/LATEST is the newest; a consumer reads the table
as of that version, so the prices a model was trained on can be read again exactly."""

import datetime as dt
import json

import dagster as dg

from stock_assets.defs.common import session_partitioned, window_sessions
from stock_assets.lake import delta, layout
from stock_assets.lake.io_manager import LakeResource
from stock_assets.lake.storage import LakeStorage
from stock_assets.settings import Settings

TABLE = "lake/deduped"


def publish_version(storage: LakeStorage, version: int, sessions: list[dt.date], now: dt.datetime, run_id: str, checks: dict[str, bool]) -> dict:
    """Record `version` of lake/deduped as the production one; the manifest."""
    table = delta.open_table(storage, TABLE, version)
    manifest = {
        "table": delta.table_uri(storage, TABLE),
        "version": version,
        "version_written_at": dt.datetime.fromtimestamp(table.history(1)[0]["timestamp"] / 1000, dt.UTC).isoformat(),
        "published_at": now.isoformat(),
        "window": [str(sessions[0]), str(sessions[-1])],
        "rows": delta.dataset(storage, TABLE, version).count_rows(),
        "checks": checks,
        "run_id": run_id,
    }
    body = json.dumps(manifest, indent=2).encode()
    storage.write_bytes(f"published/{layout.stamp(now)}.json", body)
    storage.write_bytes("published/LATEST", body)  # one atomic write: readers see old or new
    return manifest


def run_facts(instance: dg.DagsterInstance, run_id: str) -> tuple[int, dict[str, bool]]:
    """The lake/deduped version this run wrote, and its checks (name -> passed)."""
    written = [r.asset_materialization for r in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
               if r.asset_materialization.asset_key == dg.AssetKey("deduped_prices") and "delta_version" in r.asset_materialization.metadata]  # fmt: skip
    if not written:
        raise dg.Failure(f"run {run_id} wrote no version of {TABLE}: nothing checked to publish", allow_retries=False)
    checks = {}
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = record.dagster_event.event_specific_data
        checks[evaluation.check_name] = checks.get(evaluation.check_name, True) and evaluation.passed
    return written[-1].metadata["delta_version"].value, checks


def build(settings: Settings) -> dg.Definitions:
    partitioned = session_partitioned(settings)

    @dg.asset(**partitioned, deps=["dq_report", "deduped_prices"], group_name="lake", kinds={"deltalake"})
    def published_prices(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
        """The version of lake/deduped this run wrote and checked, recorded as production in
        published/LATEST (and published/<timestamp>.json): read it "as of" that version."""
        sessions = window_sessions(context)
        storage = lake.storage()
        version, checks = run_facts(context.instance, context.run.run_id)
        manifest = publish_version(storage, version, sessions, dt.datetime.now(dt.UTC), context.run.run_id, checks)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": manifest["rows"],
                "table": dg.MetadataValue.path(manifest["table"]),
                "version": version,
                "checks_passed": sum(checks.values()), "checks_failed": len(checks) - sum(checks.values()),
                "window": f"{sessions[0]}..{sessions[-1]}",
            }
        )  # fmt: skip

    return dg.Definitions(assets=[published_prices])
