"""Polygon aggregates over HTTP: one range request per symbol for the whole window, following
`next_url` pages; `results: null` for a trading symbol is retried before it counts as missing.
An empty page after a page of bars ends the series: it is kept, not retried."""

import datetime as dt
import json
from dataclasses import dataclass
from urllib.parse import urlsplit

from stock_assets.providers.base import RawPayload, SymbolBySymbol
from stock_assets.providers.http import HttpClient
from stock_assets.providers.polygon_format import parse_polygon

TIMESPANS = {"1d": (1, "day"), "60min": (1, "hour"), "30min": (30, "minute"), "15min": (15, "minute"), "5min": (5, "minute"), "1min": (1, "minute")}


@dataclass
class PolygonProvider(SymbolBySymbol):
    http: HttpClient  # carries the key as an Authorization header, so no URL ever holds it
    base_url: str = "https://api.polygon.io"
    name: str = "polygon"
    reuse_fetched: bool = True

    def _fetch_symbol(self, symbol: str, sessions: list[dt.date], interval: str) -> list[RawPayload]:
        multiplier, timespan = TIMESPANS[interval]
        url: str | None = f"{self.base_url}/v2/aggs/ticker/{symbol}/range/{multiplier}/{timespan}/{sessions[0]}/{sessions[-1]}"
        params = {"adjusted": "true", "sort": "asc", "limit": 50000}
        payloads = []
        while url:
            moment = dt.datetime.now(dt.UTC)
            body = self.http.get(url, params, symbol=symbol, check=lambda b: _check(b, symbol, interval, first_page=not payloads))
            payloads.append(RawPayload(self.name, symbol, interval, sessions[0], sessions[-1], moment, "json", body, len(payloads)))
            url, params = self._next(json.loads(body).get("next_url")), {}  # next_url carries cursor and query
        return payloads

    def _next(self, next_url: str | None) -> str | None:
        """The next page through our base URL, so a proxy or test server sees every page."""
        if not next_url:
            return None
        parts = urlsplit(next_url)
        return f"{self.base_url}{parts.path}" + (f"?{parts.query}" if parts.query else "")


def _check(body: bytes, symbol: str, interval: str, first_page: bool) -> None:
    """Raises if the page is not data. An empty page after the first is the series' end
    (Polygon may hand out a `next_url` whose page holds nothing): no retry is spent on it."""
    parse_polygon(body, symbol, interval, dt.datetime.now(dt.UTC), empty_ok=not first_page)
