"""What a run's lake IO manager hands from step to step in memory (stock_assets/lake/io_manager.py),
as plain functions: within one run (the in-process executor keeps one IO manager for the run)
the landing or Delta window an asset just wrote is handed to the steps downstream as a read
would return it, while it is small enough (HANDOFF_MAX_BYTES) and, for landing, only while the
window's folders hold just the files written; every other load reads the lake. The benchmarks
run the data path through the same functions without Dagster."""

import datetime as dt

import pyarrow as pa

from stock_assets.lake import layout
from stock_assets.lake.storage import LakeStorage

HANDOFF_MAX_BYTES = 384 << 20  # per run: two 10-year windows of 500 symbols' daily bars (~170 MiB each), not three


class Handoff:
    """The windows a run's lake IO manager hands on: (lake path, first, last) -> (files written,
    the window as a read returns it). At most `max_bytes` in all, the oldest dropped first: in
    this graph that is a window whose one consumer has already run (landing once the lake is
    written), so the two the checks need stay."""

    def __init__(self, max_bytes: int = HANDOFF_MAX_BYTES):
        self.max_bytes, self.windows = max_bytes, {}

    def put(self, where: str, sessions: list[dt.date], paths: list[str], table: pa.Table) -> None:
        key, size = (where, sessions[0], sessions[-1]), table.nbytes  # nbytes walks every chunk: once
        self.windows.pop(key, None)
        while self.windows and sum(n for _, _, n in self.windows.values()) + size > self.max_bytes:
            self.windows.pop(next(iter(self.windows)))
        if size <= self.max_bytes:
            self.windows[key] = (paths, table, size)

    def get(self, where: str, sessions: list[dt.date], storage: LakeStorage) -> pa.Table | None:
        paths, table, _ = self.windows.get((where, sessions[0], sessions[-1]), (None, None, 0))
        if table is not None and where == "landing" and layout.landing_files(storage, sessions) != paths:
            return None  # files dropped into landing since (ext-*): read them all
        return table


def store_window(handoff: Handoff, storage: LakeStorage, where: str, obj, sessions: list[dt.date], symbols=None) -> list[str]:
    """Write an asset's window (of `symbols` only, when given) where `where` says; landing and
    Parquet windows are handed on too."""
    if where == "raw":
        return layout.write_raw(storage, obj, sessions[0], sessions[-1], symbols)
    if where == "landing":
        paths, kept = layout.write_landing_and_keep(storage, obj, sessions, symbols)
    else:
        paths, kept = layout.write_and_keep(storage, where, obj, sessions, symbols)
    handoff.put(where, sessions, paths, kept)
    return paths


def load_window(handoff: Handoff, storage: LakeStorage, where: str, sessions: list[dt.date], symbols=None):
    """An input's window (of `symbols` only, when given): handed on when the run holds it, else read from the lake."""
    if where == "raw":
        return layout.read_raw(storage, sessions[0], sessions[-1], symbols=symbols)
    if (handed := handoff.get(where, sessions, storage)) is not None:
        return handed
    if where == "landing":
        return layout.read_landing(storage, sessions, symbols)
    return layout.read_sessions(storage, where, sessions, symbols=symbols)
