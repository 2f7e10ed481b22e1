"""What every session-partitioned asset shares: partitions, single-run backfills, metadata."""

import datetime as dt

import dagster as dg
import pyarrow as pa

from stock_assets.partitions import trading_sessions

# Every asset runs a whole partition range in one run: a 10-year backfill is one run.
SESSION_PARTITIONED = {"partitions_def": trading_sessions, "backfill_policy": dg.BackfillPolicy.single_run()}


def window_sessions(context: dg.AssetExecutionContext) -> list[dt.date]:
    return [dt.date.fromisoformat(k) for k in context.partition_keys]


def table_metadata(table: pa.Table, sessions: list[dt.date]) -> dict:
    """Rows, sessions and a short preview: what a person looks for on a materialization."""
    preview = table.slice(0, 5).to_pandas()
    return {
        "dagster/row_count": table.num_rows,
        "sessions": len(sessions),
        "window": f"{sessions[0]}..{sessions[-1]}",
        "preview": dg.MetadataValue.md(preview.to_markdown(index=False)),
    }
