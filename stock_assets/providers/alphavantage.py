"""Alpha Vantage over HTTP: one request per symbol for a daily window (compact or full),
one per month for intraday; throttle bodies (HTTP 200 with `Note`/`Information`) retried.
Daily adjusted (ALPHAVANTAGE_ADJUSTED) brings the corporate actions on the bars; intraday is
always asked as traded (`adjusted=false`)."""

import datetime as dt
from dataclasses import dataclass

import pandas as pd

from stock_assets.calendar import nyse_calendar
from stock_assets.providers.alphavantage_format import check_alphavantage_body
from stock_assets.providers.base import RawPayload, SymbolBySymbol
from stock_assets.providers.http import HttpClient

COMPACT_POINTS = 100  # outputsize=compact returns the latest 100 bars


def last_closed_sessions(count: int, now: pd.Timestamp | None = None) -> list[dt.date]:
    closes = nyse_calendar("2000-01-03").schedule["close"]
    done = closes[closes <= (now or pd.Timestamp.now(tz="UTC"))]
    return [d.date() for d in done.index[-count:]]


def plan_requests(symbol: str, sessions: list[dt.date], interval: str, adjusted: bool, datatype: str) -> list[dict]:
    """The query parameters that cover `sessions`, fewest requests first."""
    if interval == "1d":
        compact = sessions[0] >= last_closed_sessions(COMPACT_POINTS)[0]
        function = "TIME_SERIES_DAILY_ADJUSTED" if adjusted else "TIME_SERIES_DAILY"
        return [{"function": function, "symbol": symbol, "outputsize": "compact" if compact else "full", "datatype": datatype}]
    months = pd.period_range(sessions[0], sessions[-1], freq="M")
    return [
        {
            "function": "TIME_SERIES_INTRADAY",
            "symbol": symbol,
            "interval": interval,
            "month": str(month),
            "outputsize": "full",
            "adjusted": "false",  # traded prices: the intraday series is adjusted unless told not to, and carries no action
            "extended_hours": "false",
            "datatype": datatype,
        }
        for month in months
    ]


@dataclass
class AlphaVantageProvider(SymbolBySymbol):
    http: HttpClient
    api_key: str
    base_url: str = "https://www.alphavantage.co"
    adjusted: bool = False
    datatype: str = "json"
    name: str = "alphavantage"
    reuse_fetched: bool = True

    def _fetch_symbol(self, symbol: str, sessions: list[dt.date], interval: str) -> list[RawPayload]:
        payloads = []
        for part, params in enumerate(plan_requests(symbol, sessions, interval, self.adjusted, self.datatype)):
            body = self.http.get(
                f"{self.base_url}/query",
                params | {"apikey": self.api_key},
                symbol=symbol,
                check=lambda b: check_alphavantage_body(b, self.datatype, symbol),
            )
            moment = dt.datetime.now(dt.UTC)
            payloads.append(RawPayload(self.name, symbol, interval, sessions[0], sessions[-1], moment, self.datatype, body, part))
        return payloads
