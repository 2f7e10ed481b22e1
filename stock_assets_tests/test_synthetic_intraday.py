"""The synthetic provider's intraday bars (1min to 60min): each session's bars aggregate bit for
bit to its daily bar (early closes have fewer), coarser intervals are the 1-minute bars
aggregated, any range gives the same bars, and the provider's clock decides which bars exist:
none that has not ended, and a partial daily bar that is the minutes so far."""

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from stock_assets import clock
from stock_assets.calendar import is_session, session_bounds
from stock_assets.partitions import sessions_between
from stock_assets.providers.registry import parse_payload
from stock_assets.providers.synthetic import SyntheticProvider, synthetic_bars, synthetic_intraday
from stock_assets.settings import BARS_PER_SESSION

NY, UTC = "America/New_York", dt.UTC
INTERVALS = ["1min", "5min", "15min", "30min", "60min"]
STEP = {"1min": 1, "5min": 5, "15min": 15, "30min": 30, "60min": 60}
SYMBOLS = ["AAPL", "MSFT", "NVDA", "IBM", "AMZN", "BRK.B", "KO", "X", "TSLA", "GE", "F", "T", "JPM", "XOM", "PG", "DIS"]
EARLY = [dt.date(2026, 11, 27), dt.date(2024, 7, 3), dt.date(2026, 12, 24)]  # 13:00 closes
SESSIONS = sorted(
    EARLY
    + sessions_between("1990-01-02", "2026-10-05", "2026-10-16")  # AAPL's 2:1 split on 2026-10-09
    + [dt.date(1990, 1, 2), dt.date(2026, 3, 9), dt.date(2026, 11, 2), dt.date(2012, 10, 31)]  # first session, after DST changes, after Sandy
)
ELEVEN = dt.datetime(2026, 10, 13, 11, 0, tzinfo=ZoneInfo(NY))


def fetched(interval: str, sessions: list[dt.date], now: dt.datetime, symbols=SYMBOLS) -> pd.DataFrame:
    result = SyntheticProvider(clock=lambda: now).fetch(list(symbols), sessions, interval)
    assert result.failures == {}
    if not result.payloads:
        return pd.DataFrame()
    frame = pd.concat([parse_payload(p).to_pandas() for p in result.payloads], ignore_index=True)
    assert set(frame["interval"]) == {interval} and set(frame["source"]) == {"synthetic"}
    return frame


def aggregate(bars: pd.DataFrame) -> pd.DataFrame:
    """The daily bar of each (symbol, session) from its intraday bars."""
    bars = bars.sort_values(["symbol", "ts"])
    return bars.groupby(["symbol", "session"]).agg(
        open=("open", "first"), high=("high", "max"), low=("low", "min"), close=("close", "last"), volume=("volume", "sum"))  # fmt: skip


def daily(symbols, sessions) -> pd.DataFrame:
    frame = pd.concat([synthetic_bars(s, sessions) for s in symbols], ignore_index=True)
    frame["session"] = pd.to_datetime(frame["date"]).dt.date
    return frame.set_index(["symbol", "session"])[["open", "high", "low", "close", "volume"]]


AFTER = dt.datetime(2027, 1, 4, tzinfo=UTC)


@pytest.mark.parametrize("interval", INTERVALS)
def test_every_session_aggregates_bit_for_bit_to_its_daily_bar(interval):
    bars = fetched(interval, SESSIONS, AFTER)
    got, want = aggregate(bars), daily(SYMBOLS, SESSIONS)
    assert len(got) == len(SYMBOLS) * len(SESSIONS)
    pd.testing.assert_frame_equal(got.sort_index(), want.sort_index(), check_exact=True)
    assert (bars["low"] <= bars[["open", "close"]].min(axis=1)).all() and (bars[["open", "close"]].max(axis=1) <= bars["high"]).all()
    assert (bars["volume"] >= 0).all()
    prices = bars[["open", "high", "low", "close"]].to_numpy()
    assert (np.round(prices, 4) == prices).all()  # 4 decimals, like the daily bars


@pytest.mark.parametrize("interval", INTERVALS)
def test_bars_start_at_the_open_every_step_and_an_early_close_has_fewer(interval):
    step = STEP[interval]
    for session in [dt.date(2026, 10, 13), dt.date(2026, 11, 2), *EARLY]:
        bars = synthetic_intraday("MSFT", session, interval)
        opened, closing = session_bounds(session)
        minutes = (closing - opened) // dt.timedelta(minutes=1)
        assert len(bars) == -(-minutes // step)  # the last bar ends at the close
        starts = [opened + dt.timedelta(minutes=step * i) for i in range(len(bars))]
        assert [t.to_pydatetime() for t in bars["ts"]] == starts
        assert set(bars["date"]) == {str(session)}
    assert len(synthetic_intraday("MSFT", dt.date(2026, 10, 13), interval)) == BARS_PER_SESSION[interval]
    assert len(synthetic_intraday("MSFT", dt.date(2026, 11, 27), interval)) == {"1min": 210, "5min": 42, "15min": 14, "30min": 7, "60min": 4}[interval]
    last = synthetic_intraday("MSFT", dt.date(2026, 10, 13), "60min")["ts"].iloc[-1].tz_convert(NY)
    assert (last.hour, last.minute) == (15, 30)  # 15:30-16:00


@pytest.mark.parametrize("interval", INTERVALS[1:])
def test_a_coarser_interval_is_the_one_minute_bars_aggregated(interval):
    for symbol, session in [("AAPL", dt.date(2026, 10, 9)), ("IBM", dt.date(2026, 11, 27)), ("BRK.B", dt.date(2026, 3, 9))]:
        minute, coarse = synthetic_intraday(symbol, session, "1min"), synthetic_intraday(symbol, session, interval)
        opened = session_bounds(session)[0]
        bucket = (minute["ts"] - pd.Timestamp(opened)) // pd.Timedelta(minutes=STEP[interval])
        want = minute.groupby(bucket).agg(
            open=("open", "first"), high=("high", "max"), low=("low", "min"), close=("close", "last"), volume=("volume", "sum"))  # fmt: skip
        got = coarse[["open", "high", "low", "close", "volume"]]
        pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True), check_exact=True, check_names=False)


def test_the_same_symbol_session_and_interval_give_the_same_bars_whatever_is_asked():
    long = fetched("5min", SESSIONS, AFTER).set_index(["symbol", "ts"]).drop(columns="ingested_at")
    short = fetched("5min", [dt.date(2026, 10, 9), dt.date(2026, 11, 27)], AFTER, ["KO", "AAPL"]).set_index(["symbol", "ts"]).drop(columns="ingested_at")
    again = fetched("5min", SESSIONS, AFTER).set_index(["symbol", "ts"]).drop(columns="ingested_at")
    pd.testing.assert_frame_equal(long, again, check_exact=True)
    pd.testing.assert_frame_equal(short.sort_index(), long.loc[short.index].sort_index(), check_exact=True)
    single = synthetic_intraday("KO", dt.date(2026, 11, 27), "5min")
    assert single[["open", "high", "low", "close", "volume"]].to_numpy().tolist() == \
        short.loc["KO"][["open", "high", "low", "close", "volume"]].loc[single["ts"]].to_numpy().tolist()  # fmt: skip
    assert not synthetic_intraday("KO", dt.date(2026, 11, 27), "5min").equals(synthetic_intraday("AAPL", dt.date(2026, 11, 27), "5min"))


@pytest.mark.parametrize("interval", INTERVALS)
def test_at_eleven_new_york_only_the_bars_ended_by_then_exist(interval):
    """11:00 New York on 2026-10-13 (15:00 UTC), set on the pipeline's clock the provider reads."""
    session = dt.date(2026, 10, 13)
    clock.shift_to(ELEVEN)
    try:
        result = SyntheticProvider().fetch(SYMBOLS, [dt.date(2026, 10, 12), session], interval)
    finally:
        clock.reset()
    assert result.failures == {} and result.notes == ["sessions in progress, the bars ended by 15:00 UTC: 2026-10-13"]
    bars = pd.concat([parse_payload(p).to_pandas() for p in result.payloads], ignore_index=True)
    today = bars[bars["session"] == session]
    step = pd.Timedelta(minutes=STEP[interval])
    assert (today["ts"] + step <= pd.Timestamp(ELEVEN)).all()
    assert len(today) == len(SYMBOLS) * (90 // STEP[interval])  # 09:30-11:00; the 60min bar 10:30-11:30 has not ended
    for symbol in SYMBOLS:  # the first bars of the whole session, exactly
        whole = synthetic_intraday(symbol, session, interval)
        mine = today[today["symbol"] == symbol].sort_values("ts")
        assert mine[["open", "high", "low", "close", "volume"]].to_numpy().tolist() == \
            whole[["open", "high", "low", "close", "volume"]].iloc[: len(mine)].to_numpy().tolist()  # fmt: skip
    yesterday = bars[bars["session"] == dt.date(2026, 10, 12)]
    assert len(yesterday) == len(SYMBOLS) * BARS_PER_SESSION[interval]  # a closed session is whole
    in_new_york = SyntheticProvider(clock=lambda: ELEVEN).fetch(SYMBOLS, [dt.date(2026, 10, 12), session], interval)  # another zone
    assert in_new_york.notes == result.notes and {p.ingested_at.tzinfo for p in in_new_york.payloads} == {dt.UTC}
    assert [p.body for p in in_new_york.payloads] == [p.body for p in result.payloads]


def test_the_daily_bar_of_the_session_in_progress_is_its_minutes_so_far():
    session = dt.date(2026, 10, 13)
    for now in [ELEVEN, ELEVEN + dt.timedelta(minutes=17, seconds=30), session_bounds(session)[1] - dt.timedelta(seconds=1)]:
        partial = fetched("1d", [session], now).set_index(["symbol", "session"])[["open", "high", "low", "close", "volume"]]
        minutes = fetched("1min", [session], now)
        assert len(minutes) == len(SYMBOLS) * ((now - session_bounds(session)[0]) // dt.timedelta(minutes=1))
        pd.testing.assert_frame_equal(partial.sort_index(), aggregate(minutes).sort_index(), check_exact=True)
    final = fetched("1d", [session], AFTER).set_index(["symbol", "session"])[["open", "high", "low", "close", "volume"]]
    pd.testing.assert_frame_equal(final.sort_index(), daily(SYMBOLS, [session]).sort_index(), check_exact=True)


def test_before_the_first_minute_ends_there_is_no_intraday_bar_and_nothing_failed():
    opened = session_bounds(dt.date(2026, 10, 13))[0]
    for now in [opened - dt.timedelta(hours=2), opened, opened + dt.timedelta(seconds=59)]:
        result = SyntheticProvider(clock=lambda now=now: now).fetch(SYMBOLS, [dt.date(2026, 10, 13)], "5min")
        assert result.payloads == [] and result.failures == {} and "2026-10-13" in result.notes[0]


def test_an_early_close_ends_at_one_pm():
    session = dt.date(2026, 11, 27)
    closing = session_bounds(session)[1]
    assert closing.astimezone(ZoneInfo(NY)).hour == 13
    at_close = fetched("5min", [session], closing)
    assert len(at_close) == len(SYMBOLS) * 42
    pd.testing.assert_frame_equal(aggregate(at_close).sort_index(), daily(SYMBOLS, [session]).sort_index(), check_exact=True)
    assert len(fetched("5min", [session], closing - dt.timedelta(seconds=1))) == len(SYMBOLS) * 41


@pytest.mark.parametrize("day", [dt.date(2026, 11, 26), dt.date(2026, 10, 17), dt.date(2026, 10, 18)])  # Thanksgiving, a Saturday, a Sunday
def test_a_holiday_or_a_weekend_has_no_bar(day):
    assert not is_session(day)
    with pytest.raises(ValueError, match=f"not NYSE sessions: \\[datetime.date\\({day.year}, {day.month}, {day.day}\\)\\]"):
        synthetic_intraday("AAPL", day, "5min")
    eleven = dt.datetime.combine(day, dt.time(11), ZoneInfo(NY))
    week = sessions_between("1990-01-02", day - dt.timedelta(days=6), day)  # what a fetch up to that day asks for
    bars = fetched("5min", week, eleven)
    assert day not in set(bars["session"]) and (bars["ts"] + pd.Timedelta(minutes=5) <= pd.Timestamp(eleven)).all()
    assert len(bars) == len(SYMBOLS) * len(week) * 78  # the sessions before it, whole
