"""Redshift: PostgreSQL's driver and transaction; the staging table is filled by COPY from S3.

    CREATE TEMP TABLE <t>_stage (<the Parquet files' columns>)
    COPY <t>_stage FROM 's3://…/<first>_<last>.manifest' IAM_ROLE '…' FORMAT AS PARQUET MANIFEST
    check: rows per session of the window in staging = rows per session the asset returned
    DELETE FROM <t> WHERE session BETWEEN … [AND symbol IN (…)]   (ddl.window_delete_sql, shared)
    INSERT INTO <t> (…) SELECT … FROM <t>_stage WHERE session BETWEEN … [AND symbol IN (…)]
    COMMIT

Which files:
- With `lake_prefix` (prices from lake/deduped, indicators, dq_report): the current version's
  data files of the lake's Delta table that hold the window (lake/delta.py window_files), listed
  in a manifest: one COPY per window. A file holds a year, so it may hold sessions outside the
  window: the insert takes the window's only, and the per-session count check catches any file
  that disagrees with the rows the asset returned.
- Otherwise, or when the asset's rows carry a column the lake's files lack (`prices`' adj_factor,
  derived from the corporate actions; lake/deduped keeps adj_close only): the Arrow table written
  as one Parquet object under warehouse/staging/ and COPYed the same way.
Manifests stay in the lake (warehouse/manifests/<table>/<first>_<last>.manifest): the record of
what each window's last load read.

Redshift has no lock_timeout setting (SET lock_timeout fails there): a lock wait is bounded by
statement_timeout (STOCK_ASSETS_WAREHOUSE_STATEMENT_TIMEOUT_SECONDS), which counts queueing and
waiting too, and connect_timeout still applies.
"""

import datetime as dt
import json
import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from stock_assets.lake import delta
from stock_assets.lake.storage import LakeStorage
from stock_assets.warehouse.common import load_error, quote
from stock_assets.warehouse.ddl import column_ddl, window_sql
from stock_assets.warehouse.postgres import PostgresWarehouse

IAM_ROLE = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+")


def manifest_json(entries: list[tuple[str, int]]) -> bytes:
    """Redshift's manifest; Parquet COPY needs each object's content_length."""
    listed = [{"url": url, "mandatory": True, "meta": {"content_length": size}} for url, size in entries]
    return json.dumps({"entries": listed}, indent=1).encode()


def stage_sql(table: str, file_schema: pa.Schema) -> str:
    return f"CREATE TEMP TABLE {quote(table + '_stage')} ({', '.join(column_ddl(file_schema, 'redshift'))})"


def copy_statements(table: str, file_schema: pa.Schema, manifest_uri: str, iam_role: str) -> list[str]:
    if not IAM_ROLE.fullmatch(iam_role) or "'" in manifest_uri:
        raise ValueError(f"not an IAM role ARN or not a plain S3 URI: {iam_role!r}, {manifest_uri!r}")
    copy = f"COPY {quote(table + '_stage')} FROM '{manifest_uri}' IAM_ROLE '{iam_role}' FORMAT AS PARQUET MANIFEST"
    return [stage_sql(table, file_schema), copy]


def insert_sql(table: str, file_columns: list[str], where: str = "TRUE") -> str:
    columns = ", ".join(quote(c) for c in file_columns)
    return f"INSERT INTO {quote(table)} ({columns}) SELECT {columns} FROM {quote(table + '_stage')} WHERE {where}"


def sessions_of(data: pa.Table) -> list[tuple[dt.date, int]]:
    counts = data.group_by("session").aggregate([("session", "count")]).sort_by("session")
    return list(zip(counts["session"].to_pylist(), counts["session_count"].to_pylist()))


@dataclass
class RedshiftWarehouse(PostgresWarehouse):
    lake: LakeStorage | None = None
    iam_role: str | None = None
    dialect = "redshift"

    def dsn(self) -> str:
        return re.sub(r"^redshift://", "postgresql://", self.url)  # same wire protocol, same libpq

    def session_settings(self) -> list[str]:
        return [s for s in super().session_settings() if not s.startswith("SET lock_timeout")]

    def load_connection(self):
        """psycopg2, as for reads: the data reaches Redshift by its COPY from S3, so the load has
        nothing to stream from here (and ADBC's PostgreSQL driver supports Redshift for basic
        queries only)."""
        return self.connect()

    def _files(self, table: str, data: pa.Table, first: dt.date, last: dt.date, lake_prefix: str | None) -> list[tuple[str, int]]:
        """(URI, size) of the Parquet files to COPY: the lake table's files that hold the window
        (they may hold other sessions of its year too: the insert takes the window's only), or
        the rows written as one staging file."""
        if lake_prefix:
            if entries := delta.window_files(self.lake, lake_prefix, first, last):
                return entries
            raise load_error(table, first, last, f"not in the lake: the Delta table {self.lake.uri(lake_prefix)} holds no file for the window")
        path = f"warehouse/staging/{table}/{first}_{last}.parquet"
        self.lake.write_parquet(path, data)
        return [(self.lake.uri(path), self.lake.fs.get_file_info(self.lake.path(path)).size)]

    def _manifest(self, table: str, entries: list[tuple[str, int]], first: dt.date, last: dt.date) -> str:
        relpath = f"warehouse/manifests/{table}/{first}_{last}.manifest"
        self.lake.write_bytes(relpath, manifest_json(entries))
        return self.lake.uri(relpath)

    def _copy(self, cur, statement: str) -> None:  # the one statement PostgreSQL cannot stand in for
        cur.execute(statement)

    def _stage(self, cur, table: str, data: pa.Table, first: dt.date, last: dt.date, lake_prefix: str | None, window: str | None = None) -> str:
        if self.lake is None or self.lake.is_local or not self.iam_role:
            raise load_error(table, first, last, "Redshift loads by COPY from S3: it needs an s3:// lake "
                             "(STOCK_ASSETS_LAKE_URL) and STOCK_ASSETS_REDSHIFT_IAM_ROLE")
        if not data.num_rows:
            cur.execute(stage_sql(table, data.schema))
            return insert_sql(table, data.column_names)
        entries = self._files(table, data, first, last, lake_prefix)
        file_schema = pq.read_schema(entries[0][0].removeprefix("s3://"), filesystem=self.lake.fs)
        if lake_prefix and set(data.column_names) - set(file_schema.names):  # prices' adj_factor: not in lake/deduped
            entries = self._files(table, data, first, last, None)
            file_schema = pq.read_schema(entries[0][0].removeprefix("s3://"), filesystem=self.lake.fs)
        manifest = self._manifest(table, entries, first, last)
        create, copy = copy_statements(table, file_schema, manifest, self.iam_role)
        cur.execute(create)
        self._copy(cur, copy)
        window = window or window_sql(first, last)  # the files hold whole years of every symbol: the window's rows only
        cur.execute(f"SELECT session, count(*) FROM {quote(table + '_stage')} WHERE {window} GROUP BY 1 ORDER BY 1")
        staged, expected = dict(cur.fetchall()), dict(sessions_of(data))
        if differ := sorted(s for s in staged.keys() | expected.keys() if staged.get(s) != expected.get(s)):
            detail = "; ".join(f"{s}: {staged.get(s, 0)} staged, {expected.get(s, 0)} expected" for s in differ[:3])
            raise load_error(table, first, last, f"the lake's files disagree with the asset's rows per session ({detail})")
        return insert_sql(table, file_schema.names, window)
