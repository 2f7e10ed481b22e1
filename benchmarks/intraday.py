"""Item 7, intraday scale: 100 symbols x 1-minute bars x 20 sessions (~780 k bars) through
the lake stages: landing CSV (write, read back), Parquet by session (write, read back) and
dedup (then written). The bars are made here with vectorized NumPy in the canonical schema,
apart from any provider; generating them is timed apart.
"""

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa

from benchmarks.common import (
    REPEATS,
    child_env,
    child_main,
    median,
    new_home,
    peak_rss_mib,
    remove_home,
    repeat,
    run_child,
    scaled,
    sessions_after,
    universe,
)

SESSION_FROM = "2024-06-03"
US = pa.timestamp("us", tz="UTC")


def minute_bars(symbols: list[str], sessions: list[dt.date], seed: int = 7) -> pa.Table:
    """One bar per symbol and minute of each session's regular hours (early closes included)."""
    from stock_assets.partitions import nyse_calendar
    from stock_assets.schema import conform

    schedule = nyse_calendar("2015-01-02").schedule.loc[[str(s) for s in sessions]]
    opens = pd.DatetimeIndex(schedule["open"]).as_unit("us").asi8
    minutes = ((schedule["close"] - schedule["open"]).dt.total_seconds() // 60).to_numpy().astype(np.int64)
    per_session = np.repeat(np.arange(len(sessions)), minutes)
    minute_of_day = np.arange(per_session.size) - np.repeat(np.cumsum(minutes) - minutes, minutes)
    ts_day = opens[per_session] + minute_of_day * 60_000_000
    days = np.array([(s - dt.date(1970, 1, 1)).days for s in sessions], np.int32)[per_session]
    k, b = len(symbols), per_session.size
    rng = np.random.default_rng(seed)
    shocks = rng.standard_normal((k, b, 3))
    close = (20 + 280 * rng.random((k, 1))) * np.exp(np.cumsum(0.0008 * shocks[:, :, 0], axis=1))
    open_ = np.concatenate([close[:, :1], close[:, :-1]], axis=1)
    high = np.maximum(open_, close) * np.exp(0.0004 * np.abs(shocks[:, :, 1]))
    low = np.minimum(open_, close) * np.exp(-0.0004 * np.abs(shocks[:, :, 2]))
    volume = np.round(1000 * np.exp(0.5 * shocks[:, :, 1])).astype(np.int64)
    n = k * b
    ingested = int(schedule["close"].iloc[-1].value // 1000) + 3_600_000_000  # an hour after the last close
    table = pa.table({
        "symbol": pa.DictionaryArray.from_arrays(np.repeat(np.arange(k, dtype=np.int32), b), pa.array(symbols)).cast(pa.string()),
        "session": pa.array(np.tile(days, k)).cast(pa.date32()),
        "ts": pa.array(np.tile(ts_day, k), US),
        "interval": pa.repeat(pa.scalar("1min"), n),
        **{name: pa.array(np.round(x, 4).ravel()) for name, x in (("open", open_), ("high", high), ("low", low), ("close", close))},
        "volume": pa.array(volume.ravel()),
        "vwap": pa.array(np.round((high + low + close) / 3, 4).ravel()),
        "source": pa.repeat(pa.scalar("bench-intraday"), n),
        "ingested_at": pa.array(np.full(n, ingested), US),
    })  # fmt: skip
    return conform(table)


def child(symbols: int, sessions: int, repeats: int = REPEATS) -> dict:
    from stock_assets.lake import layout
    from stock_assets.lake.storage import LakeStorage
    from stock_assets.settings import Settings
    from stock_assets.transforms.dedup import dedupe_latest

    days = [dt.date.fromisoformat(s) for s in sessions_after(SESSION_FROM, sessions)]
    gen_seconds, bars = repeat(lambda: minute_bars(universe(symbols), days), 1)
    storage = LakeStorage(Settings.from_env().lake_url)
    stages = {
        "landing_write": lambda: layout.write_landing(storage, bars, days),
        "landing_read": lambda: layout.read_landing(storage, days),
        "parquet_write": lambda: layout.write_sessions(storage, "lake/prices", bars, days),
        "parquet_read": lambda: layout.read_sessions(storage, "lake/prices", days),
        "dedup": lambda: layout.write_sessions(storage, "lake/deduped", dedupe_latest(layout.read_sessions(storage, "lake/prices", days)), days),
    }
    n = bars.num_rows
    out = {"rows": n, "symbols": symbols, "sessions": len(days), "generate_s": gen_seconds[0], "stages": {}}
    for name, fn in stages.items():
        seconds, result = repeat(fn, repeats)
        if name.endswith("_read") and result.num_rows != n:
            raise AssertionError(f"{name} read {result.num_rows} rows of {n}")
        out["stages"][name] = {"seconds": seconds, "median_s": median(seconds), "rows_per_s": n / median(seconds)}
    out["total_s"] = sum(s["median_s"] for s in out["stages"].values())
    return out | {"peak_rss_mib": round(peak_rss_mib(), 1)}


def run() -> dict:
    home = new_home("intraday")
    try:
        return run_child("intraday", {"symbols": scaled(100), "sessions": scaled(20)}, child_env(home, universe(1)))
    finally:
        remove_home(home)


if __name__ == "__main__":
    child_main(child)
