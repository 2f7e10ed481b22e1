"""Quality: evaluate every check over the run's window, record it in dq_report, gate the load.

The checks are declared on dq_report and evaluated once per run over its whole window
(one event per check, not per session); per-session detail is in the dq_report rows.
A failed ERROR check is blocking: dq_report is stored, then the step fails and nothing
downstream (the warehouse load, the published snapshot) runs.
"""

import datetime as dt
import io

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from stock_assets.calendar import session_offset
from stock_assets.defs.common import run_window, session_partitioned, table_metadata, warehouse_kind, window_sessions
from stock_assets.lake import layout
from stock_assets.lake.io_manager import LakeResource
from stock_assets.providers.resource import ProviderResource
from stock_assets.schema import constant
from stock_assets.settings import Settings
from stock_assets.transforms.quality import DQ_SCHEMA, RULES
from stock_assets.transforms.quality_run import LAKE_DUPLICATES, evaluate_window
from stock_assets.transforms.quality_window import absent_symbols

COMPLETE = ("Every symbol of the window (the universe, or the run's stock_assets/symbols) has a bar in every session of the window. Blocking (ERROR) only for a symbol with no bar "
            "in the whole window that has one on the session before and none set aside: an outage, not a listing to come.")
CHECKS = [(r.name, r.description, r.severity) for r in (*RULES, LAKE_DUPLICATES)] + [
    ("landing_files_intact", "Every landing file of the window is as it was written (its record: rows, bytes, SHA-256).", "ERROR"),
    ("landing_rows_reconcile", "Rows in landing equal rows in the lake, per session.", "ERROR"),
    ("deduped_rows_reconcile", "Deduped rows equal the lake's distinct keys, per session.", "ERROR"),
    ("prices_complete", COMPLETE, "ERROR"),  # fails as WARN but for a symbol absent without a known reason
    ("prices_final_bars", "No bar was fetched before it ended (a partial bar will change).", "WARN"),
    ("prices_no_unexplained_jumps", ("No bar-over-bar move beyond the threshold without a split coefficient, and no split without "
                                     "its step in the traded close (split-adjusted input would be adjusted twice)."), "WARN"),
]


class QualityConfig(dg.Config):
    jump_threshold: float | None = None  # |move| above this warns; None: STOCK_ASSETS_DQ_JUMP_THRESHOLD


def quarantined_symbols(storage, sessions: list[dt.date]) -> set[str]:
    """Symbols with bars of this window set aside in quarantine/ by landing_csv (with their reason)."""
    files = [p for p in storage.list_files(f"{layout.QUARANTINE}/provider/{sessions[0]}_{sessions[-1]}") if p.endswith(".csv")]
    read = pacsv.ConvertOptions(include_columns=["symbol"], column_types={"symbol": pa.string()})
    return {s for p in files for s in pacsv.read_csv(io.BytesIO(storage.read_bytes(p)), convert_options=read)["symbol"].to_pylist()}


def build(settings: Settings) -> dg.Definitions:
    partitioned = session_partitioned(settings)

    @dg.asset(
        **partitioned,
        io_manager_key="warehouse_io_manager",
        metadata={"warehouse_table": "dq_report", "lake_path": "lake/dq_report"},
        group_name="quality",
        kinds={warehouse_kind(settings), "deltalake"},
        check_specs=[dg.AssetCheckSpec(name, asset="dq_report", description=text, blocking=severity == "ERROR") for name, text, severity in CHECKS],
    )
    def dq_report(
        context: dg.AssetExecutionContext, config: QualityConfig, provider: dg.ResourceParam[ProviderResource], lake: LakeResource,
        lake_parquet: pa.Table, deduped_prices: pa.Table,
    ):
        """One row per (session, check): passed, severity, failing-row count, sample of failing keys."""
        sessions, window = window_sessions(context), run_window(context, settings)  # judged on the window's symbols
        storage, threshold = lake.storage(), config.jump_threshold or settings.dq_jump_threshold
        before = session_offset(sessions[0], -1, floor=settings.start)
        previous = layout.read_sessions(storage, "lake/deduped", [before] if before < sessions[0] else [], symbols=window.symbols)
        landing = layout.inspect_landing(storage, sessions, window.symbols)
        for uri, why in landing[1].items():
            context.log.error(f"landing file {uri}: {why}")
        quarantined = quarantined_symbols(storage, sessions)
        report = evaluate_window(lake_parquet, landing, deduped_prices, previous, sessions, window.symbols, threshold, quarantined)
        absent = absent_symbols(deduped_prices, window.symbols, set(previous["symbol"].to_pylist()), quarantined)
        n = report.num_rows
        report = report.set_column(8, "run_id", constant(context.run.run_id, pa.string(), n))
        report = report.set_column(9, "checked_at", constant(dt.datetime.now(dt.UTC), DQ_SCHEMA.field("checked_at").type, n))
        report = report.set_column(10, "scope", constant(window.scope, pa.string(), n))
        failed = report.filter(pc.invert(report["passed"]))
        yield dg.Output(
            report,
            metadata={
                **table_metadata(context, report, sessions),
                "failed": failed.num_rows,
                "failures": dg.MetadataValue.md(failed.select(["session", "check_name", "severity", "observed", "sample"]).slice(0, 50).to_pandas().to_markdown(index=False)) if failed.num_rows else "none",
            },
        )
        for name, _, severity in CHECKS:
            rows = report.filter(pc.equal(report["check_name"], name))
            bad = rows.filter(pc.invert(rows["passed"]))
            if bad.num_rows:  # a check that blocks only some failures (prices_complete) says which in its rows
                severity = "ERROR" if "ERROR" in bad["severity"].to_pylist() else "WARN"
            explained = {k: ", ".join(v) or "none" for k, v in absent.items()} if name == "prices_complete" else {}
            yield dg.AssetCheckResult(
                check_name=name,
                passed=bad.num_rows == 0,
                severity=dg.AssetCheckSeverity.ERROR if severity == "ERROR" else dg.AssetCheckSeverity.WARN,
                metadata={
                    "failing_rows": int(pc.sum(rows["observed"]).as_py() or 0),
                    "failing_sessions": bad.num_rows,
                    "sample": "; ".join(s for s in bad["sample"].to_pylist()[:5] if s) or "none",
                    "window": f"{sessions[0]}..{sessions[-1]}",
                    **explained,
                },
            )

    return dg.Definitions(assets=[dq_report])
