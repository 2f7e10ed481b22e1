"""Row rules over canonical bars, evaluated per session into dq_report rows.

A rule marks the rows that fail it; `evaluate` counts them per session and samples their
keys. ERROR rules are blocking (they stop the warehouse load), WARN rules are reported.
Checks that compare tables or look across sessions are in `quality_window`.
"""

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stock_assets import tables
from stock_assets.schema import KEY_COLUMNS, REQUIRED_COLUMNS

DQ_SCHEMA = pa.schema(
    {
        "session": pa.date32(),
        "check_name": pa.string(),
        "asset": pa.string(),
        "passed": pa.bool_(),
        "severity": pa.string(),
        "observed": pa.float64(),
        "threshold": pa.float64(),
        "sample": pa.string(),
        "run_id": pa.string(),
        "checked_at": pa.timestamp("us", tz="UTC"),
        "scope": pa.string(),  # whose rows were judged: 'universe', or a window's symbols (stock_assets.window)
    }
)
SAMPLE_SIZE = 5
EPOCH = dt.date(1970, 1, 1)


def session_rows(
    check: str, severity: str, asset: str, sessions: list[dt.date], observed: dict, samples: dict, threshold: float = 0.0
) -> pa.Table:
    """dq_report rows for one check: a session passes when its observed value <= threshold."""
    values = [float(observed.get(s, 0)) for s in sessions]
    n = len(sessions)
    return pa.table(
        {
            "session": sessions,
            "check_name": [check] * n,
            "asset": [asset] * n,
            "passed": [v <= threshold for v in values],
            "severity": [severity] * n,
            "observed": values,
            "threshold": [float(threshold)] * n,
            "sample": [samples.get(s, "") for s in sessions],
            "run_id": pa.nulls(n, pa.string()),
            "checked_at": pa.nulls(n, pa.timestamp("us", tz="UTC")),
            "scope": pa.nulls(n, pa.string()),
        },
        schema=DQ_SCHEMA,
    )


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    severity: str  # "ERROR" blocks the warehouse load, "WARN" does not
    failing: Callable[[pa.Table], pa.Array]  # True for each failing row


def _any_null(t: pa.Table) -> pa.Array:
    masks = [pc.is_null(t[c], nan_is_null=True) for c in REQUIRED_COLUMNS]
    out = masks[0]
    for m in masks[1:]:
        out = pc.or_(out, m)
    return out


def _nonpositive_price(t: pa.Table) -> pa.Array:
    out = pc.less_equal(t["open"], 0)
    for c in ("high", "low", "close"):
        out = pc.or_kleene(out, pc.less_equal(t[c], 0))
    return out


def _ohlc_inconsistent(t: pa.Table) -> pa.Array:
    lo, hi = pc.min_element_wise(t["open"], t["close"]), pc.max_element_wise(t["open"], t["close"])
    return pc.or_kleene(pc.or_kleene(pc.greater(t["low"], lo), pc.less(t["high"], hi)), pc.greater(t["low"], t["high"]))


def duplicate_key(t: pa.Table) -> pa.Array:
    """True for every row that shares its (symbol, interval, ts) with another row."""
    if tables.is_sorted(t, KEY_COLUMNS):
        return pa.array(tables.repeated_rows(t, KEY_COLUMNS))
    keys = t.select(list(KEY_COLUMNS)).group_by(list(KEY_COLUMNS)).aggregate([([], "count_all")])
    dupes = keys.filter(pc.greater(keys["count_all"], 1)).drop_columns(["count_all"])
    mask = np.zeros(t.num_rows, bool)
    if dupes.num_rows:
        marked = t.select(list(KEY_COLUMNS)).append_column("_row", pa.array(np.arange(t.num_rows)))
        mask[marked.join(dupes, list(KEY_COLUMNS), join_type="inner")["_row"].to_numpy()] = True
    return pa.array(mask)


RULES = (
    Rule("prices_not_null", "No bar lacks a required field (prices, volume, keys).", "ERROR", _any_null),
    Rule("prices_positive", "Open, high, low and close are all above zero.", "ERROR", _nonpositive_price),
    Rule("prices_ohlc_consistent", "low <= min(open, close), high >= max(open, close), low <= high.", "ERROR", _ohlc_inconsistent),
    Rule("prices_unique_keys", "One bar per (symbol, interval, ts) after deduplication.", "ERROR", duplicate_key),
    Rule("volume_nonzero", "Volume is above zero (a zero can be a halt, so it warns).", "WARN", lambda t: pc.less_equal(t["volume"], 0)),
)


def failing_by_session(bars: pa.Table, mask: pa.Array) -> tuple[dict, dict]:
    """Count the rows `mask` marks per session, and sample up to SAMPLE_SIZE `SYMBOL@session` keys."""
    mask = pc.fill_null(mask, False).to_numpy(zero_copy_only=False) if bars.num_rows else np.zeros(0, bool)
    failing = np.flatnonzero(mask)
    row_days = bars["session"].combine_chunks().cast(pa.int32()).fill_null(-1).to_numpy(zero_copy_only=False)[failing]
    order = np.argsort(row_days, kind="stable")
    failing, days = failing[order], row_days[order]
    values, starts, counts = np.unique(days, return_index=True, return_counts=True)
    keep = (np.arange(len(days)) - np.repeat(starts, counts)) < SAMPLE_SIZE
    symbols = bars["symbol"].take(pa.array(failing[keep])).fill_null("?").to_pylist()
    samples: dict = {}
    for day, symbol in zip(days[keep], symbols):
        session = EPOCH + dt.timedelta(days=int(day))
        samples[session] = f"{samples[session]}, {symbol}@{session}" if session in samples else f"{symbol}@{session}"
    observed = {EPOCH + dt.timedelta(days=int(d)): int(c) for d, c in zip(values, counts)}
    return observed, samples


def evaluate(rules: tuple[Rule, ...], bars: pa.Table, sessions: list[dt.date], asset: str) -> pa.Table:
    """One row per (session, rule): failing-row count as `observed`, threshold 0."""
    tables = [session_rows(r.name, r.severity, asset, sessions, *failing_by_session(bars, r.failing(bars))) for r in rules]
    return pa.concat_tables(tables) if tables else DQ_SCHEMA.empty_table()
