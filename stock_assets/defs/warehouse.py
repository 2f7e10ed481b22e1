"""Warehouse: the deduped window loaded into `prices`, after the quality gate passed; then
the warehouse is reconciled against the lake, and kept fresh."""

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from stock_assets.calendar import closed_sessions
from stock_assets.defs.common import run_window, session_partitioned, table_metadata, warehouse_kind, window_sessions
from stock_assets.lake.io_manager import LakeResource
from stock_assets.live import drop_final
from stock_assets.restatement import read_actions
from stock_assets.settings import Settings
from stock_assets.transforms.actions import adjust
from stock_assets.transforms.history import describe_gaps, describe_sessions, history_gaps, not_loaded
from stock_assets.transforms.quality_window import reconcile, rows_per_session
from stock_assets.warehouse.ddl import window_sql
from stock_assets.warehouse.io_manager import WarehouseResource


def build(settings: Settings) -> dg.Definitions:
    partitioned = session_partitioned(settings)

    @dg.asset(
        **partitioned,
        io_manager_key="warehouse_io_manager",
        metadata={"warehouse_table": "prices", "lake_source": "lake/deduped", "log_loads": True},  # Redshift COPYs the lake's files
        deps=["dq_report"],
        group_name="warehouse",
        kinds={warehouse_kind(settings)},
        check_specs=[
            dg.AssetCheckSpec("warehouse_rows_reconcile", asset="redshift_table", blocking=True, description="Rows in the warehouse equal deduped rows, per session."),
            dg.AssetCheckSpec("prices_no_history_gaps", asset="redshift_table", description="No symbol skips an NYSE session between its first and last loaded bar, over the whole warehouse."),
        ],
    )
    def redshift_table(context: dg.AssetExecutionContext, warehouse: WarehouseResource, lake: LakeResource, deduped_prices: pa.Table):
        """Deduped bars in the warehouse table `prices`, with `adj_factor` (F: adj_close = close × F,
        from corporate_actions); a re-run replaces its sessions in one transaction."""
        sessions = window_sessions(context)
        loaded = adjust(deduped_prices, read_actions(lake.storage(), sorted(set(deduped_prices["symbol"].to_pylist()))))
        yield dg.Output(loaded, metadata=table_metadata(context, loaded, sessions))  # the IO manager loads it here
        window = run_window(context, settings)
        dropped = drop_final(lake.storage(), warehouse.get(lake=lake.storage()), sessions, window.symbols if window.scoped else None,
                             keep_days=settings.lake_retention_days)  # fmt: skip
        if dropped:
            context.log.info(f"live_prices: {dropped} rows of {window} removed: their final bars are loaded")
        loaded = warehouse.get().query(  # the window's symbols' rows: other symbols' are not this window's
            f"SELECT session, count(*) AS n FROM prices WHERE {window_sql(sessions[0], sessions[-1], run_window(context, settings).symbols)} GROUP BY session"
        )
        got = dict(zip(loaded["session"].to_pylist(), loaded["n"].to_pylist()))
        rows = reconcile("warehouse_rows_reconcile", "redshift_table", sessions, rows_per_session(deduped_prices), got, ("deduped rows", "warehouse rows"))
        bad = [s for s, ok in zip(rows["sample"].to_pylist(), rows["passed"].to_pylist()) if not ok]
        yield dg.AssetCheckResult(
            check_name="warehouse_rows_reconcile",
            passed=not bad,
            metadata={"failing_sessions": len(bad), "sample": "; ".join(bad[:5]) or "none", "window": f"{sessions[0]}..{sessions[-1]}"},
        )
        store = warehouse.get()
        loaded = store.query("SELECT DISTINCT session FROM prices_loads")["session"].to_pylist()  # never-loaded sessions are no gaps
        gaps = history_gaps(store.query("SELECT DISTINCT symbol, interval, session FROM prices"), loaded)
        if gaps.num_rows:
            context.log.warning(f"prices: history gaps (indicators across them are NULL): {describe_gaps(gaps)}")
        yield dg.AssetCheckResult(
            check_name="prices_no_history_gaps",
            passed=gaps.num_rows == 0,
            severity=dg.AssetCheckSeverity.WARN,  # a listing can pause; the indicators do not bridge it
            metadata={
                "gaps": gaps.num_rows,
                "failing_rows": int(pc.sum(gaps["sessions"]).as_py() or 0),  # (symbol, session) pairs missing
                "missing_sessions": int(pc.sum(gaps["sessions"]).as_py() or 0),
                "symbols": len(set(gaps["symbol"].to_pylist())),
                "sample": describe_gaps(gaps) or "none",
                "not_loaded": describe_sessions(not_loaded(loaded)) or "none",  # no run loaded them: not a gap
            },
        )

    @dg.asset_check(asset="redshift_table", description="The newest session in `prices` is the last completed NYSE session.")
    def prices_fresh(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        last_closed = closed_sessions(1, floor=settings.start)[0]
        store = warehouse.get()
        newest = store.query("SELECT max(session) AS newest FROM prices")["newest"][0].as_py() if store.table_exists("prices") else None
        return dg.AssetCheckResult(
            passed=newest is not None and str(newest) >= last_closed,
            severity=dg.AssetCheckSeverity.WARN,  # a historical backfill is not stale data
            metadata={"newest_loaded": str(newest), "last_completed_session": last_closed},
        )

    return dg.Definitions(assets=[redshift_table], asset_checks=[prices_fresh])
