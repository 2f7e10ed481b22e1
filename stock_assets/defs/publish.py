"""Published snapshot: once every blocking check of the run passed, the version of lake/deduped
the run wrote becomes the production one. published/<timestamp>.json records it (table, Delta
version, time, the run's checks) and published/LATEST is the newest; a consumer reads the table
as of that version, so the prices a model was trained on can be read again exactly."""

import datetime as dt
import json

import dagster as dg

from stock_assets import clock
from stock_assets.defs.actions import restated_in
from stock_assets.defs.common import RANGE_TAGS, last_materialization_in_run
from stock_assets.lake import delta, layout
from stock_assets.lake.io_manager import LakeResource
from stock_assets.lake.storage import LakeStorage
from stock_assets.settings import Settings
from stock_assets.window import SYMBOLS_TAG, parse_symbols

TABLE = "lake/deduped"
COMPLETE = "prices_complete"  # production is a window with every expected symbol, or one whose absence is explained


def commit_time(storage: LakeStorage, prefix: str, version: int) -> dt.datetime:
    """When `version` itself was committed, from its own entry in the Delta log (DeltaTable.history
    gives the newest commits, whatever version the table was loaded at)."""
    path = f"{prefix}/_delta_log/{version:020d}.json"
    for line in storage.read_bytes(path).splitlines():
        if (info := json.loads(line).get("commitInfo")) and "timestamp" in info:
            return dt.datetime.fromtimestamp(info["timestamp"] / 1000, dt.UTC)
    raise ValueError(f"{storage.uri(path)}: the commit of version {version} records no time")


def publish_version(storage: LakeStorage, version: int, sessions: list[dt.date], now: dt.datetime, run_id: str, checks: dict[str, bool],
                    symbols: list[str] | None = None, restated: list[dict] | None = None) -> dict:  # fmt: skip
    """Record `version` of lake/deduped as the production one; the manifest. `symbols`: those of a
    window scoped to them that wrote it (its other symbols' rows are an earlier window's).
    `restated`: the symbols whose earlier sessions a corporate action restated, and which action."""
    manifest = {
        "table": delta.table_uri(storage, TABLE),
        "version": version,
        "version_written_at": commit_time(storage, TABLE, version).isoformat(),
        "published_at": now.isoformat(),
        "window": [str(sessions[0]), str(sessions[-1])],
        "rows": delta.dataset(storage, TABLE, version).count_rows(),
        "checks": checks,
        "run_id": run_id,
    } | ({"symbols": symbols} if symbols else {}) | ({"restated": restated} if restated else {})
    body = json.dumps(manifest, indent=2).encode()
    storage.write_bytes(f"published/{layout.stamp(now)}.json", body)
    storage.write_bytes("published/LATEST", body)  # one atomic write: readers see old or new
    return manifest


def run_facts(instance: dg.DagsterInstance, run_id: str) -> tuple[int, list[dt.date], dict[str, bool], list[str] | None]:
    """The lake/deduped version to publish, the window that wrote it, that run's checks (name
    -> passed) and its symbols when it was scoped to them: this run's own write when it wrote
    one, else the latest write (a backfill publishes once, in a run of its own after the window runs)."""
    key = dg.AssetKey("deduped_prices")
    own = last_materialization_in_run(instance, key, run_id)
    if own is not None and "delta_version" in own.metadata:
        written, writer = own, run_id
    else:
        latest = instance.fetch_materializations(key, limit=1).records
        if not latest or "delta_version" not in latest[0].asset_materialization.metadata:
            raise dg.Failure(f"no version of {TABLE} has been written: nothing checked to publish", allow_retries=False)
        written, writer = latest[0].asset_materialization, latest[0].run_id
    checks, failed = {}, {}
    for record in instance.all_logs(writer, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = record.dagster_event.event_specific_data
        checks[evaluation.check_name] = checks.get(evaluation.check_name, True) and evaluation.passed
        if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
            lacking = evaluation.metadata.get("unexplained")  # prices_complete names the symbols
            failed[evaluation.check_name] = f"{evaluation.check_name} (lacks {lacking.value})" if lacking else evaluation.check_name
    which = f"the latest write of {TABLE} (version {written.metadata['delta_version'].value}, run {writer})"
    if failed:  # in a run of its own (a backfill's), nothing else stops an unchecked version
        raise dg.Failure(f"{which} failed {', '.join(failed[n] for n in sorted(failed))}: not published; production stays as it was", allow_retries=False)
    if COMPLETE not in checks:  # deduped_prices materialized without dq_report: nobody counted the symbols
        raise dg.Failure(f"{which} was never checked for missing symbols ({COMPLETE}): not published; production stays as it was. "
                         "Materialize dq_report for its window, then publish", allow_retries=False)  # fmt: skip
    run = instance.get_run_by_id(writer)
    first, last = (run.tags.get(tag) if run else None for tag in RANGE_TAGS)
    window = [dt.date.fromisoformat(d) for d in (first or written.partition, last or written.partition)]
    scoped = run.tags.get(SYMBOLS_TAG) if run else None
    return written.metadata["delta_version"].value, window, checks, parse_symbols(scoped) if scoped else None


def build(settings: Settings) -> dg.Definitions:
    # single_run: `dagster asset materialize --partition-range` takes only assets that declare it.
    @dg.asset(deps=["dq_report", "deduped_prices"], group_name="lake", kinds={"deltalake"}, backfill_policy=dg.BackfillPolicy.single_run())
    def published_prices(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
        """The version of lake/deduped written and checked last, recorded as production in
        published/LATEST (and published/<timestamp>.json): read it "as of" that version.

        Not partitioned: it is one pointer, so a 10-year backfill records one materialization
        of it, not one per session."""
        version, window, checks, symbols = run_facts(context.instance, context.run.run_id)
        restated = restated_in(context.instance, context.run.run_id)
        manifest = publish_version(lake.storage(), version, window, clock.now(), context.run.run_id, checks, list(symbols or ()), restated)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": manifest["rows"],
                "table": dg.MetadataValue.path(manifest["table"]),
                "version": version,
                "checks_passed": sum(checks.values()), "checks_failed": len(checks) - sum(checks.values()),
                "window": f"{window[0]}..{window[-1]}" + (f" of {','.join(symbols)}" if symbols else ""),
                "restated": "; ".join(f"{r['symbol']}: {r['action']} ({r['sessions']} earlier sessions)" for r in restated) or "none",
            }
        )  # fmt: skip

    return dg.Definitions(assets=[published_prices])
