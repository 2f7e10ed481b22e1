"""Window checks: reconciliation between layers, completeness against the calendar and the
universe, partial bars, and unexplained jumps. Each returns dq_report rows per session."""

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stock_assets import tables
from stock_assets.schema import constant
from stock_assets.transforms.quality import SAMPLE_SIZE, failing_by_session, session_rows

KEY = ("symbol", "interval", "ts", "session")  # a bar's key, in the order the lake sorts by


def rows_per_session(bars: pa.Table, distinct_keys: bool = False) -> dict[dt.date, int]:
    """Rows (or distinct keys) per session. Keys are counted where they change, when the rows are
    in the lake's order (as the lake hands them over); else by DuckDB."""
    if not distinct_keys or bars.num_rows < 2:
        return {c["values"]: c["counts"] for c in pc.value_counts(bars["session"]).to_pylist()}
    if tables.is_sorted(bars, KEY):
        firsts = pc.filter(bars["session"], pa.array(tables.starts(bars, KEY)))
        return {c["values"]: c["counts"] for c in pc.value_counts(firsts).to_pylist()}
    distinct = "SELECT session, count(*) FROM (SELECT DISTINCT session, symbol, interval, ts FROM bars) GROUP BY session"
    return dict(tables.duckdb_over(bars=bars.select(list(KEY))).sql(distinct).fetchall())


def reconcile(check: str, asset: str, sessions: list[dt.date], expected: dict, got: dict, what: tuple[str, str]) -> pa.Table:
    """Per session, |got - expected| must be 0; the sample says both counts."""
    gaps = {s: abs(got.get(s, 0) - expected.get(s, 0)) for s in sessions}
    samples = {s: f"{what[0]} {expected.get(s, 0)}, {what[1]} {got.get(s, 0)}" for s in sessions if gaps[s]}
    return session_rows(check, "ERROR", asset, sessions, gaps, samples)


def intact(damaged: dict[str, str], sessions: list[dt.date]) -> pa.Table:
    """Landing files that differ from their record ({uri: why}), per session: ERROR."""
    per_session: dict[dt.date, list[str]] = {}
    for uri, why in damaged.items():
        session = dt.date.fromisoformat(uri.rsplit("/", 2)[1])
        per_session.setdefault(session, []).append(f"{uri}: {why}")
    samples = {s: "; ".join(found[:SAMPLE_SIZE]) for s, found in per_session.items()}
    return session_rows("landing_files_intact", "ERROR", "lake_parquet", sessions, {s: len(f) for s, f in per_session.items()}, samples)


def absent_symbols(bars: pa.Table, symbols: list[str], traded_before: set[str], quarantined: set[str]) -> dict[str, list[str]]:
    """Symbols of the universe with no bar in the whole window, by what explains it:
    `unexplained` (it has a bar on the session before the window and none set aside in it: an
    outage, a halt or a delisting; production must not lack it), `quarantined` (its bars in the
    window were set aside with their reason) and `not_listed_yet` (no bar before the window either)."""
    present = set(pc.unique(bars["symbol"]).to_pylist()) if bars.num_rows else set()
    absent = sorted(set(symbols) - present)
    return {
        "unexplained": [s for s in absent if s in traded_before and s not in quarantined],
        "quarantined": [s for s in absent if s in quarantined],
        "not_listed_yet": [s for s in absent if s not in traded_before and s not in quarantined],
    }


def completeness(bars: pa.Table, sessions: list[dt.date], symbols: list[str], asset: str, absent: dict[str, list[str]] | None = None) -> pa.Table:
    """Per session, the symbols of the universe with no bar at all. WARN (a listing can pause, a
    symbol can be listed mid-window), ERROR when `absent` (absent_symbols) has `unexplained` ones."""
    expected = pa.table({"session": pa.array(sessions, pa.date32())}), pa.table({"symbol": pa.array(sorted(set(symbols)), pa.string())})
    con = tables.duckdb_over(bars=bars.select(["session", "symbol"]), sessions=expected[0], universe=expected[1])
    gaps = con.sql(
        "SELECT session, symbol FROM sessions CROSS JOIN universe ANTI JOIN bars USING (session, symbol) ORDER BY session, symbol"
    ).fetchall()  # only the missing (session, symbol) pairs come back to Python: usually none
    missing: dict[dt.date, list[str]] = {}
    for session, symbol in gaps:
        missing.setdefault(session, []).append(symbol)
    samples = {s: ", ".join(f"{sym}@{s}" for sym in m[:SAMPLE_SIZE]) for s, m in missing.items()}
    severity = "ERROR" if absent and absent["unexplained"] else "WARN"
    return session_rows("prices_complete", severity, asset, sessions, {s: len(m) for s, m in missing.items()}, samples)


def partial_bars(bars: pa.Table, sessions: list[dt.date], closes: dict[dt.date, dt.datetime], asset: str) -> pa.Table:
    """Bars fetched before they ended (a daily bar before its session's close, an intraday bar
    before its start + interval or the close, whichever comes first: 15:30's 60min bar ends at 16:00): WARN."""
    closing = pa.table({"session": list(closes), "close_at": pa.array(list(closes.values()), pa.timestamp("us", tz="UTC"))})
    marked = bars.select(["session", "ts", "interval", "ingested_at"]).append_column("_row", pa.array(np.arange(bars.num_rows, dtype=np.int64)))
    rows = tables.duckdb_over(bars=marked, closing=closing).sql(
        """
        SELECT _row FROM bars LEFT JOIN closing USING (session)
        WHERE ingested_at < CASE WHEN interval = '1d' THEN close_at
              ELSE least(ts + to_minutes(CAST(regexp_extract(interval, '(\\d+)min', 1) AS INTEGER)), close_at) END
        """
    ).fetchall()
    mask = constant(False, pa.bool_(), bars.num_rows) if not rows else pc.is_in(marked["_row"], value_set=pa.array([r[0] for r in rows], pa.int64()))
    return session_rows("prices_final_bars", "WARN", asset, sessions, *failing_by_session(bars, mask))


SERIES = ("symbol", "interval", "ts")  # a bar series in time order


def _price(bars: pa.Table) -> np.ndarray:
    return pc.coalesce(bars["adj_close"], bars["close"]).to_numpy(zero_copy_only=False).astype(float)  # nulls: NaN


def _moves_in_order(bars: pa.Table, previous: pa.Table) -> np.ndarray:
    """Each bar's move from the bar before it in its series, for `bars` sorted by SERIES and
    `previous` all earlier: a series' first bar moves from its series' last bar in `previous`.
    NaN where there is no bar before or no price (and for 0 after 0: no move); infinite after a price of 0."""
    price = _price(bars)
    before = np.r_[np.nan, price[:-1]]
    first = tables.starts(bars, ("symbol", "interval"))
    before[first] = np.nan
    if previous.num_rows:
        latest = previous.sort_by([("symbol", "ascending"), ("interval", "ascending"), ("ts", "descending")])
        latest = latest.filter(pa.array(tables.starts(latest, ("symbol", "interval"))))
        last = latest.select(["symbol", "interval"]).append_column("_before", pa.array(_price(latest)))
        heads = np.flatnonzero(first)
        joined = bars.select(["symbol", "interval"]).take(heads).append_column("_at", pa.array(heads)).join(last, ["symbol", "interval"])
        before[joined["_at"].to_numpy()] = joined["_before"].to_numpy(zero_copy_only=False)
    with np.errstate(divide="ignore", invalid="ignore"):
        return price / before - 1


def _traded(bars: pa.Table) -> pa.Table:
    return bars.set_column(bars.schema.get_field_index("adj_close"), "adj_close", pa.nulls(bars.num_rows, pa.float64()))


def _split_on_first_bar(bars: pa.Table) -> pa.Table:
    """`bars` (in SERIES order) with split_coefficient 1.0 on every bar but the first of its session:
    intraday bars all carry their session's split, which explains the move into the session only."""
    first = tables.starts(bars, ("symbol", "interval", "session"))
    if first.all():  # daily bars
        return bars
    at = bars.schema.get_field_index("split_coefficient")
    return bars.set_column(at, "split_coefficient", pc.if_else(pa.array(first), bars["split_coefficient"], 1.0))


def jumps(bars: pa.Table, previous: pa.Table, sessions: list[dt.date], threshold: float, asset: str) -> pa.Table:
    """Bar-over-bar moves beyond `threshold` (on adj_close where given, else close) that a
    split coefficient on that bar does not explain, and splits of r whose traded close did not
    move by about 1/r (close / previous close × r off 1 by more than `threshold`: prices that
    are split-adjusted already, which our adjustment would divide again): WARN. In NumPy when the window is in series
    order (as the lake hands it over) and after `previous`, else by a window function in DuckDB."""
    columns = ["symbol", "session", "ts", "interval", "close", "adj_close", "split_coefficient"]
    in_order = bars.num_rows > 1 and tables.is_sorted(bars, SERIES) and not any(previous[c].null_count for c in SERIES)
    if in_order and previous.num_rows:
        in_order = pc.max(previous["ts"]).as_py() < pc.min(bars["ts"]).as_py()
    if in_order:
        bars = _split_on_first_bar(bars)
        with np.errstate(invalid="ignore"):
            moved = np.abs(_moves_in_order(bars, previous.select(columns))) > float(threshold)
        unexplained = pc.fill_null(pc.equal(bars["split_coefficient"], 1.0), True).to_numpy(zero_copy_only=False)
        ratio = bars["split_coefficient"].to_numpy(zero_copy_only=False).astype(float)  # nulls: NaN
        traded = _moves_in_order(_traded(bars), _traded(previous.select(columns)))
        with np.errstate(invalid="ignore"):
            stepless = ~unexplained & (np.abs((1 + traded) * ratio - 1) > float(threshold))
        return session_rows("prices_no_unexplained_jumps", "WARN", asset, sessions, *failing_by_session(bars, pa.array((moved & unexplained) | stepless)))
    both = pa.concat_tables([previous.select(columns), bars.select(columns)]).append_column("_window", pa.concat_arrays([constant(False, pa.bool_(), previous.num_rows), constant(True, pa.bool_(), bars.num_rows)]))
    moved = tables.duckdb_over(bars=both).sql(
        f"""
        SELECT symbol, session FROM (
            SELECT *, coalesce(adj_close, close) / lag(coalesce(adj_close, close)) OVER (PARTITION BY symbol, interval ORDER BY ts) - 1 AS move,
                   close / lag(close) OVER (PARTITION BY symbol, interval ORDER BY ts) * split_coefficient - 1 AS step
            FROM (SELECT * REPLACE (CASE WHEN lag(session) OVER (PARTITION BY symbol, interval ORDER BY ts) IS DISTINCT FROM session
                                         THEN split_coefficient ELSE 1.0 END AS split_coefficient) FROM bars))
        WHERE _window AND ((abs(move) > {float(threshold)} AND NOT isnan(move) AND coalesce(split_coefficient, 1.0) = 1.0)
                           OR (coalesce(split_coefficient, 1.0) <> 1.0 AND abs(step) > {float(threshold)} AND NOT isnan(step)))
        """
    ).to_arrow_table()
    return session_rows("prices_no_unexplained_jumps", "WARN", asset, sessions, *failing_by_session(moved, constant(True, pa.bool_(), moved.num_rows)))
