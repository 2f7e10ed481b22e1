"""The lake's IO manager: one class for every lake asset, local folder or S3 alike.

An asset names its place in the lake with `metadata={"lake_path": ...}`: "raw" and
"landing" have layouts of their own, anything else is a Delta table (lake/delta.py). Outputs
and inputs span the run's whole partition window (single-run backfills).

Within one run the landing or Parquet window an asset just wrote is also handed to the steps
downstream as it is, in memory (the in-process executor keeps one IO manager for the run): a
10-year window is thousands of files, and reading them back costs as much as writing them. The
handoff holds what a read would return (layout.write_and_keep, write_landing_and_keep), only
while it is small enough (HANDOFF_MAX_BYTES) and, for landing, only while the window's folders
hold just the files written; every other load reads the lake.
"""

import contextlib
import datetime as dt
from collections.abc import Iterator

import dagster as dg
import pyarrow as pa
from pydantic import PrivateAttr

from stock_assets.full_disk import DiskFullError
from stock_assets.lake import layout
from stock_assets.lake.storage import LakeStorage
from stock_assets.window import SYMBOLS_TAG, window_of


class LakeResource(dg.ConfigurableResource):
    """The lake root: a local path or s3://bucket/prefix (STOCK_ASSETS_LAKE_URL)."""

    url: str

    def storage(self) -> LakeStorage:
        return LakeStorage(self.url)


@contextlib.contextmanager
def stop_when_disk_full() -> Iterator[None]:
    """A full disk fails the step at once, not after its retries: no retry frees a disk."""
    try:
        yield
    except DiskFullError as err:
        raise dg.Failure(str(err), allow_retries=False) from err


HANDOFF_MAX_BYTES = 384 << 20  # per run: two 10-year windows of 500 symbols' daily bars (~170 MiB each), not three


def _sessions(context: dg.InputContext | dg.OutputContext) -> list[dt.date]:
    return [dt.date.fromisoformat(k) for k in context.asset_partition_keys]


def window_symbols(context: dg.InputContext | dg.OutputContext, universe: list[str]) -> tuple[str, ...] | None:
    """The run's window's symbols (stock_assets.window): its tag, else `universe`; None (every
    symbol) when neither is known (an IO manager built without the universe)."""
    step = getattr(context, "_step_context", None)  # absent in a context built by hand (tests)
    tags = step.run_tags if step is not None else {}
    if SYMBOLS_TAG not in tags and not universe:
        return None
    return window_of([], tags, universe).symbols


def window_scope(context: dg.InputContext | dg.OutputContext) -> str:
    """The run's window's scope (stock_assets.window.Window.scope): 'universe' or its symbols."""
    step = getattr(context, "_step_context", None)
    return window_of([], step.run_tags if step is not None else {}, ()).scope


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


class LakeIOManager(dg.ConfigurableIOManager):
    lake: LakeResource
    universe: list[str] = []  # STOCK_ASSETS_SYMBOLS: a window's symbols unless its run names others
    _handoff: Handoff = PrivateAttr(default_factory=Handoff)

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        where = context.definition_metadata["lake_path"]
        storage = self.lake.storage()
        with stop_when_disk_full():
            paths = store_window(self._handoff, storage, where, obj, _sessions(context), window_symbols(context, self.universe))
        written = {"files_written": len(paths)} if where in ("raw", "landing") else {"delta_version": int(paths[0].rsplit("@v", 1)[1])}
        context.add_output_metadata(written | {"lake_location": dg.MetadataValue.path(storage.uri(where))})

    def load_input(self, context: dg.InputContext):
        where = context.upstream_output.definition_metadata["lake_path"]
        return load_window(self._handoff, self.lake.storage(), where, _sessions(context), window_symbols(context, self.universe))
