"""Polygon (Massive) /v2/aggs/ticker/{T}/range/... pages -> canonical bars and the next page's URL.

Pure: bytes in, Arrow out. `t` is epoch milliseconds UTC at the bar start. Daily range bars start at
00:00 America/New_York (05:00Z or 04:00Z across DST); grouped-daily and /prev bars are stamped
16:00 ET instead, so daily bars are re-stamped at their session's 00:00 ET, the canonical daily ts.
"""

import datetime as dt
import re

import pandas as pd
import pyarrow as pa

from stock_assets.calendar import NY
from stock_assets.providers.errors import (  # noqa: F401 - re-exported for callers of this module
    BadKeyError,
    EmptyResultError,
    MalformedPayloadError,
    PremiumEndpointError,
    ProviderError,
    ThrottledError,
    json_object,
)
from stock_assets.schema import BAR_SCHEMA, conform, constant, validate_symbol

PROVIDER = "polygon"
DATA_STATUSES = ("OK", "DELAYED")
_REQUIRED = ["o", "h", "l", "c", "v", "t"]


def parse_polygon(body: bytes, symbol: str, interval: str, ingested_at: dt.datetime, empty_ok: bool = False) -> tuple[pa.Table, str | None]:
    """(canonical bars sorted by ts, next_url or None) for one aggregates page.

    `results` missing/null/empty raises EmptyResultError: Polygon sometimes answers that for an
    active symbol on a trading day, so the caller retries before concluding there is no data.
    With `empty_ok` (a page after the first: the series' end) it is no bars instead.
    """
    validate_symbol(symbol)
    if interval != "1d" and not re.fullmatch(r"\d+min", interval):
        raise ValueError(f"unsupported interval {interval!r}: expected '1d' or '<n>min'")
    doc = _load(body, symbol)
    results = doc.get("results")
    if not results and empty_ok:
        return conform(BAR_SCHEMA.empty_table()), None
    if not results:
        detail = f"no results (status {doc.get('status')}, resultsCount {doc.get('resultsCount')})"
        raise EmptyResultError(PROVIDER, symbol, f"{detail}; retry before concluding there is no data")
    try:
        table = _bars(pd.DataFrame(results), symbol, interval, ingested_at)
    except ProviderError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, pa.ArrowException) as err:
        raise MalformedPayloadError(PROVIDER, symbol, f"cannot parse {interval} aggregates: {err}") from err
    return table, doc.get("next_url") or None


def _load(body: bytes, symbol: str) -> dict:
    doc = json_object(PROVIDER, symbol, body)
    status = doc.get("status")
    message = str(doc.get("error") or doc.get("message") or "")
    if status == "NOT_AUTHORIZED":
        raise PremiumEndpointError(PROVIDER, symbol, f"NOT_AUTHORIZED: {message}")
    if status == "ERROR":
        bad_key = re.search(r"(?i)\bkey\b", message)  # "API Key was not provided", not "?apiKey=" in a URL
        raise (BadKeyError if bad_key else ProviderError)(PROVIDER, symbol, f"ERROR: {message}")
    if status not in DATA_STATUSES:
        raise MalformedPayloadError(PROVIDER, symbol, f"unexpected status {status!r}: {message}")
    if doc.get("ticker", symbol) != symbol:
        raise MalformedPayloadError(PROVIDER, symbol, f"page is for ticker {doc['ticker']!r}")
    return doc


def _bars(frame: pd.DataFrame, symbol: str, interval: str, ingested_at: dt.datetime) -> pa.Table:
    missing = [c for c in _REQUIRED if c not in frame.columns]
    if missing:
        raise KeyError(f"results lack {missing}")
    if "T" in frame.columns and (frame["T"] != symbol).any():
        others = sorted(set(frame["T"]) - {symbol})[:5]
        raise MalformedPayloadError(PROVIDER, symbol, f"results for other tickers {others} (a grouped-daily page?)")
    start = pd.DatetimeIndex(pd.to_datetime(frame["t"].astype("int64"), unit="ms", utc=True))
    local = start.tz_convert(NY)
    ts = local.normalize().tz_convert("UTC") if interval == "1d" else start
    if ts.has_duplicates:
        raise ValueError(f"duplicate bars at {list(ts[ts.duplicated()][:3])}")
    n = len(frame)
    columns = {
        "symbol": constant(symbol, pa.string(), n),
        "session": pa.array(local.tz_localize(None).normalize().values.astype("datetime64[D]"), pa.date32()),
        "ts": pa.array(ts),
        "interval": constant(interval, pa.string(), n),
        # Polygon's adjusted=true is split-adjusted only, not dividend-adjusted: that is not our
        # adj_close, so adj_close stays null and o/h/l/c carry whatever the request asked for.
        "open": _floats(frame["o"]),
        "high": _floats(frame["h"]),
        "low": _floats(frame["l"]),
        "close": _floats(frame["c"]),
        # Volume arrives as a JSON float (1.12117471e+08); whole numbers in practice, rounded to be safe.
        "volume": pa.array(frame["v"].astype("float64").round(), from_pandas=True).cast(pa.int64()),
        "source": constant(PROVIDER, pa.string(), n),
        "ingested_at": constant(ingested_at, pa.timestamp("us", tz="UTC"), n),
    }
    if "vw" in frame.columns:
        columns["vwap"] = _floats(frame["vw"])
    if "n" in frame.columns:
        columns["trades"] = _floats(frame["n"]).cast(pa.int64())
    return conform(pa.table(columns)).sort_by("ts")


def _floats(column: pd.Series) -> pa.Array:
    return pa.array(column.astype("float64"), pa.float64(), from_pandas=True)
