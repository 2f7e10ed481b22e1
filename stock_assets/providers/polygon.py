"""Polygon over HTTP, per symbol: the aggregates of the whole window, unadjusted (`adjusted=false`:
`close` is the traded price), then the symbol's whole history of splits and dividends from the
reference endpoints; every page (`next_url`) is a request counted like any other and kept in raw/.
`results: null` for a trading symbol is retried before it counts as missing. An empty page after
a page of bars ends the series: it is kept, not retried.

The session in progress (live prices): the same range, today to today, bars only (a refresh
every few minutes has no use for the reference endpoints' two extra requests a symbol). Today's
aggregates need a paid plan (Starter and up: 15 minutes delayed); the free plan has end-of-day
data only and answers `NOT_AUTHORIZED` (docs/providers.md)."""

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from urllib.parse import urlsplit

from stock_assets.clock import now as pipeline_now
from stock_assets.providers.base import RawPayload, SymbolBySymbol
from stock_assets.providers.http import HttpClient
from stock_assets.providers.live_bars import in_progress
from stock_assets.providers.polygon_format import parse_polygon, parse_polygon_actions

REFERENCE = {"splits": "/v3/reference/splits", "dividends": "/v3/reference/dividends"}
REFERENCE_LIMIT = 1000  # the endpoints' largest page: one request covers a symbol's history
TIMESPANS = {"1d": (1, "day"), "60min": (1, "hour"), "30min": (30, "minute"), "15min": (15, "minute"), "5min": (5, "minute"), "1min": (1, "minute")}


@dataclass
class PolygonProvider(SymbolBySymbol):
    http: HttpClient  # carries the key as an Authorization header, so no URL ever holds it
    base_url: str = "https://api.polygon.io"
    name: str = "polygon"
    reuse_fetched: bool = True
    clock: Callable[[], dt.datetime] = pipeline_now
    live_delay: dt.timedelta = dt.timedelta(minutes=15)  # Starter and Developer plans; Advanced is real time

    def _fetch_symbol(self, symbol: str, sessions: list[dt.date], interval: str) -> list[RawPayload]:
        multiplier, timespan = TIMESPANS[interval]
        url = f"{self.base_url}/v2/aggs/ticker/{symbol}/range/{multiplier}/{timespan}/{sessions[0]}/{sessions[-1]}"
        params = {"adjusted": "false", "sort": "asc", "limit": 50000}
        live = interval != "1d" and len(sessions) == 1 and in_progress(sessions[0], self.clock() - self.live_delay)
        payloads = self._pages(url, params, symbol, interval, sessions, partial(_check, symbol=symbol, interval=interval, live=live))
        if live:  # as traded, no corporate action needed; a delayed feed has no bar in the session's first minutes
            return [p for p in payloads if json.loads(p.body).get("results")]
        for kind, path in REFERENCE.items():
            check = partial(_check_actions, symbol=symbol, kind=kind)
            payloads += self._pages(f"{self.base_url}{path}", {"ticker": symbol, "limit": REFERENCE_LIMIT}, symbol, kind, sessions, check)
        return payloads

    def _pages(self, url: str | None, params: dict, symbol: str, interval: str, sessions: list[dt.date], check) -> list[RawPayload]:
        """Every page of one answer, `next_url` after `next_url`; `interval` labels the payloads
        (a bar interval, or a kind of corporate action)."""
        payloads: list[RawPayload] = []
        while url:
            moment = self.clock().astimezone(dt.UTC)
            body = self.http.get(url, params, symbol=symbol, check=lambda b: check(b, first_page=not payloads))
            payloads.append(RawPayload(self.name, symbol, interval, sessions[0], sessions[-1], moment, "json", body, len(payloads)))
            url, params = self._next(json.loads(body).get("next_url")), {}  # next_url carries cursor and query
        return payloads

    def _next(self, next_url: str | None) -> str | None:
        """The next page through our base URL, so a proxy or test server sees every page."""
        if not next_url:
            return None
        parts = urlsplit(next_url)
        return f"{self.base_url}{parts.path}" + (f"?{parts.query}" if parts.query else "")


def _check(body: bytes, first_page: bool, symbol: str, interval: str, live: bool = False) -> None:
    """Raises if the page is not data. An empty page after the first is the series' end
    (Polygon may hand out a `next_url` whose page holds nothing): no retry is spent on it; nor on
    an empty session in progress (nothing traded yet, at the feed's delay)."""
    parse_polygon(body, symbol, interval, dt.datetime.now(dt.UTC), empty_ok=live or not first_page)


def _check_actions(body: bytes, first_page: bool, symbol: str, kind: str) -> None:
    """Raises if a reference page is not data; `results: []` (no action) is data."""
    parse_polygon_actions(body, symbol, kind, dt.datetime.now(dt.UTC))
