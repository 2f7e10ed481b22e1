"""A run's window: a set of symbols × a range of sessions, built once from the run and used by
every layer, so that labels, filters and predicates agree.

The sessions are the run's partition keys. The symbols are the run's tag `stock_assets/symbols`
(a comma list: `backfill --symbols X,Y`, `make backfill SYMBOLS=X,Y`, or the tag added in the
UI's launchpad), else the configured universe (STOCK_ASSETS_SYMBOLS). Every layer writes and
replaces only the window's symbols' rows in the window's sessions: another symbol's rows, raw
payloads and `ingested_at` stay as they are, and a symbol removed from the universe keeps its
history.
"""

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from stock_assets.schema import InvalidSymbolError, validate_symbol

SYMBOLS_TAG = "stock_assets/symbols"
UNIVERSE = "universe"  # the scope of a window of the configured universe (dq_report's `scope`)


class InvalidWindowError(ValueError):
    pass


def parse_symbols(text: str, where: str = SYMBOLS_TAG) -> tuple[str, ...]:
    """'ibm, MSFT' -> ('IBM', 'MSFT'): sorted, once each; an empty or invalid one names `where`."""
    symbols = sorted({s.strip().upper() for s in text.split(",") if s.strip()})
    if not symbols:
        raise InvalidWindowError(f"{where}={text!r}: no symbol; give a comma list, e.g. AAPL,MSFT")
    try:
        return tuple(validate_symbol(s) for s in symbols)
    except InvalidSymbolError as err:
        raise InvalidWindowError(f"{where}={text!r}: {err}") from None


@dataclass(frozen=True)
class Window:
    sessions: tuple[dt.date, ...]
    symbols: tuple[str, ...]
    scoped: bool = False  # symbols given by the run, not the configured universe

    @property
    def first(self) -> dt.date:
        return self.sessions[0]

    @property
    def last(self) -> dt.date:
        return self.sessions[-1]

    @property
    def scope(self) -> str:
        """'universe', or the window's symbols as a comma list."""
        return ",".join(self.symbols) if self.scoped else UNIVERSE

    def __str__(self) -> str:
        span = f"{self.first}..{self.last}" if self.sessions else "(no session)"
        return f"{span} of {','.join(self.symbols)}" if self.scoped else span


def window_of(partition_keys: Sequence[str], tags: Mapping[str, str], universe: Sequence[str]) -> Window:
    """The window of a run: its partition keys, and its symbols tag or else `universe`."""
    sessions = tuple(dt.date.fromisoformat(k) for k in partition_keys)
    if SYMBOLS_TAG in tags:
        return Window(sessions, parse_symbols(tags[SYMBOLS_TAG]), scoped=True)
    return Window(sessions, tuple(dict.fromkeys(universe)))
