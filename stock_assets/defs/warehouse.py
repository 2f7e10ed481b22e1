"""Warehouse: the deduped window loaded into `prices`, after the quality gate passed."""

import dagster as dg
import pyarrow as pa

from stock_assets.defs.common import SESSION_PARTITIONED, table_metadata, window_sessions


@dg.asset(
    **SESSION_PARTITIONED,
    io_manager_key="warehouse_io_manager",
    metadata={"warehouse_table": "prices"},
    deps=["dq_report"],
    group_name="warehouse",
    kinds={"duckdb"},
)
def redshift_table(context: dg.AssetExecutionContext, deduped_prices: pa.Table) -> dg.Output[pa.Table]:
    """Deduped bars in the warehouse table `prices`; a re-run replaces its sessions in one transaction."""
    return dg.Output(deduped_prices, metadata=table_metadata(deduped_prices, window_sessions(context)))
