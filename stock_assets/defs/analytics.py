"""Analytics: indicators over the warehouse prices from a bounded lookback, and the dashboard."""

import datetime as dt

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from stock_assets.defs.common import SESSION_PARTITIONED, table_metadata, window_sessions
from stock_assets.reports.data import read_report_data
from stock_assets.reports.page import latest_table, render, write_atomic
from stock_assets.reports.preview import markdown_image
from stock_assets.reports.resource import ReportsResource
from stock_assets.transforms.indicators import indicators_for_window
from stock_assets.warehouse.io_manager import WarehouseResource

REPORT_SESSIONS = 250  # the dashboard shows this many sessions, ending at the window's last
REPORT_SYMBOLS = 25  # and at most this many symbols: 500 took ~36 s of plotting per run


@dg.asset(
    **SESSION_PARTITIONED,
    io_manager_key="warehouse_io_manager",
    metadata={"warehouse_table": "indicators", "lake_path": "lake/indicators"},
    deps=["redshift_table"],
    group_name="analytics",
    kinds={"duckdb", "numpy"},
)
def indicators(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.Output[pa.Table]:
    """Per symbol and bar: SMA 7/20/30/50/200, EMA 12/26, MACD, Bollinger, RSI 14, ATR 14, returns,
    volatility (TA-Lib definitions), on adj_close where present, else close (price_basis)."""
    sessions = window_sessions(context)
    values, since = indicators_for_window(warehouse.get(), sessions[0], sessions[-1])
    basis = {b["values"]: b["counts"] for b in pc.value_counts(values["price_basis"]).to_pylist()}
    metadata = table_metadata(values, sessions) | {"lookback_from": str(since), "price_basis": str(basis or "none")}
    return dg.Output(values, metadata=metadata)


@dg.asset(
    **SESSION_PARTITIONED,
    deps=["indicators", "dq_report"],
    group_name="analytics",
    kinds={"html", "plotly"},
)
def dashboard(context: dg.AssetExecutionContext, warehouse: WarehouseResource, reports: ReportsResource) -> dg.MaterializeResult:
    """One self-contained HTML page (works offline): price, moving averages, volume, Bollinger, MACD,
    RSI, a volatility heatmap and data quality for the 250 sessions up to the window's end."""
    sessions = window_sessions(context)
    data = read_report_data(warehouse.get(), sessions[-1], REPORT_SESSIONS, REPORT_SYMBOLS)
    path = write_atomic(reports.path("dashboard.html"), render(data, dt.datetime.now(dt.UTC)))
    prices = {s: data.bars.loc[data.bars["symbol"] == s, "price"].to_numpy(float) for s in data.symbols}
    chart = markdown_image(prices, "price rebased to the first session")
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(path)),
            "preview": dg.MetadataValue.md(f"{chart}\n\n{latest_table(data).to_markdown()}"),
            "shown": f"{data.first}..{data.last}",
            "symbols": len(data.symbols),
            "bytes": path.stat().st_size,
            "window": f"{sessions[0]}..{sessions[-1]}",
        }
    )
