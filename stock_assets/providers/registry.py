"""Parse any stored payload by the provider that sent it: a re-parse never needs the API."""

import os
from concurrent.futures import ThreadPoolExecutor

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
        return parse_polygon(payload.body, payload.symbol, payload.interval, payload.ingested_at, empty_ok=payload.part > 0)[0]
    if payload.provider == "csvdir":
        return parse_csvdir(payload.body, payload.symbol, payload.interval, payload.ingested_at, name=f"raw/ payload {payload.symbol} {payload.first_session}..{payload.last_session}")
    raise ValueError(f"no parser for provider {payload.provider!r} (payload for {payload.symbol})")


def parse_payloads(payloads: list[RawPayload], expected: tuple[type[Exception], ...]) -> list[pa.Table | Exception]:
    """parse_payload over `payloads`, in order, on a thread per core (the CSV and JSON readers
    release the GIL): a payload that fails with one of the `expected` errors gives the error in
    its place, so the others are kept."""

    def parse(payload: RawPayload) -> pa.Table | Exception:
        try:
            return parse_payload(payload)
        except expected as err:
            return err

    if len(payloads) < 2:
        return [parse(p) for p in payloads]
    with ThreadPoolExecutor(min(len(payloads), os.cpu_count() or 1)) as pool:
        return list(pool.map(parse, payloads))
