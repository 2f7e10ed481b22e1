"""What every provider hands the pipeline: raw payloads, kept byte-for-byte, and a parser."""

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa


@dataclass(frozen=True)
class RawPayload:
    """One provider response, exactly as received, with what was asked for."""

    provider: str
    symbol: str
    interval: str
    first_session: dt.date
    last_session: dt.date
    ingested_at: dt.datetime  # UTC
    extension: str  # "csv" or "json": how `body` is encoded
    body: bytes


class Provider(Protocol):
    name: str

    def fetch(self, symbols: list[str], sessions: list[dt.date], interval: str) -> list[RawPayload]:
        """Fetch bars for every symbol over the sessions; one payload per request made."""
        ...

    def parse(self, payload: RawPayload) -> pa.Table:
        """Turn one payload into canonical bars (stock_assets.schema.BAR_SCHEMA)."""
        ...
