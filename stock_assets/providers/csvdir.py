"""Archives already on disk or in a bucket: `<root>/<SYMBOL>.csv` (or `<symbol>.csv`) per symbol,
the root a local folder or an s3://bucket/prefix (STOCK_ASSETS_CSVDIR_URL), read through the
lake's own storage layer (LakeStorage, handed in by the resource: providers do not import the
lake), so both are the same code. Daily bars only, of sessions that have ended: no live prices.

A fetch lists the root once, then reads each symbol's file (a few at a time). The whole file is
parsed, so a bad line anywhere is found at once and named (file, line, column): the symbol fails
permanently until the file is fixed, like a provider's malformed answer. The payload kept in raw/
is the file's header and its lines dated in the window, each byte for byte: raw/ holds one
payload per window, and a whole file in every window of a daily schedule or a long backfill
would be stored over and over. Lines dated in the window on days that are not sessions are kept,
so that landing_csv sets them aside with its reason; lines outside it stay in the archive.

Reading costs nothing and the files may be corrected, so a re-run reads every symbol again
(`reuse_fetched` False): a fixed file is picked up without `refetch`.
"""

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import pyarrow.compute as pc
import pyarrow.fs as pafs

from stock_assets.clock import now as pipeline_now
from stock_assets.providers.base import FetchResult, RawPayload
from stock_assets.providers.csvdir_format import PROVIDER, parse_csvdir, window_rows
from stock_assets.providers.errors import MalformedPayloadError, ProviderError
from stock_assets.providers.live_bars import in_progress

SETTING = "STOCK_ASSETS_CSVDIR_URL"


class Archive(Protocol):
    """What is read of stock_assets.lake.storage.LakeStorage: a local folder or an S3 prefix."""

    url: str

    @property
    def fs(self) -> pafs.FileSystem: ...

    def path(self, relpath: str) -> str: ...

    def uri(self, relpath: str) -> str: ...

    def read_bytes(self, relpath: str) -> bytes: ...

    def map(self, fn: Callable, items: Iterable) -> list: ...


class MissingFileError(ProviderError):
    """No `<SYMBOL>.csv` (nor `<symbol>.csv`) under the root, or two of them: permanent."""


class NoRowsInWindowError(ProviderError):
    """The symbol's file holds no line dated in the window: permanent (the archive ends, or starts, elsewhere)."""


class UnsupportedIntervalError(ProviderError):
    """csvdir files hold daily bars; STOCK_ASSETS_INTERVAL asks for another: permanent."""


class NoLivePricesError(ProviderError):
    """An archive holds sessions that have ended: nothing of the session in progress. Permanent."""


class ArchiveUnreadableError(ProviderError):
    """The root could not be listed or a file could not be read (S3 unreachable, a dropped
    connection): may pass, so the step retry tries again."""

    retryable = True


@dataclass
class CsvDirProvider:
    archive: Archive  # LakeStorage(STOCK_ASSETS_CSVDIR_URL): a local folder or s3://bucket/prefix
    name: str = PROVIDER
    reuse_fetched: bool = False  # reading is free, and a corrected file must be read again
    clock: Callable[[], dt.datetime] = pipeline_now
    live_delay: dt.timedelta = dt.timedelta(0)  # no live prices at all: a live fetch fails (NoLivePricesError)

    def fetch(self, symbols: list[str], sessions: list[dt.date], interval: str) -> FetchResult:
        if not symbols or not sessions:
            return FetchResult()
        if interval != "1d" and in_progress(sessions[-1], self.clock()):
            why = (f"no live prices: csvdir reads archived daily files, with no bar of the session in progress ({sessions[-1]}); "
                   "live_prices needs STOCK_ASSETS_PROVIDER=synthetic, alphavantage or polygon")  # fmt: skip
            return _failed(symbols, lambda s: NoLivePricesError(PROVIDER, s, why))
        if interval != "1d":
            why = f"csvdir files hold daily bars: STOCK_ASSETS_INTERVAL={interval} cannot be served; set STOCK_ASSETS_INTERVAL=1d"
            return _failed(symbols, lambda s: UnsupportedIntervalError(PROVIDER, s, why))
        storage, url = self.archive, self.archive.url
        try:
            files = _listing(storage)
        except OSError as err:  # S3 unreachable or refused, a local folder not readable
            why = f"cannot list {url} ({SETTING}): {type(err).__name__}: {err}"
            return _failed(symbols, lambda s: ArchiveUnreadableError(PROVIDER, s, why))
        if files is None:
            why = f"{url} is no folder, or holds nothing: check {SETTING}"
            return _failed(symbols, lambda s: MissingFileError(PROVIDER, s, why))
        moment = self.clock()

        def one(symbol: str) -> RawPayload | ProviderError:
            try:
                return self._read(storage, files, symbol, sessions, moment)
            except ProviderError as err:
                return err

        result = FetchResult()
        for symbol, outcome in zip(symbols, storage.map(one, symbols)):
            if isinstance(outcome, RawPayload):
                result.payloads.append(outcome)
            else:
                result.failures[symbol] = f"{type(outcome).__name__}: {outcome}"
                if not outcome.retryable:
                    result.permanent.add(symbol)
        return result

    def _read(self, storage: Archive, files: set[str], symbol: str, sessions: list[dt.date], moment: dt.datetime) -> RawPayload:
        candidates = [f"{symbol}.csv", f"{symbol.lower()}.csv"]
        found = [f for f in dict.fromkeys(candidates) if f in files]
        if not found:
            raise MissingFileError(PROVIDER, symbol, f"no file {storage.uri(candidates[0])} (nor {candidates[1]})")
        if len(found) > 1:
            raise MissingFileError(PROVIDER, symbol, f"two files for one symbol, {found[0]} and {found[1]} in {storage.url}: keep one")
        uri = storage.uri(found[0])
        try:
            body = storage.read_bytes(found[0])
        except FileNotFoundError:
            raise MissingFileError(PROVIDER, symbol, f"{uri} was removed while being read") from None
        except OSError as err:
            raise ArchiveUnreadableError(PROVIDER, symbol, f"cannot read {uri}: {type(err).__name__}: {err}") from None
        bars = parse_csvdir(body, symbol, "1d", moment, name=uri)  # the whole file: a bad line anywhere is named
        cut = window_rows(body, bars["session"], sessions[0], sessions[-1])
        if cut is None:
            raise MalformedPayloadError(PROVIDER, symbol, f"{uri}: a quoted value spans lines, so its lines cannot be cut by date")
        rows, count = cut
        if not count:
            span = "it has no line under its header"
            if bars.num_rows:
                extent = pc.min_max(bars["session"]).as_py()
                span = f"its lines run {extent['min']}..{extent['max']}"
            error = NoRowsInWindowError(PROVIDER, symbol, f"{uri} has no line dated {sessions[0]}..{sessions[-1]}: {span}")
            error.no_bars = bool(bars.num_rows) and extent["min"] > sessions[-1]  # starts after the window: not listed yet?
            raise error
        return RawPayload(self.name, symbol, "1d", sessions[0], sessions[-1], moment, "csv", rows)


def _listing(storage: Archive) -> set[str] | None:
    """Names of the files directly under the root, or None when the root is no folder (on S3: no
    object under the prefix). One listing per fetch, not a probe per symbol and spelling."""
    root = storage.path("").rstrip("/")
    if storage.fs.get_file_info(root).type != pafs.FileType.Directory:
        return None
    infos = storage.fs.get_file_info(pafs.FileSelector(root, recursive=False))
    return {i.base_name for i in infos if i.type == pafs.FileType.File}


def _failed(symbols: list[str], error: Callable[[str], ProviderError]) -> FetchResult:
    result = FetchResult()
    for symbol in symbols:
        err = error(symbol)
        result.failures[symbol] = f"{type(err).__name__}: {err}"
        if not err.retryable:
            result.permanent.add(symbol)
    return result
