"""Rebuild a lake table from what the lake and the warehouse still hold, after its log, a
checkpoint or a data file was damaged (lake/damage.py says which):

    lake/prices     every landed bar, read from landing/ as the pipeline reads it
    lake/deduped    the same bars, one per key (transforms/dedup.py), as deduped_prices makes them
    lake/dq_report  the warehouse's dq_report table
    lake/indicators the warehouse's indicators table

The damaged table is first moved aside to lake/.damaged/<name>-<stamp>/ (nothing is deleted),
then written again a few sessions at a time (never across a year, at most CHUNK_BYTES of
landing CSV or CHUNK_ROWS warehouse rows in memory). A rebuild killed midway leaves a partial
table: rebuild again (the partial one is moved aside too).

    python -m stock_assets.cli rebuild --table lake/deduped
"""

import datetime as dt
import json
from collections.abc import Iterator

import pyarrow as pa

from stock_assets.lake import delta, layout
from stock_assets.lake.storage import LakeStorage
from stock_assets.restatement import read_actions
from stock_assets.schema import conform
from stock_assets.transforms.actions import adjust
from stock_assets.transforms.dedup import dedupe_latest
from stock_assets.transforms.indicators import INDICATOR_SCHEMA
from stock_assets.transforms.quality import DQ_SCHEMA

FROM_LANDING = ("lake/prices", "lake/deduped")
FROM_WAREHOUSE = {"lake/dq_report": ("dq_report", DQ_SCHEMA), "lake/indicators": ("indicators", INDICATOR_SCHEMA)}
TABLES = (*FROM_LANDING, *FROM_WAREHOUSE)
DAMAGED = "lake/.damaged"
PUBLISHED = ("lake/deduped", "published/LATEST")  # the table production reads, and its pointer
CHUNK_BYTES = 256 << 20
CHUNK_ROWS = 2_000_000


def chunks(weights: dict[dt.date, int], limit: int) -> Iterator[list[dt.date]]:
    """Sessions in order, cut where a year ends or the weights reach `limit`."""
    run, total = [], 0
    for session in sorted(weights):
        if run and (session.year != run[-1].year or total + weights[session] > limit):
            yield run
            run, total = [], 0
        run.append(session)
        total += weights[session]
    if run:
        yield run


def landing_bytes(storage: LakeStorage) -> dict[dt.date, int]:
    """Bytes of landing CSV per session folder (landing/<session>/), from one listing."""
    sizes: dict[dt.date, int] = {}
    for info in storage.file_infos("landing"):
        parts = storage.relative(info.path).split("/")
        if len(parts) != 3 or parts[2].startswith("_") or not parts[2].endswith(".csv"):
            continue
        try:
            session = dt.date.fromisoformat(parts[1])
        except ValueError:
            continue  # landing/incoming/ and the like
        sizes[session] = sizes.get(session, 0) + info.size
    return sizes


def landed(storage: LakeStorage, table: str, sessions: list[dt.date]) -> pa.Table:
    bars = layout.read_landing(storage, sessions)
    if table != "lake/deduped":
        return bars
    deduped = dedupe_latest(bars)  # and adj_close ours, as deduped_prices makes it
    return conform(adjust(deduped, read_actions(storage, sorted(set(deduped["symbol"].to_pylist())))))


def warehouse_rows(warehouse, name: str) -> dict[dt.date, int]:
    if not warehouse.table_exists(name):
        return {}
    counts = warehouse.query(f'SELECT session, count(*) AS n FROM "{name}" GROUP BY session')
    return dict(zip(counts["session"].to_pylist(), counts["n"].to_pylist()))


def move_aside(storage: LakeStorage, table: str, now: dt.datetime) -> str | None:
    """Move the table's folder to lake/.damaged/<name>-<stamp>/; its new URI (None: nothing there)."""
    files = storage.list_files(table)
    if not files:
        return None
    target = f"{DAMAGED}/{table.rsplit('/', 1)[1]}-{layout.stamp(now)}"
    if storage.is_local:
        storage.fs.create_dir(storage.path(DAMAGED), recursive=True)
        storage.fs.move(storage.path(table), storage.path(target))
    else:  # S3 has no folders to rename: each object copied, then the originals deleted
        storage.map(lambda path: storage.copy(path, target + path[len(table) :]), files)
        storage.map(storage.delete, files)
    return storage.uri(target)


def keep_production_readable(storage: LakeStorage, table: str, moved: str, now: dt.datetime) -> bool:
    """published/LATEST names a version of the table that was moved: point it at the moved copy,
    which still holds that version (the rebuilt table's versions are new ones). The next run that
    passes its checks publishes the rebuilt table."""
    if table != PUBLISHED[0]:
        return False
    try:
        manifest = json.loads(storage.read_bytes(PUBLISHED[1]))
    except FileNotFoundError:
        return False
    if manifest.get("table") != storage.uri(table):
        return False
    manifest |= {"table": moved, "moved_by_rebuild_at": now.isoformat()}
    storage.write_bytes(PUBLISHED[1], json.dumps(manifest, indent=2).encode())
    return True


def rebuild_table(storage: LakeStorage, table: str, warehouse=None, now: dt.datetime | None = None) -> dict:
    """Move the lake table `table` (one of TABLES) aside and write it again from landing/ or,
    for lake/dq_report and lake/indicators, from `warehouse` (a stock_assets.warehouse Warehouse).
    Returns what was done: table, source, moved_to, sessions, rows, version."""
    if table not in TABLES:
        raise ValueError(f"no lake table {table!r} to rebuild: one of {', '.join(TABLES)}")
    if table in FROM_WAREHOUSE and warehouse is None:
        raise ValueError(f"{table} is rebuilt from the warehouse: give the warehouse")
    now = now or dt.datetime.now(dt.UTC)
    if table in FROM_WAREHOUSE:
        name, schema = FROM_WAREHOUSE[table]
        weights, limit, source = warehouse_rows(warehouse, name), CHUNK_ROWS, f"warehouse table {name}"
    else:
        weights, limit, source = landing_bytes(storage), CHUNK_BYTES, storage.uri("landing")
    if not weights and storage.list_files(table):
        raise ValueError(f"{source} holds no session to rebuild {storage.uri(table)} from: the table is left as it is "
                         "(is the warehouse or STOCK_ASSETS_HOME the one that wrote it?)")  # fmt: skip
    moved = move_aside(storage, table, now)
    rows, version = 0, None
    for sessions in chunks(weights, limit):
        if table in FROM_WAREHOUSE:
            part = warehouse.query(f'SELECT * FROM "{name}" WHERE session BETWEEN ? AND ?', [sessions[0], sessions[-1]])
            part = conform(part, schema)
        else:
            part = landed(storage, table, sessions)
        version, written = delta.write_window(storage, table, part, sessions)
        rows += written.num_rows
    return {
        "table": table, "uri": storage.uri(table), "source": source, "moved_to": moved, "sessions": len(weights), "rows": rows,
        "version": version, "production_points_at_moved_copy": bool(moved) and keep_production_readable(storage, table, moved, now),
    }  # fmt: skip
