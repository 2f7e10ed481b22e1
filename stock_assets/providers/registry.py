"""Parse any stored payload by the provider that sent it: a re-parse never needs the API.
Bars and corporate actions apart: an actions payload (RawPayload.is_actions) is no bars to
parse_payload, and parse_actions reads only those."""

import os
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa

from stock_assets.providers.alphavantage_format import parse_alphavantage
from stock_assets.providers.base import RawPayload
from stock_assets.providers.csvdir_format import parse_csvdir
from stock_assets.providers.polygon_format import parse_polygon, parse_polygon_actions
from stock_assets.providers.synthetic import parse_synthetic
from stock_assets.schema import BAR_SCHEMA, conform
from stock_assets.transforms.actions import ACTIONS_SCHEMA, KEY


def parse_payload(payload: RawPayload) -> pa.Table:
    if payload.is_actions:
        return conform(BAR_SCHEMA.empty_table())
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


def parse_actions(payloads: list[RawPayload]) -> pa.Table:
    """The corporate actions that providers send apart from the bars (Polygon's reference
    endpoints), ACTIONS_SCHEMA with factor NULL, one row per (symbol, ex_date, kind): the value of
    the newest answer that lists it, first_seen the earliest. Bars payloads are skipped, so this
    is empty for providers whose actions travel in the bars (Alpha Vantage adjusted, csvdir,
    synthetic: transforms.actions reads those from the bars)."""
    parsers = {"polygon": parse_polygon_actions}
    tables = []
    for p in payloads:
        if not p.is_actions:
            continue
        if p.provider not in parsers:
            raise ValueError(f"no corporate-actions parser for provider {p.provider!r} (payload {p.interval} for {p.symbol})")
        tables.append(parsers[p.provider](p.body, p.symbol, p.interval, p.ingested_at))
    actions = pa.concat_tables(tables) if tables else ACTIONS_SCHEMA.empty_table()
    if not actions.num_rows:
        return actions
    newest_last = actions.sort_by("first_seen").group_by(list(KEY), use_threads=False)  # keeps that order per key
    merged = newest_last.aggregate([("value", "last"), ("source", "last"), ("first_seen", "min"), ("factor", "last")])
    merged = merged.rename_columns({f"{c}_{how}": c for c, how in (("value", "last"), ("source", "last"), ("first_seen", "min"), ("factor", "last"))})
    return merged.select(ACTIONS_SCHEMA.names).cast(ACTIONS_SCHEMA).sort_by([(k, "ascending") for k in KEY])
