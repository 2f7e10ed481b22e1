"""Analytics: indicators over the warehouse prices, from a bounded lookback."""

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from stock_assets.defs.common import SESSION_PARTITIONED, table_metadata, window_sessions
from stock_assets.partitions import session_offset
from stock_assets.transforms.indicators import LOOKBACK_SESSIONS, compute_indicators
from stock_assets.warehouse.io_manager import WarehouseResource


@dg.asset(
    **SESSION_PARTITIONED,
    io_manager_key="warehouse_io_manager",
    metadata={"warehouse_table": "indicators", "lake_path": "lake/indicators"},
    deps=["redshift_table"],
    group_name="analytics",
    kinds={"duckdb"},
)
def indicators(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.Output[pa.Table]:
    """Per symbol and bar: SMA 7/30 and daily % change on adj_close (else close)."""
    sessions = window_sessions(context)
    since = session_offset(sessions[0], -LOOKBACK_SESSIONS)
    bars = warehouse.get().query(
        "SELECT symbol, session, ts, interval, close, adj_close FROM prices WHERE session BETWEEN ? AND ?",
        [since, sessions[-1]],
    )
    values = compute_indicators(bars)
    values = values.filter(pc.greater_equal(values["session"], sessions[0]))
    return dg.Output(values, metadata=table_metadata(values, sessions) | {"lookback_from": str(since)})
