"""Quality: evaluate every rule over the run's window, record it in dq_report, gate the load.

The checks are declared on dq_report and evaluated once per run over its whole window
(one event per check, not per session); per-session detail is in the dq_report rows.
A failed ERROR check is blocking: dq_report is stored, then the step fails and
redshift_table does not run.
"""

import datetime as dt

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from stock_assets.defs.common import SESSION_PARTITIONED, window_sessions
from stock_assets.providers.resource import ProviderResource
from stock_assets.transforms.quality import DQ_SCHEMA, RULES, completeness, evaluate, reconcile_dedup

CHECKS = [(r.name, r.description, r.severity) for r in RULES] + [
    ("deduped_rows_reconcile", "Deduped rows equal the lake's distinct keys, per session.", "ERROR"),
    ("prices_complete", "Every symbol of the universe has a bar in every session of the window.", "WARN"),
]


@dg.asset(
    **SESSION_PARTITIONED,
    io_manager_key="warehouse_io_manager",
    metadata={"warehouse_table": "dq_report", "lake_path": "lake/dq_report"},
    group_name="quality",
    kinds={"duckdb", "parquet"},
    check_specs=[
        dg.AssetCheckSpec(name, asset="dq_report", description=text, blocking=severity == "ERROR")
        for name, text, severity in CHECKS
    ],
)
def dq_report(context: dg.AssetExecutionContext, provider: ProviderResource, lake_parquet: pa.Table, deduped_prices: pa.Table):
    """One row per (session, check): passed, severity, failing-row count, sample of failing keys."""
    sessions = window_sessions(context)
    report = pa.concat_tables(
        [
            evaluate(RULES, deduped_prices, sessions, "deduped_prices"),
            reconcile_dedup(lake_parquet, deduped_prices, sessions, "deduped_prices"),
            completeness(deduped_prices, sessions, provider.symbols, "deduped_prices"),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    report = report.set_column(8, "run_id", pa.array([context.run_id] * report.num_rows, pa.string()))
    report = report.set_column(9, "checked_at", pa.array([now] * report.num_rows, DQ_SCHEMA.field("checked_at").type))
    failed = report.filter(pc.invert(report["passed"]))
    yield dg.Output(
        report,
        metadata={
            "dagster/row_count": report.num_rows,
            "window": f"{sessions[0]}..{sessions[-1]}",
            "failed": failed.num_rows,
            "failures": dg.MetadataValue.md(failed.select(["session", "check_name", "observed", "sample"]).to_pandas().to_markdown(index=False)) if failed.num_rows else "none",
        },
    )
    for name, _, severity in CHECKS:
        rows = report.filter(pc.equal(report["check_name"], name))
        bad = rows.filter(pc.invert(rows["passed"]))
        yield dg.AssetCheckResult(
            check_name=name,
            passed=bad.num_rows == 0,
            severity=dg.AssetCheckSeverity.ERROR if severity == "ERROR" else dg.AssetCheckSeverity.WARN,
            metadata={
                "failing_rows": int(pc.sum(rows["observed"]).as_py() or 0),
                "failing_sessions": bad.num_rows,
                "sample": "; ".join(s for s in bad["sample"].to_pylist()[:5] if s) or "none",
                "window": f"{sessions[0]}..{sessions[-1]}",
            },
        )
