"""Where each layer lives in the lake, and how a window of sessions is written and read.

    raw/<first>_<last>/<provider>__<interval>__<symbol>__<ingested>.<ext>   payloads as received
    landing/<session>/<ingested>.csv                                        landing CSV by date
    landing/<session>/ext-<digest>.csv                                      rows of a file dropped in landing/incoming/
    lake/<table>/session=<session>/part-0.parquet                           Hive-partitioned Parquet

Writing a window replaces what the window held before (idempotent re-runs); every file
is written atomically by LakeStorage.
"""

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from stock_assets.lake.landing_format import from_landing_csv, landing_dates, to_landing_csv
from stock_assets.lake.storage import LakeStorage
from stock_assets.providers.base import RawPayload
from stock_assets.schema import BAR_SCHEMA, conform

STAMP = "%Y%m%dT%H%M%S%fZ"
SORT_COLUMNS = ("session", "symbol", "interval", "ts", "check_name", "ingested_at")


def stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime(STAMP)


def parse_stamp(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, STAMP).replace(tzinfo=dt.UTC)


# --- raw ---------------------------------------------------------------------------------

def raw_name(p: RawPayload) -> str:
    return f"{p.provider}__{p.interval}__{p.symbol}__{stamp(p.ingested_at)}__{p.part}.{p.extension}"


def write_raw(storage: LakeStorage, payloads: list[RawPayload], first: dt.date, last: dt.date) -> list[str]:
    folder = f"raw/{first}_{last}"
    written = [f"{folder}/{raw_name(p)}" for p in payloads]
    for path, p in zip(written, payloads):
        storage.write_bytes(path, p.body)
    fetched = {(p.provider, p.interval) for p in payloads}
    for old in set(storage.list_files(folder)) - set(written):
        provider, interval, *_ = old.rsplit("/", 1)[1].split("__")
        if (provider, interval) in fetched:
            storage.delete(old)
    return written


def _payload_from_path(storage: LakeStorage, path: str, first: dt.date, last: dt.date) -> RawPayload:
    name = path.rsplit("/", 1)[1]
    provider, interval, symbol, moment, rest = name.split("__")
    part, extension = rest.split(".", 1)
    return RawPayload(provider, symbol, interval, first, last, parse_stamp(moment), extension, storage.read_bytes(path), int(part))


def read_raw(storage: LakeStorage, first: dt.date, last: dt.date, exact: bool = False) -> list[RawPayload]:
    """The payloads fetched for exactly this window, or else (unless `exact`) every window
    overlapping it: a sub-range re-parses what a larger backfill fetched."""
    windows = [f"{first}_{last}"] if exact or storage.list_files(f"raw/{first}_{last}") else [
        w for w in storage.list_dirs("raw") if w.split("_")[0] <= str(last) and w.split("_")[1] >= str(first)
    ]
    payloads = []
    for window in windows:
        a, b = (dt.date.fromisoformat(x) for x in window.split("_"))
        payloads += [_payload_from_path(storage, p, a, b) for p in storage.list_files(f"raw/{window}")]
    return payloads


# --- landing -----------------------------------------------------------------------------

def split_by_session(bars: pa.Table) -> dict[dt.date, pa.Table]:
    """Rows per session, each sorted the same way so that equal data gives equal bytes."""
    bars = bars.sort_by([(c, "ascending") for c in SORT_COLUMNS if c in bars.column_names])
    days = bars["session"].combine_chunks().cast(pa.int32()).to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(np.r_[True, days[1:] != days[:-1]]) if len(days) else np.array([], int)
    ends = np.r_[starts[1:], len(days)]
    epoch = dt.date(1970, 1, 1)
    return {epoch + dt.timedelta(days=int(days[s])): bars.slice(s, e - s) for s, e in zip(starts, ends)}


def _replace_folder(storage: LakeStorage, folder: str, keep: str | None, keep_prefix: str | None = None) -> None:
    for old in storage.list_files(folder):
        if old != keep and not (keep_prefix and old.rsplit("/", 1)[1].startswith(keep_prefix)):
            storage.delete(old)


def write_landing(storage: LakeStorage, bars: pa.Table, sessions: list[dt.date]) -> list[str]:
    return write_landing_and_keep(storage, bars, sessions)[0]


def write_landing_and_keep(storage: LakeStorage, bars: pa.Table, sessions: list[dt.date]) -> tuple[list[str], pa.Table]:
    """write_landing, and the window as read_landing will return it while the window's folders
    hold only these files."""
    by_session = split_by_session(bars)

    def write(session: dt.date) -> str | None:
        rows = by_session.get(session)
        path = None
        if rows is not None:
            path = f"landing/{session}/{stamp(pc.max(rows['ingested_at']).as_py())}.csv"
            storage.write_bytes(path, to_landing_csv(rows))
        # Files landed from other systems' drops (ext-*) are theirs, not this window's to replace.
        _replace_folder(storage, f"landing/{session}", keep=path, keep_prefix="ext-")
        return path

    return [path for path in storage.map(write, sessions) if path], _window(by_session, sessions)


def landing_files(storage: LakeStorage, sessions: list[dt.date]) -> list[str]:
    """Every file in the window's landing folders, ours and dropped ones, in session order."""
    return [path for found in storage.map(lambda s: storage.list_files(f"landing/{s}"), sessions) for path in found]


def read_landing(storage: LakeStorage, sessions: list[dt.date]) -> pa.Table:
    def read(path: str) -> pa.Table:
        name = path.rsplit("/", 1)[1].removesuffix(".csv")
        moment = parse_stamp(name) if name[:8].isdigit() else dt.datetime.now(dt.UTC)
        return from_landing_csv(storage.read_bytes(path), source="landing", ingested_at=moment, name=storage.uri(path))

    tables = storage.map(read, landing_files(storage, sessions))
    return pa.concat_tables(tables) if tables else BAR_SCHEMA.empty_table()


def landing_rows_per_session(storage: LakeStorage, sessions: list[dt.date]) -> dict[dt.date, int]:
    """Rows in landing per session (by each row's date), without parsing the rest of each row."""
    dates = storage.map(lambda path: landing_dates(storage.read_bytes(path), storage.uri(path)), landing_files(storage, sessions))
    if not dates:
        return {}
    counts = pc.value_counts(pa.chunked_array(dates, pa.date32()).combine_chunks())
    return dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()))


# --- Hive-partitioned Parquet --------------------------------------------------------------

def session_path(prefix: str, session: dt.date) -> str:
    return f"{prefix}/session={session}/part-0.parquet"


def write_sessions(storage: LakeStorage, prefix: str, table: pa.Table, sessions: list[dt.date]) -> list[str]:
    """One Parquet file per session of the window; the session lives in the path only."""
    return write_split(storage, prefix, split_by_session(table), sessions)


def write_split(storage: LakeStorage, prefix: str, by_session: dict[dt.date, pa.Table], sessions: list[dt.date]) -> list[str]:
    """write_sessions for a table already split (split_by_session)."""

    def write(session: dt.date) -> str | None:
        path, rows = session_path(prefix, session), by_session.get(session)
        if rows is not None:
            storage.write_parquet(path, rows.drop_columns(["session"]))
        _replace_folder(storage, f"{prefix}/session={session}", keep=path if rows is not None else None)
        return path if rows is not None else None

    return [path for path in storage.map(write, sessions) if path]


def write_and_keep(storage: LakeStorage, prefix: str, table: pa.Table, sessions: list[dt.date]) -> tuple[list[str], pa.Table]:
    """write_sessions, and the window as read_sessions will return it (bars): the sessions in
    order, each as its file holds it."""
    by_session = split_by_session(table)
    return write_split(storage, prefix, by_session, sessions), _window(by_session, sessions)


def _window(by_session: dict[dt.date, pa.Table], sessions: list[dt.date]) -> pa.Table:
    kept = [by_session[s] for s in sessions if s in by_session]
    return conform(pa.concat_tables(kept)) if kept else BAR_SCHEMA.empty_table()


def copy_sessions(storage: LakeStorage, prefix: str, to: str, sessions: list[dt.date]) -> tuple[list[str], int]:
    """The window's files under `prefix` copied byte for byte under `to`: (paths written, rows)."""
    paths = [storage.path(session_path(prefix, s)) for s in sessions]
    found = [storage.relative(i.path) for i in storage.fs.get_file_info(paths) if i.type == pafs.FileType.File]

    def copy(path: str) -> tuple[str, int]:
        target = to + path[len(prefix):]
        storage.copy(path, target)
        return target, storage.parquet_rows(target)

    copied = storage.map(copy, found)
    return [target for target, _ in copied], sum(rows for _, rows in copied)


def read_sessions(storage: LakeStorage, prefix: str, sessions: list[dt.date], schema: pa.Schema | None = BAR_SCHEMA) -> pa.Table:
    """The window's rows, with `session` restored from the path; `schema=None` keeps the file's."""
    paths = [storage.path(session_path(prefix, s)) for s in sessions]
    found = [i.path for i in storage.fs.get_file_info(paths) if i.type == pafs.FileType.File]
    if not found:
        return (schema or pa.schema([("session", pa.date32())])).empty_table()
    dataset = ds.dataset(
        found,
        filesystem=storage.fs,
        format="parquet",
        partitioning=ds.partitioning(pa.schema([("session", pa.date32())]), flavor="hive"),
        partition_base_dir=storage.path(prefix),
    )
    return conform(dataset.to_table(), schema) if schema else dataset.to_table()
