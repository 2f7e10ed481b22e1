"""Analytics: indicators over the warehouse prices from a bounded lookback, and the dashboard."""

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from stock_assets.calendar import session_offset, sessions_between
from stock_assets.defs.common import (
    partition_metadata,
    run_window,
    session_partitioned,
    table_metadata,
    warehouse_kind,
    window_sessions,
)
from stock_assets.lake.io_manager import LakeResource
from stock_assets.reports.dashboard import REPORT_SESSIONS, REPORT_SYMBOLS, render_dashboard
from stock_assets.reports.page import latest_table
from stock_assets.reports.preview import markdown_image
from stock_assets.reports.resource import ReportsResource
from stock_assets.settings import Settings
from stock_assets.transforms.history import describe_sessions, stale_in_warehouse
from stock_assets.transforms.indicators import LOOKBACK_SESSIONS, indicators_for_window
from stock_assets.warehouse.ddl import window_sql
from stock_assets.warehouse.io_manager import WarehouseResource, store_window

__all__ = ["REPORT_SESSIONS", "REPORT_SYMBOLS", "build", "indicators_current"]

INDICATORS_STORAGE = {"warehouse_table": "indicators", "lake_path": "lake/indicators", "log_loads": True}


@dg.asset_check(asset="indicators", description="Every session with prices has indicators computed after the latest load of the prices in its lookback.")
def indicators_current(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    stale = stale_in_warehouse(warehouse.get(), "indicators", LOOKBACK_SESSIONS)
    return dg.AssetCheckResult(
        passed=not stale,
        severity=dg.AssetCheckSeverity.WARN,  # stale_indicators_sensor requests the recomputation
        metadata={"stale_sessions": len(stale), "sample": describe_sessions(stale) or "none"},
    )


def build(settings: Settings) -> dg.Definitions:
    partitioned = session_partitioned(settings)

    @dg.asset(
        **partitioned,
        io_manager_key="warehouse_io_manager",
        metadata=INDICATORS_STORAGE,
        deps=["redshift_table"],
        group_name="analytics",
        kinds={warehouse_kind(settings), "numpy"},
    )
    def indicators(context: dg.AssetExecutionContext, warehouse: WarehouseResource, lake: LakeResource) -> dg.Output[pa.Table]:
        """Per symbol and bar: SMA 7/20/30/50/200, EMA 12/26, MACD, Bollinger, RSI 14, ATR 14, returns,
        volatility (TA-Lib definitions), on adj_close where present, else close (price_basis).

        Loaded sessions up to 400 sessions after the window have the window in their lookback:
        they are recomputed in the same run, so the order in which windows load does not matter."""
        sessions, symbols = window_sessions(context), run_window(context, settings).symbols  # the window's symbols' indicators only
        store = warehouse.get()
        horizon = session_offset(sessions[-1], LOOKBACK_SESSIONS)
        after = session_offset(sessions[-1], 1)
        later = store.query(f"SELECT DISTINCT session FROM prices WHERE {window_sql(after, horizon, symbols)} ORDER BY session") if after > sessions[-1] else None
        later = later["session"].to_pylist() if later is not None else []
        values, since = indicators_for_window(store, sessions[0], later[-1] if later else sessions[-1], symbols=symbols)
        in_window = pc.less_equal(values["session"], pa.scalar(sessions[-1], pa.date32()))
        if later:
            storage = lake.storage()
            after = values.filter(pc.invert(in_window))
            store_window(warehouse.get(lake=storage), storage, INDICATORS_STORAGE, after, sessions_between(later[0], later[-1]), context.run.run_id, symbols)
            context.log.info(f"indicators: recomputed {len(later)} loaded sessions after the window ({describe_sessions(later)}): their lookback includes it")
            for key, meta in partition_metadata(after, later).items():
                context.log_event(dg.AssetMaterialization("indicators", partition=key, metadata=meta | {"recomputed_by_window": f"{sessions[0]}..{sessions[-1]}"}))
            values = values.filter(in_window)
        basis = {b["values"]: b["counts"] for b in pc.value_counts(values["price_basis"]).to_pylist()}
        metadata = table_metadata(context, values, sessions) | {
            "lookback_from": str(since),
            "price_basis": str(basis or "none"),
            "recomputed_after_window": len(later),
        }
        return dg.Output(values, metadata=metadata)

    # single_run: `dagster asset materialize --partition-range` takes only assets that declare it.
    @dg.asset(deps=["indicators", "dq_report"], group_name="analytics", kinds={"html", "plotly"}, backfill_policy=dg.BackfillPolicy.single_run())
    def dashboard(warehouse: WarehouseResource, reports: ReportsResource) -> dg.MaterializeResult:
        """One self-contained HTML page (works offline): price, moving averages, volume, Bollinger, MACD,
        RSI, a volatility heatmap and data quality for the latest 250 loaded sessions, whichever
        window ran: sessions with no data are drawn as gaps and named on the page. During a session,
        today so far (live_prices) beside history; each live refresh redraws it too.

        Not partitioned: it is one page, drawn once per run (or once after a backfill's runs), so
        a 10-year backfill records one materialization of it, not one per session."""
        page = render_dashboard(warehouse.get(), reports.path("dashboard.html"), interval=settings.interval)
        data, path = page.data, page.path
        prices = {s: data.bars.loc[data.bars["symbol"] == s, "price"].to_numpy(float) for s in data.symbols}
        chart = markdown_image(prices, "price rebased to the first session")
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(path)),
                "preview": dg.MetadataValue.md(f"{chart}\n\n{latest_table(data).to_markdown()}"),
                "shown": f"{data.first}..{data.last}",
                "symbols": f"{len(data.symbols)} of {len(data.universe)}",
                "not_loaded_sessions": len(data.not_loaded),
                "today_so_far": f"{page.today.session} as of {page.today.label} New York" if page.today else "none",
                "bytes": path.stat().st_size,
            }
        )

    return dg.Definitions(assets=[indicators, dashboard], asset_checks=[indicators_current])
