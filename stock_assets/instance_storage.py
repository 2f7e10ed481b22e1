"""The embedded instance's storage (dagster.yaml): Dagster's SQLite storage, the same files and
tables, with a backfill's bookkeeping written in batches and planned for what is partitioned.

- A batch of events is one transaction per database, one statement per table. Dagster's SQLite
  event log opens, commits (an fsync) and closes a connection for every event, two for an asset
  event: ~10 ms an event, and a backfill writes two for every (asset, session), the planned
  events at its start and the materializations. Dagster hands those over in batches when
  DAGSTER_EVENT_BATCH_SIZE is set: LocalInstance's default is 1000.
- A run is stored without its partitions subset. Dagster 1.13 uses a run's subset only to plan
  the run's events, and then plans every asset and check of the run over it, those with no
  partitions too: a check evaluated once per run was stored once per session of the run, each
  copy carrying the partitions definition (every NYSE holiday since STOCK_ASSETS_START), 2.2 GB
  for a 4,664-session run. Without the subset each is planned over its own partitions, from the
  run's range tags: a partitioned asset once per session, the rest once.
"""

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from itertools import groupby

import dagster as dg
import yaml
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.base_storage import DagsterStorage
from dagster._core.storage.event_log.schema import AssetKeyTable, SqlEventLogStorageTable
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
from dagster._core.storage.schedules.sqlite.sqlite_schedule_storage import SqliteScheduleStorage
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._core.storage.sqlite_storage import (
    DagsterSqliteStorage,
    _event_logs_directory,
    _runs_directory,
    _schedule_directory,
)
from dagster._serdes import ConfigurableClassData
from dagster_shared.record import replace
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

BATCH_SIZE = "1000"  # events a transaction at most
BULK = {dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED, dg.DagsterEventType.ASSET_MATERIALIZATION, dg.DagsterEventType.ASSET_OBSERVATION}


class RangeRunStorage(SqliteRunStorage):
    """SqliteRunStorage storing each run without its partitions subset (see above)."""

    def add_run(self, dagster_run: dg.DagsterRun) -> dg.DagsterRun:
        return super().add_run(replace(dagster_run, partitions_subset=None))


class BatchedSqliteEventLogStorage(SqliteEventLogStorage):
    """SqliteEventLogStorage whose store_event_batch is one transaction per database."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        self._batch: dict[str, Connection] = {}
        self._batch_thread: int | None = None  # the thread storing a batch, holding _db_lock
        self._batch_stack: ExitStack | None = None
        self._tables: set[str] = set()
        self._asset_key_columns: dict[str, bool] = {}
        super().__init__(base_dir, inst_data)

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        if self._batch_thread == threading.get_ident():
            if shard not in self._batch:  # open until the batch ends
                self._batch[shard] = self._batch_stack.enter_context(self._transaction(shard))
            yield self._batch[shard]
            return
        with self._db_lock, self._transaction(shard) as conn:
            yield conn

    @contextmanager
    def _transaction(self, shard: str) -> Iterator[Connection]:
        """SqliteEventLogStorage._connect without its lock."""
        engine = create_engine(self.conn_string_for_shard(shard), poolclass=NullPool, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS})
        try:
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn
        finally:
            engine.dispose()

    def store_event_batch(self, events: Sequence[dg.EventLogEntry]) -> None:
        with self._db_lock:
            self._batch_thread = threading.get_ident()
            try:
                with ExitStack() as self._batch_stack:  # each database's transaction commits at the end, or rolls back
                    for (bulk, run_id), group in groupby(events, lambda e: (e.dagster_event_type in BULK, e.run_id)):
                        if bulk:
                            self._store_asset_events(run_id, list(group))
                        else:
                            for event in group:
                                self.store_event(event)
            finally:
                self._batch, self._batch_thread, self._batch_stack = {}, None, None

    def _store_asset_events(self, run_id: str, events: list[dg.EventLogEntry]) -> None:
        """What store_event does for each of these events, one statement a table: the run's log,
        its copy in the index, the events' tags, and each asset's row as its last event leaves it."""
        rows = [self._event_to_row(event) for event in events]
        with self.run_connection(run_id) as conn:
            conn.execute(SqlEventLogStorageTable.insert(), rows)
        with self.index_transaction() as conn:
            insert = SqlEventLogStorageTable.insert().returning(SqlEventLogStorageTable.c.id, sort_by_parameter_order=True)
            ids = list(conn.execute(insert, rows).scalars())
            self._store_asset_event_tags(conn, events, ids)
            has_columns = self._has_asset_key_index_cols_on_connection(conn)
            # An event sets the same columns as every other of its type: each type's last event, in order, does what all would.
            last = {(e.dagster_event.asset_key.to_string(), e.dagster_event_type): (e, i) for e, i in zip(events, ids, strict=True)}
            values: dict[str, dict] = {}
            for (asset_key, _), (event, event_id) in sorted(last.items(), key=lambda item: item[1][1]):
                values.setdefault(asset_key, {}).update(self._get_asset_entry_values(event, event_id, has_columns))
            for asset_key, row in values.items():
                if row and not conn.execute(AssetKeyTable.update().values(**row).where(AssetKeyTable.c.asset_key == asset_key)).rowcount:
                    conn.execute(AssetKeyTable.insert().values(asset_key=asset_key, **row))

    def has_table(self, table_name: str) -> bool:
        if table_name not in self._tables and super().has_table(table_name):
            self._tables.add(table_name)  # migrations add tables, nothing drops them
        return table_name in self._tables

    def _has_asset_key_col_on_connection(self, conn: Connection, column_name: str) -> bool:
        if column_name not in self._asset_key_columns:
            self._asset_key_columns[column_name] = super()._has_asset_key_col_on_connection(conn, column_name)
        return self._asset_key_columns[column_name]


class LocalInstance(dg.DagsterInstance):
    """dagster.yaml's instance: Dagster's, whose storage when dagster.yaml names none is
    EmbeddedStorage in the instance's folder (where Dagster's default keeps the same files)."""

    @classmethod
    def config_schema(cls) -> dict:
        return {}

    @classmethod
    def config_defaults(cls, base_dir: str) -> dict:
        storage = ConfigurableClassData(__name__, EmbeddedStorage.__name__, yaml.dump({"base_dir": base_dir}))
        return {**InstanceRef.config_defaults(base_dir), "storage": storage}

    def _get_event_batch_size(self) -> int:
        """Dagster's DAGSTER_EVENT_BATCH_SIZE (its default: 0, no batches), 1000 by default here."""
        return int(os.getenv("DAGSTER_EVENT_BATCH_SIZE", BATCH_SIZE))


class EmbeddedStorage(DagsterSqliteStorage):
    """DagsterSqliteStorage, the same files under base_dir, with the two storages above."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        self.base_dir = base_dir
        self._run_storage = RangeRunStorage.from_local(_runs_directory(base_dir))
        self._event_log_storage = BatchedSqliteEventLogStorage(_event_logs_directory(base_dir))
        self._schedule_storage = SqliteScheduleStorage.from_local(_schedule_directory(base_dir))
        self._inst_data = inst_data
        DagsterStorage.__init__(self)

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: dict) -> "EmbeddedStorage":
        return cls.from_local(inst_data=inst_data, **config_value)
