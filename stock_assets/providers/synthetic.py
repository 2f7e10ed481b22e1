"""A deterministic, offline market: the same symbol and session always give the same bar.

Each symbol is a geometric random walk whose daily shocks come from a generator seeded by
the symbol's name and indexed by the session's position since EPOCH, so any range asked
returns the bars of every other range that overlaps it. Prices are rounded to 4 decimals
like a real feed, and OHLC are consistent by construction.

Corporate actions, like a real feed's: a split every few years and, for most symbols, a
quarterly cash dividend, from the symbol's name alone (`_actions`). Prices are the
traded ones: a split of r divides them by r from its ex-date on (volume times r), a dividend D
takes D off the price on its ex-date, and the walk goes on from there. Each bar says so in
`split_coefficient` (r, else 1.0) and `dividend` (D, else 0.0), as Alpha Vantage's adjusted
series does; `adj_close` is left empty: the pipeline derives it from the actions.

Intraday bars too (1min, 5min, 15min, 30min, 60min: synthetic_intraday.py), for any session,
which aggregate exactly to its daily bar. Like a real feed, it knows what time it is (`clock`):
a session that has not opened has no bar; of a session in progress, the intraday bars ended by
now, and a partial daily bar that is their aggregate (`prices_final_bars` reports it).
"""

import datetime as dt
import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from stock_assets.calendar import nyse_calendar, session_bounds
from stock_assets.clock import now as pipeline_now
from stock_assets.providers import synthetic_intraday as intraday
from stock_assets.providers.base import FetchResult, RawPayload
from stock_assets.seed_csv import from_landing_csv
from stock_assets.settings import SYNTHETIC_FAULTS

EPOCH = "1990-01-02"
FAULTS = SYNTHETIC_FAULTS
CSV_COLUMNS = ["symbol", "date", "open", "high", "low", "close", "volume", "adj_close", "vwap", "trades", "dividend", "split_coefficient"]
SCHEDULE_SALT = 41  # chosen so that the default universe shows a split inside the simulated month (docs/providers.md)
QUARTER = 63  # sessions between a symbol's ex-dividend dates


def _seed(symbol: str) -> int:
    return int.from_bytes(hashlib.sha256(symbol.encode()).digest()[:8], "little")


def _positions(sessions: list[dt.date]) -> tuple[np.ndarray, pd.Index]:
    """Each session's position since EPOCH, and its YYYY-MM-DD text."""
    all_sessions = nyse_calendar(EPOCH).sessions
    wanted = pd.DatetimeIndex(pd.to_datetime(sessions))
    if wanted.min() < all_sessions[0]:
        raise ValueError(f"synthetic data starts at {EPOCH}; asked for {wanted.min().date()}")
    idx = all_sessions.get_indexer(wanted)
    if (idx < 0).any():
        raise ValueError(f"not NYSE sessions: {list(wanted[idx < 0].date)}")
    return idx, wanted.strftime("%Y-%m-%d")


def synthetic_bars(symbol: str, sessions: list[dt.date]) -> pd.DataFrame:
    """Daily bars of `symbol` for `sessions` (NYSE sessions on or after EPOCH)."""
    if not sessions:
        return pd.DataFrame(columns=CSV_COLUMNS)
    return _walk(symbol, *_positions(sessions))


def synthetic_intraday(symbol: str, session: dt.date, interval: str) -> pd.DataFrame:
    """The whole of `session`'s `interval` bars of `symbol`, whatever the time: they aggregate
    exactly to its synthetic_bars bar (synthetic_intraday.INTRADAY_COLUMNS, ts a UTC bar start)."""
    daily = synthetic_bars(symbol, [session])
    return intraday.bars(daily, _seeds(daily), interval)


def _actions(symbol: str, value: np.ndarray, p0: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(price multiplier, shares multiplier, split coefficient, dividend) per session, for a walk
    of the company's `value` per original share (first price `p0`), from the symbol's name alone.
    Splits: every 3 to 5 years (the period and first date drawn per symbol), if the price has at
    least doubled since `p0`, a split of r = its multiple of `p0` (2, 3 or 4), which brings it
    back near `p0`. Dividends, for 4 symbols in 5: an ex-date every QUARTER sessions paying 0.2 to
    0.8 % (drawn per symbol) of the previous close, rounded to the cent; none on a split's
    ex-date. Each action depends on the sessions before it only, so any range agrees."""
    n = len(value)
    rng = np.random.default_rng([_seed(symbol), SCHEDULE_SALT])
    period, first = int(rng.integers(756, 1260)), int(rng.integers(1, 1260))
    pays, quarterly, offset = rng.random() < 0.8, 0.002 + 0.006 * rng.random(), int(rng.integers(1, QUARTER + 1))
    coefficient, dividend = np.ones(n), np.zeros(n)
    held = 1.0
    for t in range(first, n, period):
        ratio = min(4.0, float(np.floor(value[t - 1] / held / p0)))
        if ratio >= 2:
            coefficient[t], held = ratio, held * ratio
    shares = np.cumprod(coefficient)
    paid, left = np.ones(n), 1.0  # what each ex-date leaves of the previous close
    for t in np.setdiff1d(np.arange(offset, n, QUARTER), np.flatnonzero(coefficient != 1)) if pays else ():
        previous = value[t - 1] * left / shares[t - 1]  # each amount depends on what the earlier ones left
        dividend[t] = round(quarterly * previous, 2)
        paid[t] = 1 - dividend[t] / previous
        left *= paid[t]
    return np.cumprod(paid) / shares, shares, coefficient, dividend


def _walk(symbol: str, idx: np.ndarray, dates: pd.Index) -> pd.DataFrame:
    n = idx.max() + 1
    rng = np.random.default_rng(_seed(symbol))
    p0, sigma, base_volume = 20 + 280 * rng.random(), 0.008 + 0.012 * rng.random(), 10 ** (6 + 1.5 * rng.random())
    shocks = rng.standard_normal((n, 4))  # row i belongs to session i, whatever n is
    log_close = np.log(p0) + np.cumsum(0.0002 + sigma * shocks[:, 0])
    close = np.exp(log_close)
    price, shares, coefficient, dividend = _actions(symbol, close, p0)
    prev_close = np.concatenate([[p0], close[:-1]])
    open_ = prev_close * np.exp(0.3 * sigma * shocks[:, 1])
    high = np.maximum(open_, close) * np.exp(0.5 * sigma * np.abs(shocks[:, 2]))
    low = np.minimum(open_, close) * np.exp(-0.5 * sigma * np.abs(shocks[:, 3]))
    volume = base_volume * np.exp(0.3 * shocks[:, 0] ** 2 + 0.2 * shocks[:, 3]) * shares
    o, h, l, c = (np.round((x * price)[idx], 4) for x in (open_, high, low, close))
    v = np.round(volume[idx]).astype(np.int64)
    return pd.DataFrame(
        {
            "symbol": symbol,
            "date": dates,
            "open": o,
            "high": h,
            "low": l,
            "close": c,
            "volume": v,
            "adj_close": np.nan,
            "vwap": np.round((h + l + c) / 3, 4),
            "trades": np.maximum(v // 120, 1),
            "dividend": dividend[idx],
            "split_coefficient": coefficient[idx],
        }
    )


def inject_faults(frame: pd.DataFrame, faults: tuple[str, ...], symbols: list[str]) -> pd.DataFrame:
    """Damage a clean frame on purpose. Each fault hits the first symbol on the last session
    of the request (missing_* and split_jump say otherwise), so tests know the exact count."""
    if frame.empty or not faults:
        return frame
    unknown = set(faults) - set(FAULTS)
    if unknown:
        raise ValueError(f"unknown STOCK_ASSETS_SYNTHETIC_FAULTS {sorted(unknown)}; known: {', '.join(FAULTS)}")
    frame = frame.copy()
    dates = sorted(frame["date"].unique())
    target = (frame["symbol"] == symbols[0]) & (frame["date"] == dates[-1])
    if "nulls" in faults:
        frame["close"] = frame["close"].astype("Float64")
        frame.loc[target, "close"] = pd.NA
    if "zeros" in faults:
        frame.loc[target, ["open", "high", "low", "close", "adj_close", "vwap", "volume"]] = 0  # a glitched all-zero bar
    if "ohlc" in faults:
        frame.loc[target, ["high", "low"]] = frame.loc[target, ["low", "high"]].to_numpy() * [0.9, 1.1]
    if "split_jump" in faults:  # an unannounced 4:1 split from the middle session on
        after = (frame["symbol"] == symbols[0]) & (frame["date"] >= dates[len(dates) // 2])
        frame.loc[after, ["open", "high", "low", "close", "adj_close", "vwap"]] /= 4
    if "missing_session" in faults and len(dates) > 1:
        frame = frame[frame["date"] != dates[len(dates) // 2]]
    if "missing_symbol" in faults and len(symbols) > 1:
        frame = frame[frame["symbol"] != symbols[-1]]
    if "duplicates" in faults:  # the target again, on what the faults above left of the frame
        frame = pd.concat([frame, frame[(frame["symbol"] == symbols[0]) & (frame["date"] == dates[-1])]], ignore_index=True)
    return frame


def _unfinished(frame: pd.DataFrame, now: dt.datetime) -> tuple[list[dt.date], list[dt.date]]:
    """(sessions not yet open, sessions in progress) among those of `frame`, at `now`."""
    if frame.empty or now >= session_bounds(dt.date.fromisoformat(frame["date"].max()))[1]:
        return [], []  # the usual case: every session asked for has ended
    unfinished = []  # the last sessions asked for that have not closed, newest first
    for day in sorted({dt.date.fromisoformat(d) for d in frame["date"].unique()}, reverse=True):
        if session_bounds(day)[1] <= now:
            break
        unfinished.append(day)
    future = sorted(d for d in unfinished if session_bounds(d)[0] > now)
    return future, sorted(set(unfinished) - set(future))


def _seeds(frame: pd.DataFrame) -> np.ndarray:
    return np.array(frame["symbol"].map({s: _seed(s) for s in frame["symbol"].unique()}).tolist(), dtype=np.uint64)


def as_of(frame: pd.DataFrame, now: dt.datetime, interval: str = "1d") -> tuple[pd.DataFrame, list[dt.date], list[dt.date]]:
    """The bars a feed has at `now`, from the daily bars of `frame`: (bars, sessions not yet open,
    sessions in progress). Intraday: the bars ended by `now`. Daily: a session in progress has
    the aggregate of its minutes ended by `now`, one not open yet no bar."""
    future, running = _unfinished(frame, now)
    if interval != "1d":
        return intraday.bars(frame, _seeds(frame), interval, until=now), future, running
    frame = frame[~frame["date"].isin([str(d) for d in future])].copy()
    for day in running:
        rows = (frame["date"] == str(day)).to_numpy()
        partial = intraday.so_far(frame[rows], _seeds(frame[rows]), now)
        for column in ("high", "low", "close", "volume", "trades", "vwap"):
            frame.loc[rows, column] = partial[column].to_numpy()
    return frame, future, running


@dataclass
class SyntheticProvider:
    """Offline provider: one CSV payload per symbol per request, labelled `synthetic`."""

    faults: tuple[str, ...] = ()
    name: str = "synthetic"
    reuse_fetched: bool = False  # fetching is free and deterministic
    clock: Callable[[], dt.datetime] = pipeline_now  # tests set the time (or move stock_assets.clock)
    live_delay: dt.timedelta = dt.timedelta(0)  # a bar is there the moment it ends

    def fetch(self, symbols: list[str], sessions: list[dt.date], interval: str) -> FetchResult:
        if interval != "1d" and interval not in intraday.STEPS:
            raise ValueError(f"the synthetic provider makes 1d and {', '.join(intraday.STEPS)} bars, not {interval!r}")
        if not symbols or not sessions:
            return FetchResult()  # nothing asked: raw_prices says why, before it calls here
        ingested_at = self.clock().astimezone(dt.UTC)
        positions = _positions(sessions)
        frame = pd.concat([_walk(s, *positions) for s in symbols], ignore_index=True)
        frame, future, running = as_of(frame, ingested_at, interval)
        result = FetchResult()
        if future:
            result.notes.append(f"sessions not yet open at {ingested_at:%Y-%m-%d %H:%M} UTC, no bars: {', '.join(map(str, future))}")
        if running:
            what = "partial bars (they will change)" if interval == "1d" else f"the bars ended by {ingested_at:%H:%M} UTC"
            result.notes.append(f"sessions in progress, {what}: {', '.join(map(str, running))}")
        traded = set(frame["symbol"])  # none before a first bar has ended
        frame = inject_faults(frame, self.faults, symbols)
        by_symbol = dict(tuple(frame.groupby("symbol", sort=False)))
        for symbol in symbols:
            rows = by_symbol.get(symbol)
            if symbol not in traded:
                continue  # nothing has traded yet: no payload, and nothing failed
            if rows is None:  # like a provider that answers with no bars
                result.failures[symbol] = "no bars returned (synthetic fault missing_symbol)"
                continue
            result.payloads.append(
                RawPayload(
                    provider=self.name,
                    symbol=symbol,
                    interval=interval,
                    first_session=sessions[0],
                    last_session=sessions[-1],
                    ingested_at=ingested_at,
                    extension="csv",
                    body=_csv(rows[CSV_COLUMNS if interval == "1d" else intraday.INTRADAY_COLUMNS]),
                )
            )
        return result


def _csv(rows: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    table = pa.Table.from_pandas(rows, preserve_index=False)
    pacsv.write_csv(table, buf, pacsv.WriteOptions(quoting_style="needed", quoting_header="none"))
    return buf.getvalue()


def parse_synthetic(payload: RawPayload) -> pa.Table:
    name = f"synthetic {payload.symbol}"
    return from_landing_csv(payload.body, source=payload.provider, ingested_at=payload.ingested_at, interval=payload.interval, name=name)
