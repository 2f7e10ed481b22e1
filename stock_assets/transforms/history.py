"""History over many runs: holes in a symbol's loaded history, and indicator sessions left stale
by a later load of the prices in their lookback. Plain functions over small Arrow tables."""

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from stock_assets.calendar import nyse_calendar, session_positions, sessions_between

LOADS_SCHEMA = pa.schema(
    [("session", pa.date32()), ("rows", pa.int64()), ("loaded_at", pa.timestamp("us", tz="UTC")), ("run_id", pa.string())]
)
GAPS_SCHEMA = pa.schema(
    [("symbol", pa.string()), ("interval", pa.string()), ("first_missing", pa.date32()), ("last_missing", pa.date32()), ("sessions", pa.int64())]
)


def _days(column) -> np.ndarray:
    return pc.cast(column, pa.date32()).cast(pa.int32()).to_numpy(zero_copy_only=False).astype(np.int64)


def _session_at(positions: np.ndarray) -> pa.Array:
    sessions = nyse_calendar().sessions
    return pa.array(sessions[positions].date, pa.date32())


def loads_record(data: pa.Table, sessions: list[dt.date], loaded_at: dt.datetime, run_id: str) -> pa.Table:
    """One row per session of a replaced window: how many rows it holds now, when, by which run."""
    counts = pc.value_counts(data["session"]).to_pylist() if data.num_rows else []
    rows = {c["values"]: c["counts"] for c in counts}
    return pa.table(
        {
            "session": sessions,
            "rows": [rows.get(s, 0) for s in sessions],
            "loaded_at": [loaded_at] * len(sessions),
            "run_id": [run_id] * len(sessions),
        },
        schema=LOADS_SCHEMA,
    )


def history_gaps(keys: pa.Table, loaded: list[dt.date] | None = None) -> pa.Table:
    """Runs of NYSE sessions with no bar between a series' first and last bar (GAPS_SCHEMA).

    `keys`: symbol, interval, session (one row per bar or per distinct session; any order).
    `loaded`: the sessions runs loaded (for any symbol). A session never loaded is no one's gap
    (a backfill of an older range leaves years unloaded before the rest), so then only loaded
    sessions count. None: every NYSE session counts."""
    if not keys.num_rows:
        return GAPS_SCHEMA.empty_table()
    keys = keys.select(["symbol", "interval", "session"]).sort_by([("symbol", "ascending"), ("interval", "ascending"), ("session", "ascending")])
    days = _days(keys["session"])
    if loaded is None:
        pos, session_at = session_positions(days), _session_at
    else:
        counted = np.union1d(_days(pa.array(loaded, pa.date32())), days)
        pos = np.searchsorted(counted, days)
        session_at = lambda p: pa.array(counted[p].astype("datetime64[D]"), pa.date32())
    same = np.r_[False, (pc.equal(keys["symbol"].slice(1), keys["symbol"].slice(0, keys.num_rows - 1)).to_numpy(zero_copy_only=False)
                        & pc.equal(keys["interval"].slice(1), keys["interval"].slice(0, keys.num_rows - 1)).to_numpy(zero_copy_only=False))]
    jump = np.r_[0, np.diff(pos)]
    at = np.flatnonzero(same & (jump > 1))
    return pa.table(
        {
            "symbol": keys["symbol"].take(pa.array(at)),
            "interval": keys["interval"].take(pa.array(at)),
            "first_missing": session_at(pos[at] - jump[at] + 1),
            "last_missing": session_at(pos[at] - 1),
            "sessions": pa.array(jump[at] - 1, pa.int64()),
        },
        schema=GAPS_SCHEMA,
    )


def not_loaded(loaded: list[dt.date]) -> list[dt.date]:
    """The NYSE sessions between the first and the last of `loaded` that no run loaded."""
    if not loaded:
        return []
    return sorted(set(sessions_between(min(loaded), max(loaded))) - set(loaded))


def describe_gaps(gaps: pa.Table, limit: int = 10) -> str:
    rows = gaps.slice(0, limit).to_pylist()
    def span(g: dict) -> str:
        days = f"{g['first_missing']}..{g['last_missing']}" if g["sessions"] > 1 else f"{g['first_missing']}"
        return f"{g['symbol']} {g['interval']} {days} ({g['sessions']} session{'s' if g['sessions'] > 1 else ''})"

    text = "; ".join(span(g) for g in rows)
    return text + (f"; and {gaps.num_rows - limit} more" if gaps.num_rows > limit else "")


def describe_sessions(sessions: list[dt.date], limit: int = 5) -> str:
    """Sessions as runs of consecutive NYSE sessions: `2024-01-02..2024-03-28 (61), 2024-05-01`."""
    if not sessions:
        return ""
    pos = session_positions(np.array([(s - dt.date(1970, 1, 1)).days for s in sorted(sessions)], np.int64))
    breaks = np.flatnonzero(np.diff(pos) > 1) + 1
    runs = [(r[0], r[-1], len(r)) for r in np.split(np.array(sorted(sessions)), breaks)]
    text = ", ".join(f"{a}..{b} ({n})" if n > 1 else f"{a}" for a, b, n in runs[:limit])
    return text + (f", and {len(runs) - limit} more runs" if len(runs) > limit else "")


def stale_sessions(prices_loads: pa.Table, derived_loads: pa.Table, lookback: int) -> list[dt.date]:
    """Sessions holding prices whose derived rows (indicators) are missing, or were computed
    before the latest load of a session in their lookback (the `lookback` sessions before, and
    itself). Both tables are LOADS_SCHEMA logs; the latest row per session counts."""
    prices = _latest(prices_loads)
    if prices.empty:
        return []
    derived = _latest(derived_loads)
    lo, hi = int(prices.index.min()), int(prices.index.max())
    loaded = pd.Series(np.nan, index=range(lo - lookback, hi + 1))
    loaded.loc[prices.index] = prices["at"].to_numpy()
    newest_input = loaded.rolling(lookback + 1, min_periods=1).max()
    held = prices.index[prices["rows"].to_numpy() > 0]
    computed = derived["at"].reindex(held).to_numpy()
    stale = held[~(computed >= newest_input.loc[held].to_numpy())]  # NaN (never computed) is stale too
    return list(_session_at(np.asarray(stale)).to_pylist())


def stale_in_warehouse(store, table: str, lookback: int) -> list[dt.date]:
    """stale_sessions of `table` against `prices`, from their `_loads` logs in the warehouse
    (`store`: any engine of stock_assets.warehouse). Nothing recorded yet: nothing known stale."""
    if not store.table_exists("prices_loads"):
        return []
    prices = store.query("SELECT session, rows, loaded_at, run_id FROM prices_loads")
    exists = store.table_exists(f"{table}_loads")
    derived = store.query(f"SELECT session, rows, loaded_at, run_id FROM {table}_loads") if exists else LOADS_SCHEMA.empty_table()
    return stale_sessions(prices, derived, lookback)


def _latest(loads: pa.Table) -> pd.DataFrame:
    """Per session position: its latest load's time (float seconds) and row count."""
    if not loads.num_rows:
        return pd.DataFrame({"at": [], "rows": []}, index=pd.Index([], dtype=np.int64))
    frame = pd.DataFrame(
        {
            "pos": session_positions(_days(loads["session"])),
            "at": pc.cast(loads["loaded_at"], pa.int64()).to_numpy(zero_copy_only=False) / 1e6,
            "rows": loads["rows"].to_numpy(zero_copy_only=False),
        }
    )
    return frame.sort_values("at").groupby("pos").last()
