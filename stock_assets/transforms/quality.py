"""Data-quality rules over canonical bars, evaluated per session into dq_report rows.

A rule marks the rows that fail it; `evaluate` counts them per session and samples their
keys. ERROR rules are blocking (they stop the warehouse load), WARN rules are reported.
"""

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stock_assets.schema import KEY_COLUMNS, REQUIRED_COLUMNS

DQ_SCHEMA = pa.schema(
    [
        ("session", pa.date32()),
        ("check_name", pa.string()),
        ("asset", pa.string()),
        ("passed", pa.bool_()),
        ("severity", pa.string()),
        ("observed", pa.float64()),
        ("threshold", pa.float64()),
        ("sample", pa.string()),
        ("run_id", pa.string()),
        ("checked_at", pa.timestamp("us", tz="UTC")),
    ]
)
SAMPLE_SIZE = 5


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


def _duplicate_key(t: pa.Table) -> pa.Array:
    keys = t.select(list(KEY_COLUMNS)).group_by(list(KEY_COLUMNS)).aggregate([([], "count_all")])
    dupes = keys.filter(pc.greater(keys["count_all"], 1)).drop_columns(["count_all"])
    if dupes.num_rows == 0:
        return pa.array(np.zeros(t.num_rows, bool))
    marked = t.select(list(KEY_COLUMNS)).append_column("_row", pa.array(np.arange(t.num_rows)))
    rows = marked.join(dupes, list(KEY_COLUMNS), join_type="inner")["_row"].to_numpy()
    mask = np.zeros(t.num_rows, bool)
    mask[rows] = True
    return pa.array(mask)


RULES = (
    Rule("prices_not_null", "No bar lacks a required field (prices, volume, keys).", "ERROR", _any_null),
    Rule("prices_positive", "Open, high, low and close are all above zero.", "ERROR", _nonpositive_price),
    Rule("prices_ohlc_consistent", "low <= min(open, close), high >= max(open, close), low <= high.", "ERROR", _ohlc_inconsistent),
    Rule("prices_unique_keys", "One bar per (symbol, interval, ts) after deduplication.", "ERROR", _duplicate_key),
    Rule("volume_nonzero", "Volume is above zero (a zero can be a halt, so it warns).", "WARN", lambda t: pc.less_equal(t["volume"], 0)),
)


def evaluate(rules: tuple[Rule, ...], bars: pa.Table, sessions: list[dt.date], asset: str) -> pa.Table:
    """One row per (session, rule): failing-row count as `observed`, threshold 0."""
    session_days = np.array([(s - dt.date(1970, 1, 1)).days for s in sessions])
    row_days = bars["session"].combine_chunks().cast(pa.int32()).fill_null(-1).to_numpy(zero_copy_only=False)
    symbols = bars["symbol"].fill_null("?").to_numpy(zero_copy_only=False)
    columns: dict[str, list] = {f.name: [] for f in DQ_SCHEMA}
    for rule in rules:
        mask = pc.fill_null(rule.failing(bars), False).to_numpy(zero_copy_only=False) if bars.num_rows else np.zeros(0, bool)
        failing = np.flatnonzero(mask)
        order = failing[np.argsort(row_days[failing], kind="stable")]
        days = row_days[order]
        values, starts, counts = np.unique(days, return_index=True, return_counts=True)
        rank = np.arange(len(days)) - np.repeat(starts, counts)
        samples: dict[int, list[str]] = {}
        for day, row in zip(days[rank < SAMPLE_SIZE], order[rank < SAMPLE_SIZE]):
            samples.setdefault(day, []).append(str(symbols[row]))
        counts = dict(zip(values, counts))
        for session, day in zip(sessions, session_days):
            observed = int(counts.get(day, 0))
            columns["session"].append(session)
            columns["check_name"].append(rule.name)
            columns["asset"].append(asset)
            columns["passed"].append(observed == 0)
            columns["severity"].append(rule.severity)
            columns["observed"].append(float(observed))
            columns["threshold"].append(0.0)
            columns["sample"].append(", ".join(f"{s}@{session}" for s in samples.get(day, [])))
    n = len(columns["session"])
    columns["run_id"], columns["checked_at"] = [None] * n, [None] * n
    return pa.table(columns, schema=DQ_SCHEMA)


def reconcile_dedup(lake: pa.Table, deduped: pa.Table, sessions: list[dt.date], asset: str) -> pa.Table:
    """Per session, deduped rows must equal the lake's distinct (symbol, interval, ts) keys."""
    con = duckdb.connect()
    con.register("lake", lake)
    con.register("deduped", deduped)
    counts = con.sql(
        """
        SELECT session, count(*) AS n FROM (SELECT DISTINCT session, symbol, interval, ts FROM lake) GROUP BY session
        """
    ).fetchall()
    expected = dict(counts)
    got = dict(con.sql("SELECT session, count(*) FROM deduped GROUP BY session").fetchall())
    gaps = [abs(got.get(s, 0) - expected.get(s, 0)) for s in sessions]
    return pa.table(
        {
            "session": sessions,
            "check_name": ["deduped_rows_reconcile"] * len(sessions),
            "asset": [asset] * len(sessions),
            "passed": [g == 0 for g in gaps],
            "severity": ["ERROR"] * len(sessions),
            "observed": [float(g) for g in gaps],
            "threshold": [0.0] * len(sessions),
            "sample": [f"lake keys {expected.get(s, 0)}, deduped rows {got.get(s, 0)}" if g else "" for s, g in zip(sessions, gaps)],
            "run_id": [None] * len(sessions),
            "checked_at": [None] * len(sessions),
        },
        schema=DQ_SCHEMA,
    )


def completeness(bars: pa.Table, sessions: list[dt.date], symbols: list[str], asset: str) -> pa.Table:
    """Per session, the symbols of the universe with no bar at all (WARN: a listing can pause)."""
    con = duckdb.connect()
    con.register("bars", bars.select(["session", "symbol"]))
    present = con.sql("SELECT session, list(DISTINCT symbol) FROM bars GROUP BY session").fetchall()
    have = {session: set(found) for session, found in present}
    missing = [sorted(set(symbols) - have.get(s, set())) for s in sessions]
    n = len(sessions)
    return pa.table(
        {
            "session": sessions,
            "check_name": ["prices_complete"] * n,
            "asset": [asset] * n,
            "passed": [not m for m in missing],
            "severity": ["WARN"] * n,
            "observed": [float(len(m)) for m in missing],
            "threshold": [0.0] * n,
            "sample": [", ".join(f"{sym}@{s}" for sym in m[:SAMPLE_SIZE]) for s, m in zip(sessions, missing)],
            "run_id": [None] * n,
            "checked_at": [None] * n,
        },
        schema=DQ_SCHEMA,
    )
