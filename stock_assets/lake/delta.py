"""The lake's typed layers (lake/prices, lake/deduped, lake/dq_report, lake/indicators) as Delta
tables (delta-rs: no JVM, Arrow in and out), on a local folder or S3 with the same code.

- Partitioned by `year` (of the session): after compaction one file per year, a few MB for
  hundreds of symbols' daily bars, rows sorted by symbol in row groups of ROW_GROUP_ROWS. One
  symbol over 10 years reads one row group of 11 files; a month partition measured 3-4x slower
  (121 files to open) for no gain elsewhere (benchmarks/README.md). A window rewrite touches
  only its years' files.
- Writing a window is ONE commit that replaces exactly the window's sessions (`predicate` on
  `session`, and on `symbol` for a window scoped to symbols): a re-run is idempotent, and a writer killed before its commit leaves the previous
  version whole (its data files are referenced by no version; vacuum removes them).
- Every commit is a version: `read_window(..., version=N)` reads a table as it was, which is
  what a published snapshot records.
- On S3, concurrent writers of one table commit through conditional puts (`conditional_put:
  etag`): a commit never overwrites another's. delta-rs retries a commit that lost the race
  when the two touch different sessions; one that still fails (two runs creating the table at
  once) is written again from the new version.
"""

import datetime as dt
import os
import re
import uuid
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import ColumnProperties, CommitProperties, DeltaTable, Field, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_random

from stock_assets import tables
from stock_assets.full_disk import writing
from stock_assets.lake.damage import readable
from stock_assets.lake.storage import LakeStorage
from stock_assets.schema import BAR_SCHEMA, conform, validate_symbol

ROW_GROUP_ROWS = 16384
STREAM_ROWS = 65536
PARTITION = "year"
# Symbol first: a year's file holds each symbol's rows together, in row groups small enough that
# a one-symbol read skips the others by their statistics.
SORT_COLUMNS = ("symbol", "interval", "ts", "session", "check_name", "ingested_at")
# delta-rs deletes log entries older than delta.logRetentionDuration (30 days) at each checkpoint,
# and a version without its entry cannot be loaded: the published production version would become
# unreadable once old enough, whatever files vacuum keeps. The log is kept (a few KB a commit).
KEEP_LOG = {"delta.enableExpiredLogCleanup": "false"}


def writer_properties(schema: pa.Schema) -> WriterProperties:
    """ZSTD, with dictionaries only for text columns. Prices and indicator values are nearly all
    distinct: a dictionary for them is built, found too large and dropped on every page, which
    measured (1.26 M indicator rows) 1.4-1.9 s a write against 0.7-0.8 s, and 232 MB against 188 MB."""
    text = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
    return WriterProperties(
        compression="ZSTD", max_row_group_size=ROW_GROUP_ROWS, default_column_properties=ColumnProperties(dictionary_enabled=False),
        column_properties={name: ColumnProperties(dictionary_enabled=True) for name in text},
    )  # fmt: skip


def storage_options(storage: LakeStorage) -> dict[str, str]:
    """delta-rs's options for the lake: on S3 the endpoint and region the rest of the lake uses
    (credentials come from the AWS environment, as for pyarrow), and conditional puts."""
    if storage.is_local:
        return {}
    options = {"conditional_put": "etag"}
    if endpoint := os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"):
        options["AWS_ENDPOINT_URL"] = endpoint
        if urlparse(endpoint).scheme == "http":
            options["AWS_ALLOW_HTTP"] = "true"
    if region := os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"):
        options["AWS_REGION"] = region
    return options


def table_uri(storage: LakeStorage, prefix: str) -> str:
    return storage.uri(prefix)


def open_table(storage: LakeStorage, prefix: str, version: int | dt.datetime | None = None) -> DeltaTable | None:
    """The table (as of a version number or a moment, when given), or None if never written.
    A damaged log raises DamagedTableError naming the file."""
    uri, options = table_uri(storage, prefix), storage_options(storage)
    if not DeltaTable.is_deltatable(uri, storage_options=options):
        return None
    with readable(storage, prefix, options, version):
        table = DeltaTable(uri, storage_options=options)
        if version is not None:
            table.load_as_version(version)
    return table


def _partitions(sessions: list[dt.date]) -> list[str]:
    return sorted({f"{s:%Y}" for s in sessions})


def partition_of(sessions: pa.ChunkedArray):
    """The year of each session as text, formatted once per distinct session (strftime per row is slow)."""
    distinct = pc.unique(sessions)
    years = pc.strftime(distinct.cast(pa.timestamp("s")), "%Y")
    return pc.take(years, pc.index_in(sessions, distinct))


def in_window(table: pa.Table, sessions: list[dt.date], symbols: list[str] | tuple[str, ...] | None = None) -> pa.Table:
    rows = tables.only(table, pc.is_in(table["session"], value_set=pa.array(sorted(set(sessions)), pa.date32())))
    return rows if symbols is None else tables.only(rows, pc.is_in(rows["symbol"], value_set=pa.array(sorted(set(symbols)), pa.string())))


def _scope_predicate(storage: LakeStorage, prefix: str, scope: str | None) -> str:
    """` AND (scope = '…')` (the universe's also takes rows from before scopes: NULL); the column is
    added to a table written before it, so that the predicate can name it."""
    if scope is None:
        return ""
    if not re.fullmatch(r"[A-Za-z0-9.,\-]+", scope):
        raise ValueError(f"invalid window scope {scope!r}")
    existing = open_table(storage, prefix)
    if existing is not None and "scope" not in existing.schema().to_arrow().names:
        existing.alter.add_columns([Field("scope", "string", nullable=True)])
    return f" AND (scope = '{scope}'" + (" OR scope IS NULL)" if scope == "universe" else ")")


def symbol_predicate(symbols: list[str] | tuple[str, ...] | None) -> str:
    """` AND symbol IN ('A', 'B')` for a window scoped to symbols (validated: letters, digits, '.', '-'), else ''."""
    if symbols is None:
        return ""
    if not symbols:
        raise ValueError("a window scoped to symbols needs at least one symbol")
    return " AND symbol IN (" + ", ".join(f"'{validate_symbol(s)}'" for s in sorted(set(symbols))) + ")"


def sort_rows(table: pa.Table) -> pa.Table:
    """Rows in one order whatever files they came from: equal data, equal tables."""
    return tables.sort(table, [c for c in SORT_COLUMNS if c in table.column_names])


# A commit that lost to another writer's (two runs creating the table, or a conflicting window)
# is tried again from the new version: a window replace is idempotent.
@retry(retry=retry_if_exception_type(CommitFailedError), stop=stop_after_attempt(8), wait=wait_random(0.05, 0.5), reraise=True)
def write_window(storage: LakeStorage, prefix: str, table: pa.Table, sessions: list[dt.date],
                 symbols: list[str] | tuple[str, ...] | None = None, scope: str | None = None) -> tuple[int, pa.Table]:  # fmt: skip
    """Make the table hold exactly `table`'s rows for sessions first..last (and, when given, only
    `symbols`' rows: other symbols' rows stay as they are; or, for a table without a symbol
    column (dq_report), only the rows of its `scope` column's value), in one commit; returns the
    new version and the rows written, as read_window returns them. Rows outside the window are
    not written (as a window replace, nothing else of the table may change)."""
    first, last, token = min(sessions), max(sessions), uuid.uuid4().hex
    rows = sort_rows(in_window(table, sessions, symbols))
    predicate = f"session >= '{first}' AND session <= '{last}'" + symbol_predicate(symbols) + _scope_predicate(storage, prefix, scope)
    data = rows.append_column(PARTITION, partition_of(rows["session"]))
    # Streamed in batches: measured on 1.26 M indicator rows, 25 % faster than handing over the
    # table and 200 MiB less memory at the peak.
    stream = pa.RecordBatchReader.from_batches(data.schema, data.to_batches(max_chunksize=STREAM_ROWS))
    # the window's old files are read to replace it
    with readable(storage, prefix, storage_options(storage)), writing("lake table", storage.uri(prefix)):
        write_deltalake(
            table_uri(storage, prefix), stream, mode="overwrite", partition_by=[PARTITION],
            predicate=predicate, storage_options=storage_options(storage), configuration=KEEP_LOG,
            writer_properties=writer_properties(data.schema), commit_properties=CommitProperties(custom_metadata={"stock_assets.write": token}),
        )  # fmt: skip
    return committed_version(storage, prefix, token), rows


def committed_version(storage: LakeStorage, prefix: str, token: str) -> int:
    """The version whose commit carries `token`: this writer's, not the newest (another writer
    may have committed since). Read from the log's own file names, newest first."""
    names = (p for p in storage.list_files(f"{prefix}/_delta_log") if p.rsplit("/", 1)[1].removesuffix(".json").isdigit())
    commits = sorted(names, reverse=True)
    for path in commits[:100]:
        if token.encode() in storage.read_bytes(path):
            return int(path.rsplit("/", 1)[1].removesuffix(".json"))
    raise RuntimeError(f"{storage.uri(prefix)}: the commit just written ({token}) is not in the table's log")


def read_window(storage: LakeStorage, prefix: str, sessions: list[dt.date], schema: pa.Schema | None = BAR_SCHEMA,
                version: int | dt.datetime | None = None, symbols: list[str] | tuple[str, ...] | None = None) -> pa.Table:  # fmt: skip
    """The window's rows (of `symbols` only, when given) in SORT_COLUMNS order; `schema=None` keeps the table's own."""
    table = open_table(storage, prefix, version) if sessions else None
    if table is None:
        return (schema or pa.schema([("session", pa.date32())])).empty_table()
    wanted = pc.field("session").isin(pa.array(sorted(set(sessions)), pa.date32()))
    if symbols is not None:
        wanted = wanted & pc.field("symbol").isin(pa.array(sorted(set(symbols)), pa.string()))
    with readable(storage, prefix, storage_options(storage), version):
        rows = _files_dataset(storage, prefix, table).to_table(filter=pc.field(PARTITION).isin(_partitions(sessions)) & wanted)
    rows = sort_rows(rows.drop_columns([PARTITION]))
    return conform(rows, schema) if schema else rows


def window_files(storage: LakeStorage, prefix: str, first: dt.date, last: dt.date) -> list[tuple[str, int]]:
    """(URI, size) of the current version's data files that may hold sessions first..last (by
    their year and, where the table keeps them, their min/max statistics)."""
    table = open_table(storage, prefix)
    if table is None:
        return []
    actions = pa.table(table.get_add_actions(flatten=True))
    wanted = set(_partitions([first + dt.timedelta(days=d) for d in range((last - first).days + 1)]))
    files = []
    for row in actions.to_pylist():
        if row.get(f"partition.{PARTITION}") not in wanted:
            continue
        low, high = row.get("min.session"), row.get("max.session")
        if low is not None and high is not None and (high < first or low > last):
            continue
        files.append((f"{table.table_uri.rstrip('/')}/{row['path']}", row["size_bytes"]))
    return files


def current_files(storage: LakeStorage, prefix: str) -> list[str]:
    """The data files the table's current version reads, relative to the table, sorted."""
    table = open_table(storage, prefix)
    return sorted(pa.table(table.get_add_actions(flatten=True))["path"].to_pylist()) if table is not None else []


def maintain(storage: LakeStorage, prefix: str, retention: dt.timedelta, keep_versions: tuple[int, ...] = ()) -> dict:
    """Compact small files (one per year per table, in the table's own order) and delete the files no version
    newer than `retention` needs, nor any of `keep_versions`. Other versions older than the retention can no
    longer be read. Any error names the table."""
    try:
        return _maintain(storage, prefix, retention, list(keep_versions))
    except Exception as err:
        text, uri = (str(err).strip() or type(err).__name__).splitlines()[0], storage.uri(prefix)  # no Rust backtrace
        raise RuntimeError(text if text.startswith(f"{uri}: ") else f"{uri}: {text}") from err


def layout_column(schema: pa.Schema) -> str | None:
    """The first of SORT_COLUMNS the table has: what its window writes lead their sort with."""
    return next((c for c in SORT_COLUMNS if c in schema.names), None)


def _maintain(storage: LakeStorage, prefix: str, retention: dt.timedelta, keep_versions: list[int]) -> dict:
    table = open_table(storage, prefix)
    if table is None:
        return {"table": prefix, "uri": storage.uri(prefix), "skipped": "never written"}
    if any(table.metadata().configuration.get(k) != v for k, v in KEEP_LOG.items()):  # created before KEEP_LOG
        table.alter.set_table_properties(KEEP_LOG)
    # Years written more than once (daily runs) are rewritten as one file sorted by the table's
    # leading sort column (a z-order on one column), as a window write leaves it; years already
    # one file are left alone. A table with none of the sort columns is compacted as it is.
    counts = pc.value_counts(pa.table(table.get_add_actions(flatten=True))[f"partition.{PARTITION}"]).to_pylist()
    several = sorted(c["values"] for c in counts if c["counts"] > 1)
    schema = pa.schema(table.schema().to_arrow())
    options = {"partition_filters": [(PARTITION, "in", several)], "writer_properties": writer_properties(schema)}
    column = layout_column(schema)
    compacted = {}
    if several:
        compacted = table.optimize.z_order([column], **options) if column else table.optimize.compact(**options)
    removed = table.vacuum(retention_hours=max(0, int(retention.total_seconds() // 3600)), enforce_retention_duration=False,
                           dry_run=False, keep_versions=keep_versions or None)  # fmt: skip
    table.update_incremental()
    return {"table": prefix, "uri": storage.uri(prefix), "version": table.version(), "files": len(current_files(storage, prefix)),
            "files_compacted": compacted.get("numFilesRemoved", 0), "files_added": compacted.get("numFilesAdded", 0),
            "files_vacuumed": len(removed), "kept_versions": keep_versions}  # fmt: skip


def _files_dataset(storage: LakeStorage, prefix: str, table: DeltaTable) -> ds.Dataset:
    """The version's data files as a pyarrow dataset with the table's schema, `year` from the
    files' Hive paths. Built from the log's add actions: DeltaTable.to_pyarrow_dataset gives
    the same rows but takes ~150 ms to build for a 10-year table, longer than the query."""
    paths = [storage.path(f"{prefix}/{p}") for p in pa.table(table.get_add_actions(flatten=True))["path"].to_pylist()]
    schema = pa.schema(table.schema().to_arrow())
    partitioning = ds.partitioning(pa.schema([schema.field(PARTITION)]), flavor="hive")
    return ds.dataset(paths, schema=schema, format="parquet", filesystem=storage.fs, partitioning=partitioning,
                      partition_base_dir=storage.path(prefix))  # fmt: skip


def dataset(storage: LakeStorage, prefix: str, version: int | dt.datetime | None = None) -> ds.Dataset | None:
    """The table as a pyarrow dataset (for DuckDB or pandas), as of `version` when given."""
    table = open_table(storage, prefix, version)
    if table is None:
        return None
    with readable(storage, prefix, storage_options(storage), version):
        return _files_dataset(storage, prefix, table)
