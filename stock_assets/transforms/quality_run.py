"""The dq_report of a run's window, every check at once, as a plain function: the dq_report
asset (stock_assets/defs/quality.py) adds the run's id, time and scope and gates on it."""

import pandas as pd
import pyarrow as pa

from stock_assets.calendar import nyse_calendar
from stock_assets.transforms.quality import RULES, Rule, duplicate_key, evaluate
from stock_assets.transforms.quality_window import (
    absent_symbols,
    completeness,
    intact,
    jumps,
    partial_bars,
    reconcile,
    rows_per_session,
)

LAKE_DUPLICATES = Rule("lake_duplicate_keys", "Bars landed more than once (resolved by dedup, latest ingestion wins).", "WARN", duplicate_key)


def evaluate_window(lake, landing, deduped, previous, sessions, symbols, jump_threshold, quarantined=frozenset()) -> pa.Table:
    """Every dq_report row of the window, run id and time left empty. `landing`: rows in landing
    per session and the damaged landing files (layout.inspect_landing); `previous`: lake/deduped
    on the session before the window; `quarantined`: symbols set aside in the window."""
    landing_rows, damaged = landing
    absent = absent_symbols(deduped, symbols, set(previous["symbol"].to_pylist()), set(quarantined))
    cal = nyse_calendar().schedule["close"].reindex(pd.DatetimeIndex(sessions))  # one lookup for the window
    closes = dict(zip(sessions, cal.dt.to_pydatetime()))
    return pa.concat_tables(
        [
            evaluate(RULES, deduped, sessions, "deduped_prices"),
            evaluate((LAKE_DUPLICATES,), lake, sessions, "lake_parquet"),
            intact(damaged, sessions),
            reconcile("landing_rows_reconcile", "lake_parquet", sessions, landing_rows, rows_per_session(lake), ("landing rows", "lake rows")),
            reconcile("deduped_rows_reconcile", "deduped_prices", sessions, rows_per_session(lake, distinct_keys=True), rows_per_session(deduped), ("lake keys", "deduped rows")),
            completeness(deduped, sessions, symbols, "deduped_prices", absent),
            partial_bars(deduped, sessions, closes, "deduped_prices"),
            jumps(deduped, previous, sessions, jump_threshold, "deduped_prices"),
        ]
    )
