"""What every provider hands the pipeline: raw payloads, kept byte-for-byte, and a parser."""

import datetime as dt
from dataclasses import dataclass, field
from typing import Protocol

from stock_assets.providers.errors import ProviderError

# The `interval` of a payload that answers for a symbol's corporate actions, not its bars
# (Polygon's reference endpoints): registry.parse_actions reads it, landing never does.
ACTION_KINDS = ("splits", "dividends")


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
    part: int = 0  # the n-th response of one symbol's fetch (pages, months)

    @property
    def is_actions(self) -> bool:
        """A corporate-actions answer (interval in ACTION_KINDS), not bars."""
        return self.interval in ACTION_KINDS


@dataclass
class FetchResult:
    """What a fetch brought back, and which symbols it could not get, with why."""

    payloads: list[RawPayload] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the run should say about the bars (sessions not traded yet)
    # Failed symbols whose failure another try cannot mend (ProviderError.retryable is False: bad key,
    # premium endpoint, bad symbol, malformed or bad request, spent daily budget). A failure not
    # named here may pass (throttling, 5xx, a dropped connection) and keeps the step's retry.
    permanent: set[str] = field(default_factory=set)
    # Failed symbols the provider answered for with no bar in the window (ProviderError.no_bars):
    # not listed yet, unless the lake shows it traded the session before (raw_prices decides).
    no_bars: set[str] = field(default_factory=set)

    @property
    def all_permanent(self) -> bool:
        return bool(self.failures) and set(self.failures) <= self.permanent


class SymbolBySymbol:
    """A provider whose API answers one symbol a request (or a few): `_fetch_symbol` fetches one;
    a ProviderError costs that symbol only, named with its reason."""

    def _fetch_symbol(self, symbol: str, sessions: list[dt.date], interval: str) -> list[RawPayload]:
        raise NotImplementedError

    def fetch(self, symbols: list[str], sessions: list[dt.date], interval: str) -> FetchResult:
        result = FetchResult()
        for symbol in symbols:
            try:
                result.payloads += self._fetch_symbol(symbol, sessions, interval)
            except ProviderError as err:
                result.failures[symbol] = f"{type(err).__name__}: {err}"
                if not err.retryable:
                    result.permanent.add(symbol)
                if err.no_bars:
                    result.no_bars.add(symbol)
        return result


class Provider(Protocol):
    name: str

    # False where fetching is free (synthetic): a re-run fetches everything again.
    reuse_fetched: bool

    # How far behind the market the provider's bars of the session in progress are (its plan's
    # delay): a live refresh shows the bars ended by now minus this (live_bars.bars_so_far).
    live_delay: dt.timedelta

    def fetch(self, symbols: list[str], sessions: list[dt.date], interval: str) -> FetchResult:
        """Fetch bars for every symbol over the sessions; one payload per response received.
        A symbol that fails is named in `failures` and does not stop the others."""
        ...
