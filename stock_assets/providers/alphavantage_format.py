"""Alpha Vantage TIME_SERIES_DAILY[_ADJUSTED] and TIME_SERIES_INTRADAY bodies (JSON or datatype=csv) -> canonical bars.

Pure: bytes in, Arrow out. The provider quirks handled here:
errors come back as HTTP 200 bodies, values are strings, and intraday bars were labelled by their
END time in older payloads and by their START time in newer ones. The canonical `ts` is the bar start.
"""

import datetime as dt
import io
import re

import pandas as pd
import pyarrow as pa

from stock_assets.calendar import NY
from stock_assets.providers.errors import (
    BadKeyError,
    BadSymbolError,
    MalformedPayloadError,
    PremiumEndpointError,
    ProviderError,
    ThrottledError,
    json_object,
)
from stock_assets.schema import conform, constant, validate_symbol

PROVIDER = "alphavantage"
OHLCV = ["open", "high", "low", "close", "volume"]
_FLOATS = ["open", "high", "low", "close", "adj_close", "dividend", "split_coefficient"]
# JSON keys lose their "1. " prefix first; then JSON and CSV names map to ours.
_RENAME = {
    "adjusted close": "adj_close",
    "adjusted_close": "adj_close",
    "dividend amount": "dividend",
    "dividend_amount": "dividend",
    "split coefficient": "split_coefficient",
}
# A notice (a body whose only key is `Note` or `Information`) is throttling unless it refuses the
# key or the plan. Refusals are recognised by what they say, with URLs stripped first: every notice
# links https://www.alphavantage.co/premium/, and throttle notices advertise "premium plans" and
# "premium endpoints" too (2018: "Please visit …/premium/ if you would like to have a higher API
# call volume"; 2025: "… to lift the free key rate limit … and instantly unlock all premium endpoints").
_NOTICE_KEYS = {"Note", "Information"}
_URL = re.compile(r"\(?\s*(?:https?://|www\.)[^\s)]*\)?", re.IGNORECASE)
_BAD_KEY = re.compile(r"\b(invalid|missing)\b[^.!?]*\bapi ?key\b|\bapi ?key\b[^.!?]*\b(invalid|missing)\b", re.IGNORECASE)  # one sentence
_REFUSALS = (
    re.compile(r"\bis an? premium (endpoint|feature|function|parameter)", re.IGNORECASE),  # "This is a premium endpoint."
    re.compile(r"\bpremium[- ]only\b", re.IGNORECASE),
    re.compile(r"\bsubscribe to\b[^.!?]*?\bto (instantly )?unlock\b", re.IGNORECASE),  # "subscribe to … to instantly unlock all premium endpoints"
    re.compile(r"\bdemo\b[^.!?]*\bapi ?key\b|\bapi ?key\b[^.!?]*\bdemo\b", re.IGNORECASE),  # "The demo API key is for demo purposes only"
)
# Session boundaries in minutes after midnight ET: regular 09:30-16:00, extended 04:00-20:00.
_REGULAR, _EXTENDED = (570, 960), (240, 1200)
# Intraday payloads whose labels touch no session boundary (a mid-session slice) cannot show their
# convention; they are judged by when they were fetched. An estimate: our end-labelled recordings
# run to 2021-07, the start-labelled one was fetched 2024-02, and AV reworked intraday in mid-2023.
START_LABELS_SINCE = dt.datetime(2023, 7, 1, tzinfo=dt.UTC)


def check_alphavantage_body(body: bytes, extension: str, symbol: str) -> None:
    """Raise the matching ProviderError if `body` is not time-series data."""
    _decode(body, extension, symbol)


def parse_alphavantage(body: bytes, extension: str, symbol: str, interval: str, ingested_at: dt.datetime) -> pa.Table:
    """Canonical bars, sorted by ts, from one daily or intraday body."""
    validate_symbol(symbol)
    step = _step(interval)
    doc = _decode(body, extension, symbol)
    try:
        frame, tz = _json_frame(doc, symbol, interval) if doc is not None else _csv_frame(body)
        return _bars(frame, tz, symbol, interval, step, ingested_at)
    except ProviderError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, pa.ArrowException) as err:
        raise MalformedPayloadError(PROVIDER, symbol, f"cannot parse {interval} {extension} body: {err}") from err


def _step(interval: str) -> pd.Timedelta | None:
    if interval == "1d":
        return None
    match = re.fullmatch(r"(\d+)min", interval)
    if not match:
        raise ValueError(f"unsupported interval {interval!r}: expected '1d' or '<n>min'")
    return pd.Timedelta(minutes=int(match[1]))


def _decode(body: bytes, extension: str, symbol: str) -> dict | None:
    """The JSON document holding a 'Time Series…' key, or None for a CSV data body; raise otherwise."""
    if extension not in ("json", "csv"):
        raise ValueError(f"extension must be 'json' or 'csv', not {extension!r}")
    if extension == "csv" and not body.lstrip().startswith(b"{"):
        first = body.lstrip().split(b"\n", 1)[0].decode(errors="replace").strip()
        header = [c.strip().lower() for c in first.split(",")]
        if header[0] not in ("timestamp", "time") or not set(OHLCV) <= set(header):
            detail = f"CSV body without a timestamp,{','.join(OHLCV)} header: {first[:80]!r}"
            raise MalformedPayloadError(PROVIDER, symbol, detail)
        if not body.endswith(b"\n"):
            raise MalformedPayloadError(PROVIDER, symbol, "CSV body does not end with a newline: truncated")
        return None
    doc = json_object(PROVIDER, symbol, body)
    if any(key.startswith("Time Series") for key in doc):
        if extension == "csv":
            raise MalformedPayloadError(PROVIDER, symbol, "JSON time series where CSV was asked")
        return doc
    messages = {key: str(doc[key]) for key in ("Error Message", "Information", "Note") if key in doc}
    for key, text in messages.items():  # a bad key has come back under any of them
        if _BAD_KEY.search(_without_urls(text)):
            raise BadKeyError(PROVIDER, symbol, f"{key}: {text}")
    if "Error Message" in doc:
        raise BadSymbolError(PROVIDER, symbol, f"invalid call or unknown symbol: {doc['Error Message']}")
    if messages and set(doc) <= _NOTICE_KEYS:
        key, text = next(iter(messages.items()))
        refused = any(pattern.search(_without_urls(t)) for t in messages.values() for pattern in _REFUSALS)
        raise (PremiumEndpointError if refused else ThrottledError)(PROVIDER, symbol, f"{key}: {text}")
    raise MalformedPayloadError(PROVIDER, symbol, f"no 'Time Series…' key in a body with keys {sorted(doc)[:6]}")


def _without_urls(text: str) -> str:
    """The notice's words: links (with their parentheses) removed, whatever words their paths hold."""
    return _URL.sub(" ", text)


def _json_frame(doc: dict, symbol: str, interval: str) -> tuple[pd.DataFrame, str]:
    meta = doc.get("Meta Data") or {}
    meta_symbol = next((v for k, v in meta.items() if k.endswith("Symbol")), symbol)
    if str(meta_symbol).upper() != symbol:
        raise MalformedPayloadError(PROVIDER, symbol, f"payload is for symbol {meta_symbol!r}")
    key = "Time Series (Daily)" if interval == "1d" else f"Time Series ({interval})"
    if not doc.get(key):
        found = [k for k in doc if k != "Meta Data"]
        raise MalformedPayloadError(PROVIDER, symbol, f"no {key!r} (or it is empty) for {interval}; found {found}")
    frame = pd.DataFrame.from_dict(doc[key], orient="index", dtype=object)
    frame.columns = [re.sub(r"^\d+\.\s*", "", str(c)) for c in frame.columns]
    return frame, next((v for k, v in meta.items() if k.endswith("Time Zone")), NY)


def _csv_frame(body: bytes) -> tuple[pd.DataFrame, str]:
    frame = pd.read_csv(io.BytesIO(body), dtype=str)  # dtype=str: Arrow parses numbers, exactly
    frame.columns = [c.strip().lower() for c in frame.columns]
    return frame.set_index("timestamp" if "timestamp" in frame.columns else "time"), NY


def _bars(frame: pd.DataFrame, tz: str, symbol: str, interval: str, step, ingested_at: dt.datetime) -> pa.Table:
    frame = frame.rename(columns=_RENAME)
    missing = [c for c in OHLCV if c not in frame.columns]
    if missing:
        raise KeyError(f"missing columns {missing}")
    labels = pd.DatetimeIndex(pd.to_datetime(frame.index, format="%Y-%m-%d" if step is None else "%Y-%m-%d %H:%M:%S"))
    if step is None:  # daily: the session's 00:00 in New York
        ts = labels.tz_localize(NY)
    else:
        ts = (labels - step if _end_labelled(labels, ingested_at) else labels).tz_localize(tz)
    if ts.has_duplicates:
        raise ValueError(f"duplicate bars at {list(ts[ts.duplicated()][:3])}")
    session = ts.tz_convert(NY).tz_localize(None).normalize()
    n = len(frame)
    columns = {
        "symbol": constant(symbol, pa.string(), n),
        "session": pa.array(session.values.astype("datetime64[D]"), pa.date32()),
        "ts": pa.array(ts.tz_convert("UTC")),
        "interval": constant(interval, pa.string(), n),
        "volume": _strings(frame["volume"]).cast(pa.int64()),
        "source": constant(PROVIDER, pa.string(), n),
        "ingested_at": constant(ingested_at, pa.timestamp("us", tz="UTC"), n),
    }
    columns |= {c: _strings(frame[c]).cast(pa.float64()) for c in _FLOATS if c in frame.columns}
    return conform(pa.table(columns)).sort_by("ts")  # dividend, split_coefficient: null unless adjusted


def _strings(column: pd.Series) -> pa.Array:
    """AV sends numbers as strings ("120.5000"); Arrow's parser rounds them exactly like float()."""
    return pa.array(column.to_numpy(dtype=object), pa.string(), from_pandas=True)


def _end_labelled(labels: pd.DatetimeIndex, ingested_at: dt.datetime) -> bool:
    """Are the bars labelled by their end time? End labels fall in (open, close], start labels in
    [open, close), so a label at the session close means end-labelled and one at the open means
    start-labelled. A label outside 09:30-16:00 means extended hours (04:00-20:00)."""
    minutes = labels.hour * 60 + labels.minute
    extended = bool(((minutes < _REGULAR[0]) | (minutes > _REGULAR[1])).any())
    open_, close = _EXTENDED if extended else _REGULAR
    at_open, at_close = bool((minutes == open_).any()), bool((minutes == close).any())
    if at_open and at_close:
        raise ValueError("intraday labels touch both the session open and its close: cannot tell start from end labels")
    if at_open or at_close:
        return at_close
    fetched = ingested_at if ingested_at.tzinfo else ingested_at.replace(tzinfo=dt.UTC)
    return fetched < START_LABELS_SINCE
