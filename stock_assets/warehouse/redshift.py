"""Redshift: PostgreSQL's driver and transaction; the staging table is filled by COPY from S3.

    CREATE TEMP TABLE <t>_stage (<the Parquet files' columns>)
    COPY <t>_stage FROM 's3://…/<first>_<last>.manifest' IAM_ROLE '…' FORMAT AS PARQUET MANIFEST
    check: rows per session in staging = rows per session the asset returned
    DELETE FROM <t> WHERE session BETWEEN …            (ddl.window_delete_sql, shared)
    INSERT INTO <t> (…, session) SELECT …, <session> FROM <t>_stage
    COMMIT

Which files:
- With `lake_prefix` and a `ts` column (prices from lake/deduped, indicators): the lake's own
  file per session, listed in a manifest. They lack `session` (it lives in the Hive path) and
  a Parquet COPY maps file columns to table columns by position, with no per-file constant,
  so the insert derives session from ts — by definition the bar's New York date. That is one
  COPY per window, where a COPY per session would pay COPY's fixed cost 2,500 times in a
  10-year backfill; the per-session count check catches any bar whose ts disagrees.
- Otherwise (dq_report has no ts): the Arrow table, session included, written as one Parquet
  object under warehouse/staging/ and COPYed the same way. Small tables only take this path.
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
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from stock_assets.lake import layout
from stock_assets.lake.storage import LakeStorage
from stock_assets.warehouse.common import load_error, quote
from stock_assets.warehouse.ddl import column_ddl
from stock_assets.warehouse.postgres import PostgresWarehouse

NEW_YORK_SESSION = "CAST(ts AT TIME ZONE 'America/New_York' AS DATE)"
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


def insert_sql(table: str, file_columns: list[str], session_sql: str) -> str:
    columns = ", ".join(quote(c) for c in file_columns if c != "session")
    return (
        f"INSERT INTO {quote(table)} ({columns}, session) "
        f"SELECT {columns}, {session_sql} FROM {quote(table + '_stage')}"
    )


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

    def _files(self, table: str, data: pa.Table, first: dt.date, last: dt.date, lake_prefix: str | None):
        """(relative paths to COPY, the SQL that gives each row its session)."""
        if lake_prefix and "ts" in data.column_names:
            return [layout.session_path(lake_prefix, s) for s, _ in sessions_of(data)], NEW_YORK_SESSION
        path = f"warehouse/staging/{table}/{first}_{last}.parquet"
        self.lake.write_parquet(path, data)
        return [path], "session"

    def _manifest(self, table: str, paths: list[str], first: dt.date, last: dt.date) -> str:
        infos = self.lake.fs.get_file_info([self.lake.path(p) for p in paths])
        missing = [p for p, i in zip(paths, infos) if i.type != pafs.FileType.File]
        if missing:
            raise load_error(table, first, last, f"not in the lake: {', '.join(self.lake.uri(p) for p in missing)}")
        relpath = f"warehouse/manifests/{table}/{first}_{last}.manifest"
        self.lake.write_bytes(relpath, manifest_json([(self.lake.uri(p), i.size) for p, i in zip(paths, infos)]))
        return self.lake.uri(relpath)

    def _copy(self, cur, statement: str) -> None:  # the one statement PostgreSQL cannot stand in for
        cur.execute(statement)

    def _stage(self, cur, table: str, data: pa.Table, first: dt.date, last: dt.date, lake_prefix: str | None) -> str:
        if self.lake is None or self.lake.is_local or not self.iam_role:
            raise load_error(table, first, last, "Redshift loads by COPY from S3: it needs an s3:// lake "
                             "(STOCK_ASSETS_LAKE_URL) and STOCK_ASSETS_REDSHIFT_IAM_ROLE")
        if not data.num_rows:
            cur.execute(stage_sql(table, data.schema))
            return insert_sql(table, data.column_names, "session")
        paths, session_sql = self._files(table, data, first, last, lake_prefix)
        manifest = self._manifest(table, paths, first, last)
        file_schema = pq.read_schema(self.lake.path(paths[0]), filesystem=self.lake.fs)
        create, copy = copy_statements(table, file_schema, manifest, self.iam_role)
        cur.execute(create)
        self._copy(cur, copy)
        cur.execute(f"SELECT {session_sql}, count(*) FROM {quote(table + '_stage')} GROUP BY 1 ORDER BY 1")
        staged, expected = dict(cur.fetchall()), dict(sessions_of(data))
        if differ := sorted(s for s in staged.keys() | expected.keys() if staged.get(s) != expected.get(s)):
            detail = "; ".join(f"{s}: {staged.get(s, 0)} staged, {expected.get(s, 0)} expected" for s in differ[:3])
            raise load_error(table, first, last, f"the lake's files disagree with the asset's rows per session ({detail})")
        return insert_sql(table, file_schema.names, session_sql)
