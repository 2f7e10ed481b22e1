"""Alpha Vantage over HTTP: one request per symbol for a daily window (compact or full),
one per month for intraday; throttle bodies (HTTP 200 with `Note`/`Information`) retried.
Daily adjusted (ALPHAVANTAGE_ADJUSTED) brings the corporate actions on the bars; intraday is
always asked as traded (`adjusted=false`).

The session in progress (live prices): no `month` (the most recent days, which a `month`
request for history does not promise to hold) and `entitlement=delayed`, the premium plans'
15-minute delayed data: a free key's intraday series is updated at the end of each trading day
only, so it has no bar of the session in progress (docs/providers.md). `compact` (the latest
100 bars) holds a whole session at 5min and coarser; 1min needs `full` (the last 30 days)."""

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from stock_assets.calendar import nyse_calendar, session_bounds
from stock_assets.clock import now as pipeline_now
from stock_assets.providers.alphavantage_format import check_alphavantage_body
from stock_assets.providers.base import RawPayload, SymbolBySymbol
from stock_assets.providers.http import HttpClient
from stock_assets.providers.live_bars import in_progress

COMPACT_POINTS = 100  # outputsize=compact returns the latest 100 bars
LIVE_DELAY = dt.timedelta(minutes=15)  # entitlement=delayed


def last_closed_sessions(count: int, now: pd.Timestamp | None = None) -> list[dt.date]:
    closes = nyse_calendar("2000-01-03").schedule["close"]
    done = closes[closes <= (now or pd.Timestamp(pipeline_now()))]
    return [d.date() for d in done.index[-count:]]


def plan_requests(symbol: str, sessions: list[dt.date], interval: str, adjusted: bool, datatype: str,
                  now: dt.datetime | None = None, live_delay: dt.timedelta = LIVE_DELAY) -> list[dict]:  # fmt: skip
    """The query parameters that cover `sessions` at `now` (the pipeline's clock), fewest requests
    first. The last session is live while the delayed feed has not reached its close."""
    now = now or pipeline_now()
    if interval == "1d":
        compact = sessions[0] >= last_closed_sessions(COMPACT_POINTS, pd.Timestamp(now))[0]
        function = "TIME_SERIES_DAILY_ADJUSTED" if adjusted else "TIME_SERIES_DAILY"
        return [{"function": function, "symbol": symbol, "outputsize": "compact" if compact else "full", "datatype": datatype}]
    series = {
        "function": "TIME_SERIES_INTRADAY",
        "symbol": symbol,
        "interval": interval,
        "outputsize": "full",
        "adjusted": "false",  # traded prices: the intraday series is adjusted unless told not to, and carries no action
        "extended_hours": "false",
        "datatype": datatype,
    }
    live = in_progress(sessions[-1], now - live_delay)
    history = sessions[:-1] if live else sessions
    requests = [series | {"month": str(month)} for month in pd.period_range(history[0], history[-1], freq="M")] if history else []
    if live:
        opened, closing = session_bounds(sessions[-1])
        fits = (closing - opened) / pd.Timedelta(interval) <= COMPACT_POINTS
        requests.append(series | {"outputsize": "compact" if fits else "full", "entitlement": "delayed"})
    return requests


@dataclass
class AlphaVantageProvider(SymbolBySymbol):
    http: HttpClient
    api_key: str
    base_url: str = "https://www.alphavantage.co"
    adjusted: bool = False
    datatype: str = "json"
    name: str = "alphavantage"
    reuse_fetched: bool = True
    clock: Callable[[], dt.datetime] = pipeline_now
    live_delay: dt.timedelta = LIVE_DELAY

    def _fetch_symbol(self, symbol: str, sessions: list[dt.date], interval: str) -> list[RawPayload]:
        payloads = []
        planned = plan_requests(symbol, sessions, interval, self.adjusted, self.datatype, self.clock(), self.live_delay)
        for part, params in enumerate(planned):
            body = self.http.get(
                f"{self.base_url}/query",
                params | {"apikey": self.api_key},
                symbol=symbol,
                check=lambda b: check_alphavantage_body(b, self.datatype, symbol),
            )
            moment = self.clock().astimezone(dt.UTC)
            payloads.append(RawPayload(self.name, symbol, interval, sessions[0], sessions[-1], moment, self.datatype, body, part))
        return payloads
