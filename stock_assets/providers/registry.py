"""Parse any stored payload by the provider that sent it: a re-parse never needs the API."""

import pyarrow as pa

from stock_assets.providers.alphavantage_format import parse_alphavantage
from stock_assets.providers.base import RawPayload
from stock_assets.providers.csvdir_format import parse_csvdir
from stock_assets.providers.polygon_format import parse_polygon
from stock_assets.providers.synthetic import parse_synthetic


def parse_payload(payload: RawPayload) -> pa.Table:
    if payload.provider == "synthetic":
        return parse_synthetic(payload)
    if payload.provider == "alphavantage":
        return parse_alphavantage(payload.body, payload.extension, payload.symbol, payload.interval, payload.ingested_at)
    if payload.provider == "polygon":
        return parse_polygon(payload.body, payload.symbol, payload.interval, payload.ingested_at)[0]
    if payload.provider == "csvdir":
        return parse_csvdir(payload.body, payload.symbol, payload.interval, payload.ingested_at, name=f"raw/ payload {payload.symbol} {payload.first_session}..{payload.last_session}")
    raise ValueError(f"no parser for provider {payload.provider!r} (payload for {payload.symbol})")
