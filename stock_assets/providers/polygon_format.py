"""Polygon (Massive) /v2/aggs/ticker/{T}/range/... pages -> canonical bars and the next page's URL;
/v3/reference/splits and /v3/reference/dividends pages -> corporate actions (ACTIONS_SCHEMA).

Pure: bytes in, Arrow out. `t` is epoch milliseconds UTC at the bar start. Daily range bars start at
00:00 America/New_York (05:00Z or 04:00Z across DST); grouped-daily and /prev bars are stamped
16:00 ET instead, so daily bars are re-stamped at their session's 00:00 ET, the canonical daily ts.
"""

import datetime as dt
import re

import pandas as pd
import pyarrow as pa

from stock_assets.calendar import NY
from stock_assets.providers.base import ACTION_KINDS
from stock_assets.providers.errors import (  # noqa: F401 - re-exported for callers of this module
    BadKeyError,
    EmptyResultError,
    MalformedPayloadError,
    MissingResultsError,
    PremiumEndpointError,
    ProviderError,
    ThrottledError,
    json_object,
)
from stock_assets.schema import BAR_SCHEMA, conform, constant, validate_symbol
from stock_assets.transforms.actions import ACTIONS_SCHEMA

PROVIDER = "polygon"
DATA_STATUSES = ("OK", "DELAYED")
_REQUIRED = ["o", "h", "l", "c", "v", "t"]
# Regular (CD) and special (SC) cash dividends move the price on the ex-date; capital-gain
# distributions (LT, ST: funds) and amounts in another currency than our USD prices are not counted.
CASH_DIVIDEND_TYPES = ("CD", "SC")
_ACTION_FIELDS = {"splits": ("execution_date", "split_from", "split_to"), "dividends": ("ex_dividend_date", "cash_amount")}


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


def parse_polygon_actions(body: bytes, symbol: str, kind: str, first_seen: dt.datetime) -> pa.Table:
    """One /v3/reference/{splits,dividends} page as corporate actions (ACTIONS_SCHEMA, factor NULL),
    one row per ex-date: split value = split_to / split_from (4.0 for 4:1); dividend value = the
    cash amount, the counted kinds of one ex-date summed. `results: []` is no action; a missing or
    null `results` raises MissingResultsError (retried: an unknown action cannot be told from none)."""
    validate_symbol(symbol)
    if kind not in ACTION_KINDS:
        raise ValueError(f"unsupported corporate-action kind {kind!r}: expected one of {ACTION_KINDS}")
    doc = _load(body, symbol)
    results = doc.get("results")
    if results is None:
        raise MissingResultsError(PROVIDER, symbol, f"{kind} answer without results (status {doc.get('status')})")
    try:
        frame = _actions(pd.DataFrame(results, columns=None if results else list(_ACTION_FIELDS[kind])), symbol, kind)
    except ProviderError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise MalformedPayloadError(PROVIDER, symbol, f"cannot parse {kind}: {err}") from err
    n = len(frame)
    return pa.table(
        {
            "symbol": constant(symbol, pa.string(), n),
            "ex_date": pa.array(frame["ex_date"].values.astype("datetime64[D]"), pa.date32()),
            "kind": constant("split" if kind == "splits" else "dividend", pa.string(), n),
            "value": pa.array(frame["value"], pa.float64()),
            "source": constant(PROVIDER, pa.string(), n),
            "first_seen": constant(first_seen, pa.timestamp("us", tz="UTC"), n),
            "factor": pa.nulls(n, pa.float64()),
        },
        schema=ACTIONS_SCHEMA,
    )


def _actions(frame: pd.DataFrame, symbol: str, kind: str) -> pd.DataFrame:
    missing = [c for c in _ACTION_FIELDS[kind] if c not in frame.columns]
    if missing:
        raise KeyError(f"results lack {missing}")
    if "ticker" in frame.columns and (frame["ticker"] != symbol).any():
        raise MalformedPayloadError(PROVIDER, symbol, f"{kind} for other tickers {sorted(set(frame['ticker']) - {symbol})[:5]}")
    if kind == "splits":
        frame = pd.DataFrame({"ex_date": frame["execution_date"], "value": frame["split_to"].astype(float) / frame["split_from"].astype(float)})
    else:
        counted = frame.get("dividend_type", pd.Series("CD", frame.index)).isin(CASH_DIVIDEND_TYPES)
        usd = frame.get("currency", pd.Series("USD", frame.index)).fillna("USD").eq("USD")
        frame = frame[counted & usd]
        frame = pd.DataFrame({"ex_date": frame["ex_dividend_date"], "value": frame["cash_amount"].astype(float), "type": frame.get("dividend_type")})
        frame = frame.drop_duplicates()  # a record listed twice is one dividend
    bad = frame[~(frame["value"] > 0)]  # NaN included
    if len(bad):
        raise MalformedPayloadError(PROVIDER, symbol, f"{kind} with a value that is not positive on {list(bad['ex_date'][:3])}")
    frame = frame.assign(ex_date=pd.to_datetime(frame["ex_date"], format="%Y-%m-%d"))
    if kind == "splits":
        frame = frame.drop_duplicates()
        if frame["ex_date"].duplicated().any():
            dates = frame["ex_date"][frame["ex_date"].duplicated()].dt.date.tolist()[:3]
            raise MalformedPayloadError(PROVIDER, symbol, f"splits with different ratios on the same date {dates}")
        return frame.sort_values("ex_date")
    return frame.groupby("ex_date", as_index=False)["value"].sum().sort_values("ex_date")
