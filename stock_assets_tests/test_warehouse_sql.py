"""The SQL the warehouse generates, as text: DDL per dialect, schema evolution, views, the
Redshift COPY/manifest statements, `?` placeholders for psycopg2, password redaction."""

import datetime as dt
import json

import pyarrow as pa
import pytest

from stock_assets.warehouse import ddl, redshift
from stock_assets.warehouse.common import redact_url
from stock_assets.warehouse.postgres import to_pyformat

SCHEMA = pa.schema([("symbol", pa.string()), ("session", pa.date32()), ("ts", pa.timestamp("us", tz="UTC")),
                    ("close", pa.float64()), ("volume", pa.int64()), ("passed", pa.bool_()), ("sample", pa.string())])
COLUMNS = '"symbol" {t}, "session" DATE, "ts" TIMESTAMPTZ, "close" {f}, "volume" BIGINT, "passed" BOOLEAN, "sample" {w}'
ROLE = "arn:aws:iam::123456789012:role/stock-assets-copy"
MANIFEST = "s3://lake/prod/warehouse/manifests/prices/2024-01-02_2024-01-31.manifest"


@pytest.mark.parametrize(("dialect", "expected"), [
    ("duckdb", [f"CREATE TABLE IF NOT EXISTS \"t\" ({COLUMNS.format(t='VARCHAR', f='DOUBLE', w='VARCHAR')})"]),
    ("postgresql", [f"CREATE TABLE IF NOT EXISTS \"t\" ({COLUMNS.format(t='TEXT', f='DOUBLE PRECISION', w='TEXT')})",
                    'CREATE INDEX IF NOT EXISTS "t_session_idx" ON "t" (session)']),
    ("redshift", [(f"CREATE TABLE IF NOT EXISTS \"t\" ({COLUMNS.format(t='VARCHAR(256)', f='DOUBLE PRECISION', w='VARCHAR(65535)')})"
                  " DISTSTYLE KEY DISTKEY(symbol) COMPOUND SORTKEY(session, symbol)")]),
])
def test_table_ddl_per_dialect(dialect, expected):
    assert ddl.create_table_sql("t", SCHEMA, dialect) == expected


def test_redshift_distributes_tables_without_symbol_automatically():
    assert ddl.create_table_sql("dq_report", SCHEMA.remove(0), "redshift")[0].endswith(" DISTSTYLE AUTO SORTKEY(session)")


def test_an_unmapped_arrow_type_is_named():
    with pytest.raises(ValueError, match="column 'tags' has Arrow type list<item: string>"):
        ddl.create_table_sql("t", pa.schema([("tags", pa.list_(pa.string()))]), "postgresql")


def catalog(**tables) -> list[tuple[str, str, str]]:
    return [(name, kind, c) for name, (kind, cols) in tables.items() for c in cols]


def test_a_new_column_is_added_and_the_views_reading_the_table_rebuilt():
    prices = ["symbol", "session", "ts", "interval", "close"]
    existing = catalog(prices=("BASE TABLE", prices), dq_report=("BASE TABLE", ["session", "passed"]),
                       prices_latest=("VIEW", prices), dq_failures=("VIEW", ["session", "passed"]))
    wider = pa.schema([(c, pa.string()) for c in prices] + [("exchange", pa.string())])
    statements = ddl.plan_ddl("prices", wider, "redshift", existing)
    assert statements[:3] == [
        'ALTER TABLE "prices" ADD COLUMN "exchange" VARCHAR(256)',
        'DROP VIEW IF EXISTS "prices_latest"',
        ('CREATE VIEW "prices_latest" AS SELECT "symbol", "session", "ts", "interval", "close", "exchange" FROM '
        '(SELECT "symbol", "session", "ts", "interval", "close", "exchange", ROW_NUMBER() OVER (PARTITION BY "symbol", '
        '"interval" ORDER BY "ts" DESC) AS bar_rank FROM "prices") ranked WHERE bar_rank = 1'),
    ]
    assert len(statements) == 3  # dq_failures is current; prices_with_indicators waits for indicators
    assert ddl.plan_ddl("prices", wider, "redshift", existing + catalog(prices=("BASE TABLE", ["exchange"]))) == []


def test_the_redshift_copy_reads_exactly_the_manifest():
    files = SCHEMA  # the lake's Delta data files carry session (their month is in the path)
    assert redshift.copy_statements("prices", files, MANIFEST, ROLE) == [
        ('CREATE TEMP TABLE "prices_stage" ("symbol" VARCHAR(256), "session" DATE, "ts" TIMESTAMPTZ, "close" DOUBLE PRECISION, '
        '"volume" BIGINT, "passed" BOOLEAN, "sample" VARCHAR(65535))'),
        f"COPY \"prices_stage\" FROM '{MANIFEST}' IAM_ROLE '{ROLE}' FORMAT AS PARQUET MANIFEST",
    ]
    assert ddl.window_delete_sql("prices", dt.date(2024, 1, 2), dt.date(2024, 1, 31)) == (
        "DELETE FROM \"prices\" WHERE session BETWEEN DATE '2024-01-02' AND DATE '2024-01-31'"
    )
    # A file holds its month: the insert takes the window's sessions only.
    assert redshift.insert_sql("prices", files.names, "session BETWEEN '2024-01-02' AND '2024-01-31'") == (
        'INSERT INTO "prices" ("symbol", "session", "ts", "close", "volume", "passed", "sample") '
        'SELECT "symbol", "session", "ts", "close", "volume", "passed", "sample" FROM "prices_stage" '
        "WHERE session BETWEEN '2024-01-02' AND '2024-01-31'"
    )


def test_the_copy_refuses_anything_but_a_role_arn():
    with pytest.raises(ValueError, match="not an IAM role ARN"):
        redshift.copy_statements("prices", SCHEMA, MANIFEST, "arn:aws:iam::123456789012:role/x' CREDENTIALS 'y")


def test_the_manifest_lists_each_object_with_its_length():
    entries = [("s3://lake/p/lake/deduped/month=2024-01/part-00000-1f0e-c000.zstd.parquet", 4242)]
    assert json.loads(redshift.manifest_json(entries)) == {"entries": [
        {"url": entries[0][0], "mandatory": True, "meta": {"content_length": 4242}},
    ]}


@pytest.mark.parametrize(("sql", "expected"), [
    ("SELECT * FROM t WHERE a BETWEEN ? AND ?", "SELECT * FROM t WHERE a BETWEEN %s AND %s"),
    ("SELECT '?', \"odd?\" FROM t WHERE s LIKE 'A%' AND x = ?", "SELECT '?', \"odd?\" FROM t WHERE s LIKE 'A%%' AND x = %s"),
    ("SELECT 'it''s ?' || ? ", "SELECT 'it''s ?' || %s "),
    ("SELECT 10 % 3", "SELECT 10 %% 3"),
    ("SELECT x -- why? 100%\nFROM t WHERE y = ?", "SELECT x -- why? 100%%\nFROM t WHERE y = %s"),  # a comment
    ("SELECT $$a ? b$$, ? ", "SELECT $$a ? b$$, %s "),  # dollar-quoted
    ("SELECT ?, ?", "SELECT %s, %s"),
])
def test_question_marks_become_psycopg2_placeholders(sql, expected):
    assert to_pyformat(sql) == expected


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://u:p%40ss@db.example.com:5432/w", "postgresql://u:***@db.example.com:5432/w"),
    ("redshift://u:pw@cluster.abc.us-east-1.redshift.amazonaws.com:5439/dev", "redshift://u:***@cluster.abc.us-east-1.redshift.amazonaws.com:5439/dev"),
    ("postgresql://u@db/w?options=-csearch_path%3Dx", "postgresql://u@db/w?options=-csearch_path%3Dx"),
    ("duckdb:///tmp/w.duckdb", "duckdb:///tmp/w.duckdb"),
])
def test_passwords_are_redacted(url, shown):
    assert redact_url(url) == shown
