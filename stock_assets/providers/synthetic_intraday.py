"""The synthetic market's intraday bars (1min to 60min), which add up exactly to its daily bars.

Per symbol and session, one bar a minute from the open to the close (an early close too): the
log price walks a Brownian bridge from the day's open to its close; the part of the walk above
max(open, close) is stretched or squeezed to reach 90 % of the way to the day's high, the part
below min(open, close) likewise towards its low; each minute's high and low are a small wick
beyond its open and close, kept inside the day's range, and the minute that comes nearest the
top gets the day's high (the one nearest the bottom its low). The day's volume is shared over
the minutes by a U-shaped profile with noise, in whole shares. So, on the 4-decimal prices, bit
for bit: the first open is the daily open, the highest high its high, the lowest low its low,
the last close its close, and the volumes sum to its volume. A coarser interval is the 1-minute
bars aggregated, its bars aligned on the open (60min: 09:30, 10:30, …, 15:30-16:00, 7 bars; 4 on
a 13:00 close); `ts` is the bar's start, UTC, as for every provider's intraday bars.

The noise of a minute is a hash of (symbol, session, minute), not a generator's next draw, so any
set of sessions, in any order, gives each the same bars. A bar belongs to a fetch once it has
ended (its end: the next bar's start, or the close); a daily bar fetched during its session is
the aggregate of the minutes ended so far (`so_far`).
"""

import datetime as dt

import numpy as np
import pandas as pd

from stock_assets.calendar import nyse_calendar

STEPS = {"1min": 1, "5min": 5, "15min": 15, "30min": 30, "60min": 60}
INTRADAY_COLUMNS = ["symbol", "date", "ts", "interval", "open", "high", "low", "close", "volume", "adj_close", "vwap", "trades", "dividend",
                    "split_coefficient"]  # fmt: skip
MINUTE_US = 60_000_000
REACH = 0.9  # how far the walk itself goes towards the day's high and low; the wicks do the rest
_MIX = (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB, 0xD6E8FEB86659FD93)


def _hash_uniform(keys: np.ndarray) -> np.ndarray:
    """splitmix64 of each key, as a float in (0, 1)."""
    with np.errstate(over="ignore"):
        z = keys + np.uint64(_MIX[0])
        z = (z ^ (z >> np.uint64(30))) * np.uint64(_MIX[1])
        z = (z ^ (z >> np.uint64(27))) * np.uint64(_MIX[2])
        z = z ^ (z >> np.uint64(31))
    return ((z >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53


def _normal(base: np.ndarray, stream: int) -> np.ndarray:
    """A standard normal per key (Box-Muller over two hashed uniforms)."""
    with np.errstate(over="ignore"):
        first = base ^ (np.uint64(2 * stream + 1) * np.uint64(_MIX[3]))
        second = base ^ (np.uint64(2 * stream + 2) * np.uint64(_MIX[3]))
    return np.sqrt(-2 * np.log(_hash_uniform(first))) * np.cos(2 * np.pi * _hash_uniform(second))


def _micros(moment: dt.datetime) -> int:
    return (moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)


def _first_per_row(mask: np.ndarray, row: np.ndarray) -> np.ndarray:
    where = np.flatnonzero(mask)
    return where[np.unique(row[where], return_index=True)[1]]


def minutes(daily: pd.DataFrame, seeds: np.ndarray) -> dict[str, np.ndarray]:
    """The 1-minute bars of every row of `daily` (synthetic_bars' columns; `seeds`: each row's
    symbol seed), as arrays over minutes: `row` (of `daily`), `j` (minute of the session), `ts`
    and `end` (µs UTC), open, high, low, close, volume."""
    schedule = nyse_calendar().schedule.loc[pd.DatetimeIndex(pd.to_datetime(daily["date"]))]
    open_us = pd.DatetimeIndex(schedule["open"]).as_unit("us").asi8
    close_us = pd.DatetimeIndex(schedule["close"]).as_unit("us").asi8
    m = (close_us - open_us) // MINUTE_US
    row = np.repeat(np.arange(len(daily)), m)
    start = np.cumsum(m) - m
    j = np.arange(row.size) - start[row]
    last = start + m - 1
    with np.errstate(over="ignore"):
        base = seeds.astype(np.uint64)[row] ^ (open_us.astype(np.uint64)[row] * np.uint64(_MIX[1])) ^ (j.astype(np.uint64) * np.uint64(_MIX[2]))
    o_d, h_d, l_d, c_d = (daily[k].to_numpy(np.float64) for k in ("open", "high", "low", "close"))
    lo_o, lo_c, lo_h, lo_l = np.log(o_d), np.log(c_d), np.log(h_d), np.log(l_d)
    # the walk at each minute's end: a bridge from log open to log close
    scale = 0.25 * np.maximum(lo_h - lo_l, 1e-6) / np.sqrt(m)
    walk = np.cumsum(_normal(base, 0))
    walk -= np.concatenate([[0.0], walk])[start][row]
    done = (j + 1) / m[row]
    x = lo_o[row] + (lo_c - lo_o)[row] * done + scale[row] * (walk - done * walk[last][row])
    top, bottom = np.maximum(lo_o, lo_c), np.minimum(lo_o, lo_c)
    for side, edge, limit in ((1, top, lo_h), (-1, bottom, lo_l)):
        beyond = side * (x - edge[row])
        reach = np.maximum.reduceat(beyond, start)
        stretch = np.divide(REACH * side * (limit - edge), reach, out=np.zeros_like(reach), where=reach > 0)
        x = np.where(beyond > 0, edge[row] + side * beyond * stretch[row], x)
    close = np.clip(np.round(np.exp(x), 4), l_d[row], h_d[row])
    close[last] = c_d
    open_ = np.concatenate([[0.0], close[:-1]])
    open_[start] = o_d
    wick = 0.5 * scale[row]
    upper, lower = np.maximum(open_, close), np.minimum(open_, close)
    high = np.minimum(np.maximum(np.round(upper * np.exp(wick * np.abs(_normal(base, 1))), 4), upper), h_d[row])
    low = np.maximum(np.minimum(np.round(lower * np.exp(-wick * np.abs(_normal(base, 2))), 4), lower), l_d[row])
    high[_first_per_row(high == np.maximum.reduceat(high, start)[row], row)] = h_d
    low[_first_per_row(low == np.minimum.reduceat(low, start)[row], row)] = l_d
    return {
        "row": row, "j": j, "ts": open_us[row] + j * MINUTE_US, "end": open_us[row] + (j + 1) * MINUTE_US, "session_close": close_us[row],
        "open": open_, "high": high, "low": low, "close": close, "volume": _volumes(daily["volume"].to_numpy(np.int64), base, row, j, m, start),
    }  # fmt: skip


def _volumes(total: np.ndarray, base: np.ndarray, row: np.ndarray, j: np.ndarray, m: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Each row's volume over its minutes, busier at the open and the close, summing exactly to it."""
    weight = (1 + 1.5 * (2 * (j + 0.5) / m[row] - 1) ** 2) * np.exp(0.3 * _normal(base, 3))
    running = np.cumsum(weight)
    running -= np.concatenate([[0.0], running])[start][row]
    shares = np.floor(total[row] * (running / running[start + m - 1][row])).astype(np.int64)
    shares[start + m - 1] = total
    before = np.concatenate([[0], shares[:-1]])
    before[start] = 0
    return shares - before


def bars(daily: pd.DataFrame, seeds: np.ndarray, interval: str, until: dt.datetime | None = None) -> pd.DataFrame:
    """The `interval` bars of every row of `daily` (INTRADAY_COLUMNS), those ended by `until` only."""
    step = STEPS.get(interval)
    if step is None:
        raise ValueError(f"the synthetic provider makes 1d and {', '.join(STEPS)} bars, not {interval!r}")
    if daily.empty:
        return pd.DataFrame(columns=INTRADAY_COLUMNS)
    mins = minutes(daily, seeds)
    first = np.flatnonzero(mins["j"] % step == 0)
    last = np.append(first[1:], mins["j"].size) - 1
    row, ts = mins["row"][first], mins["ts"][first]
    end = np.minimum(ts + step * MINUTE_US, mins["session_close"][first])
    o, c = mins["open"][first], mins["close"][last]
    h, l = np.maximum.reduceat(mins["high"], first), np.minimum.reduceat(mins["low"], first)
    v = np.add.reduceat(mins["volume"], first)
    keep = slice(None) if until is None else end <= _micros(until)
    frame = pd.DataFrame({
        "symbol": daily["symbol"].to_numpy()[row], "date": daily["date"].to_numpy()[row],
        "ts": pd.to_datetime(ts, unit="us", utc=True).as_unit("us"),
        "interval": interval, "open": o, "high": h, "low": l, "close": c, "volume": v, "adj_close": np.nan,
        "vwap": np.round((h + l + c) / 3, 4), "trades": np.maximum(v // 120, 1),
        "dividend": daily["dividend"].to_numpy()[row], "split_coefficient": daily["split_coefficient"].to_numpy()[row],
    })  # fmt: skip
    return frame[keep].reset_index(drop=True)


def so_far(daily: pd.DataFrame, seeds: np.ndarray, now: dt.datetime) -> pd.DataFrame:
    """`daily`'s rows as they stand at `now`: each the aggregate of its minutes ended by then
    (open, high, low and close at the open, volume 0, before the first minute ends)."""
    mins = minutes(daily, seeds)
    ended = mins["end"] <= _micros(now)
    minute = pd.DataFrame({k: mins[k][ended] for k in ("row", "open", "high", "low", "close", "volume")})
    agg = minute.groupby("row").agg(high=("high", "max"), low=("low", "min"), close=("close", "last"), volume=("volume", "sum"))
    agg = agg.reindex(np.arange(len(daily)))
    frame = daily.copy()
    o = frame["open"].to_numpy()
    frame["high"], frame["low"], frame["close"] = (agg[k].fillna(pd.Series(o)).to_numpy() for k in ("high", "low", "close"))
    frame["volume"] = agg["volume"].fillna(0).to_numpy().astype(np.int64)
    frame["trades"] = np.maximum(frame["volume"] // 120, 1)
    frame["vwap"] = np.round((frame["high"] + frame["low"] + frame["close"]) / 3, 4)
    return frame
