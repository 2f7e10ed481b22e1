"""What every session-partitioned asset shares: partitions, a backfill policy sized to the universe, metadata."""

import datetime as dt
from urllib.parse import urlsplit

import dagster as dg
import numpy as np
import pyarrow as pa
from dagster._core.execution.context.metadata_logging import AssetMetadataHandle, OutputMetadataAccumulator

from stock_assets.calendar import sessions_between
from stock_assets.partitions import trading_sessions_partitions
from stock_assets.settings import Settings, sessions_per_run
from stock_assets.window import InvalidWindowError, Window, window_of


def backfill_policy(settings: Settings) -> dg.BackfillPolicy:
    """A range runs in as few runs as hold it: at most ROWS_PER_RUN bars a run, sized from the
    universe and the interval. Daily bars for hundreds of symbols fit every session since the
    start in one run (single_run, which `dagster asset materialize --partition-range` needs);
    one-minute bars go a few dozen sessions a run. The UI's backfills, the daemon's and
    `make backfill` split a range the same way."""
    per_run = sessions_per_run(len(settings.symbols), settings.interval, settings.rows_per_run)
    if per_run >= len(sessions_between(settings.start, dt.date.today())):
        return dg.BackfillPolicy.single_run()
    return dg.BackfillPolicy.multi_run(max_partitions_per_run=per_run)


def warehouse_kind(settings: Settings) -> str:
    """The warehouse engine, as the UI's kind tag names it."""
    return {"duckdb": "duckdb", "postgresql": "postgres", "postgres": "postgres", "redshift": "redshift"}[urlsplit(settings.warehouse_url).scheme]


def lake_asset(settings: Settings, lake_path: str, group: str, kinds: set[str], **more) -> dg.asset:
    """The decorator of an asset whose window the lake IO manager keeps at `lake_path`."""
    return dg.asset(**session_partitioned(settings), io_manager_key="lake_io_manager", metadata={"lake_path": lake_path},
                    group_name=group, kinds=kinds, **more)  # fmt: skip


def session_partitioned(settings: Settings) -> dict:
    """What every session-partitioned asset is declared with: partitions from settings.start on."""
    return {"partitions_def": trading_sessions_partitions(settings.start), "backfill_policy": backfill_policy(settings)}


RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")  # a run's sessions


def last_materialization_in_run(instance: dg.DagsterInstance, key: dg.AssetKey, run_id: str) -> dg.AssetMaterialization | None:
    """The run's last materialization of `key`: found by the asset's index at the run's last session
    (reading every event of a 10-year run took seconds), else among all the run's events."""
    run = instance.get_run_by_id(run_id)
    last = run.tags.get(RANGE_TAGS[1]) or run.tags.get("dagster/partition") if run else None
    if last:
        for record in instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key, asset_partitions=[last]), limit=10).records:
            if record.run_id == run_id:
                return record.asset_materialization
    events = [r.asset_materialization for r in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
              if r.asset_materialization.asset_key == key]  # fmt: skip
    return events[-1] if events else None
# A run's symbols: stock_assets.window.SYMBOLS_TAG (absent: the configured universe).
PREVIEW_ROWS = 3
PREVIEW_COLUMNS = ("symbol", "session", "interval", "open", "high", "low", "close", "volume", "check_name", "passed", "sma_20", "rsi_14")


def window_sessions(context: dg.AssetExecutionContext) -> list[dt.date]:
    return [dt.date.fromisoformat(k) for k in context.partition_keys]


def run_window(context: dg.AssetExecutionContext, settings: Settings) -> Window:
    """The run's window: its sessions, and the symbols of its `stock_assets/symbols` tag or the universe."""
    try:
        return window_of(context.partition_keys, context.run.tags, settings.symbols)
    except InvalidWindowError as err:
        raise dg.Failure(f"{err} (not retried: fix the run's tag, then run again)", allow_retries=False) from None


def _markdown(rows: list[dict]) -> str:
    if not rows:
        return "no rows"
    names = list(rows[0])
    cells = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    cells += ["| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row.values()) + " |" for row in rows]
    return "\n".join(cells)


def partition_metadata(table: pa.Table, sessions: list[dt.date]) -> dict[str, dict]:
    """Per session key: its own row count and a preview of its first rows."""
    shown = table.select([c for c in PREVIEW_COLUMNS if c in table.column_names])
    days = shown["session"].combine_chunks().cast(pa.int32()).to_numpy(zero_copy_only=False) if table.num_rows else np.zeros(0, np.int32)
    order = np.argsort(days, kind="stable")
    sorted_days = days[order]
    keys = np.array([(session - dt.date(1970, 1, 1)).days for session in sessions], np.int32)
    lo, hi = np.searchsorted(sorted_days, keys, "left"), np.searchsorted(sorted_days, keys, "right")
    shown_per_session = np.minimum(hi - lo, PREVIEW_ROWS)
    # One take for every session's preview: a take per session costs a pass over a chunked window (22 s for 10 years).
    picks = np.concatenate([order[a : a + n] for a, n in zip(lo, shown_per_session)] or [np.zeros(0, np.int64)])
    rows, at, out = shown.take(pa.array(picks, pa.int64())).to_pylist(), 0, {}
    for session, count, n in zip(sessions, hi - lo, shown_per_session):
        out[str(session)] = {"dagster/row_count": int(count), "preview": dg.MetadataValue.md(_markdown(rows[at : at + n]))}
        at += n
    return out


def add_partition_metadata(context: dg.AssetExecutionContext, per_partition: dict[str, dict]) -> None:
    """context.add_asset_metadata(meta, partition_key=key) for every key at once. The public call
    recomputes the run's whole partition range to validate each key (4 ms with the NYSE
    exclusions: 50 s for a 10-year window of five assets), so a window's keys, all of them
    targeted by construction, go into the step's metadata in one update."""
    step = getattr(context.op_execution_context, "_step_execution_context", None)
    accumulated = getattr(step, "_metadata_accumulator", None)
    if not isinstance(accumulated, OutputMetadataAccumulator):
        for key, meta in per_partition.items():
            context.add_asset_metadata(meta, partition_key=key)
        return
    asset_key = context.assets_def.key
    merged = dict(accumulated.per_output_metadata)
    for key, meta in per_partition.items():
        handle = AssetMetadataHandle(asset_key=asset_key, partition_key=key)
        merged[handle] = {**merged.get(handle, {}), **meta}
    step._metadata_accumulator = OutputMetadataAccumulator(per_output_metadata=merged)


def table_metadata(context: dg.AssetExecutionContext, table: pa.Table, sessions: list[dt.date]) -> dict:
    """Each session's own row count and preview on its own partition's materialization; for the
    run's window (on every partition: keep it short) its extent and total rows."""
    add_partition_metadata(context, partition_metadata(table, sessions))
    return {"window": f"{sessions[0]}..{sessions[-1]}", "window_sessions": len(sessions), "window_rows": table.num_rows}
