"""The Grafana provisioning in grafana/, as a Grafana server would read it: the data source from
the environment only, and every panel's and variable's SQL, with Grafana's macros and
variables substituted the way its PostgreSQL data source does, executed against the DuckDB
warehouse of a real materialization and against PostgreSQL holding the same rows (copied in
here with plain psycopg2 COPY), each returning rows in time order."""

import datetime as dt
import io
import json
import re

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
import yaml

from stock_assets_tests.conftest import ROOT, SYMBOLS
from stock_assets_tests.test_dashboard import materialized_once

GRAFANA = ROOT / "grafana"
DASHBOARD = json.loads((GRAFANA / "dashboards" / "stock_assets.json").read_text())
TABLES = ("prices", "indicators", "dq_report")
REQUIRED_PANELS = ("Price and moving averages", "Volume", "Volatility heatmap", "Daily % change", "MACD", "Bollinger",
                   "RSI", "Data-quality results over time")  # fmt: skip


def grafana_sql(sql: str, variables: dict[str, str], start: dt.datetime, end: dt.datetime) -> str:
    """Grafana's interpolation for the PostgreSQL data source: time macros as RFC 3339 UTC
    literals, ${var:sqlstring} quoted with '' escaping, $var and ${var} raw."""
    stamp = {"from": f"'{start:%Y-%m-%dT%H:%M:%S.%f}"[:-3] + "Z'", "to": f"'{end:%Y-%m-%dT%H:%M:%S.%f}"[:-3] + "Z'"}
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)", lambda m: f"{m.group(1)} BETWEEN {stamp['from']} AND {stamp['to']}", sql)
    sql = sql.replace("$__timeFrom()", stamp["from"]).replace("$__timeTo()", stamp["to"])
    sql = re.sub(r"\$\{(\w+):sqlstring\}", lambda m: "'" + variables[m.group(1)].replace("'", "''") + "'", sql)
    sql = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables[m.group(1) or m.group(2)], sql)
    assert "$" not in sql, f"an uninterpolated macro or variable is left in {sql}"
    return sql


def panel_queries() -> dict[str, str]:
    queries = {f"variable {v['name']}": v["query"] for v in DASHBOARD["templating"]["list"]}
    return queries | {p["title"]: t["rawSql"] for p in DASHBOARD["panels"] for t in p["targets"]}


@pytest.fixture(scope="module")
def materialized(tmp_path_factory):
    settings, _ = materialized_once(tmp_path_factory)
    with duckdb.connect(str(settings.home / "warehouse.duckdb"), read_only=True) as con:
        data = {t: con.sql(f"SELECT * FROM {t}").to_arrow_table() for t in TABLES}
    return settings, data


PG_TYPES = {pa.string(): "TEXT", pa.date32(): "DATE", pa.float64(): "DOUBLE PRECISION", pa.int64(): "BIGINT", pa.bool_(): "BOOLEAN"}


def load_postgres(url: str, data: dict[str, pa.Table]):
    import psycopg2

    con = psycopg2.connect(url)
    with con, con.cursor() as cur:
        for table, rows in data.items():
            columns = ", ".join(f'"{f.name}" {"TIMESTAMPTZ" if pa.types.is_timestamp(f.type) else PG_TYPES[f.type]}' for f in rows.schema)
            cur.execute(f'CREATE TABLE "{table}" ({columns})')
            body = io.BytesIO()
            pacsv.write_csv(rows, body)
            cur.copy_expert(f'COPY "{table}" FROM STDIN WITH (FORMAT csv, HEADER true)', io.BytesIO(body.getvalue()))
    return con


def columns_and_rows(cursor) -> tuple[list[str], list[tuple]]:
    return [d[0] for d in cursor.description], cursor.fetchall()


@pytest.fixture(params=["duckdb", "postgresql"])
def run_sql(request, materialized):
    settings, data = materialized
    if request.param == "duckdb":
        con = duckdb.connect(str(settings.home / "warehouse.duckdb"), read_only=True)
        con.execute("SET TimeZone = 'UTC'")
        yield lambda sql: columns_and_rows(con.execute(sql))
        con.close()
        return
    con = load_postgres(request.getfixturevalue("postgres_url"), data)

    def run(sql):
        with con.cursor() as cur:
            cur.execute(sql)
            return columns_and_rows(cur)

    yield run
    con.close()


def test_every_panel_and_variable_query_returns_rows_in_time_order(run_sql, materialized):
    _, data = materialized
    ts = data["prices"]["ts"].to_pylist()
    start, end = min(ts) - dt.timedelta(days=1, seconds=0.25), max(ts) + dt.timedelta(days=1)
    empty, failed = [], {}
    for title, sql in panel_queries().items():
        try:
            columns, rows = run_sql(grafana_sql(sql, {"symbol": "MSFT", "interval": "1d"}, start, end))
        except Exception as err:  # noqa: BLE001 - report every broken panel at once
            failed[title] = str(err).splitlines()[0]
            continue
        values = [v for r in rows for v in r[1:]] if columns[0] == "time" else [v for r in rows for v in r]
        if not rows or all(v is None for v in values):
            empty.append(title)
        if columns[0] == "time":
            assert [r[0] for r in rows] == sorted(r[0] for r in rows), f"{title}: Grafana needs rows in time order"
    assert failed == {} and empty == []


def test_the_variables_offer_the_universe_and_the_interval(run_sql):
    queries = {v["name"]: v["query"] for v in DASHBOARD["templating"]["list"]}
    assert [r[0] for r in run_sql(queries["symbol"])[1]] == sorted(SYMBOLS)
    assert [r[0] for r in run_sql(queries["interval"])[1]] == ["1d"]


def test_the_dashboard_has_every_seed_panel_on_the_provisioned_data_source():
    source = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "stock_assets.yaml").read_text())["datasources"][0]
    titles = [p["title"] for p in DASHBOARD["panels"]]
    for wanted in REQUIRED_PANELS:
        assert any(wanted in t for t in titles), wanted
    refs = [p["datasource"] for p in DASHBOARD["panels"]] + [t["datasource"] for p in DASHBOARD["panels"] for t in p["targets"]]
    assert all(r == {"type": source["type"], "uid": source["uid"]} for r in refs)
    per_symbol = [p for p in DASHBOARD["panels"] if "heatmap" not in p["title"] and "quality" not in p["title"]]
    assert all("${symbol:sqlstring}" in t["rawSql"] for p in per_symbol for t in p["targets"])
    assert all("$__timeFilter(" in t["rawSql"] for p in DASHBOARD["panels"] for t in p["targets"])


def test_the_data_source_takes_every_connection_value_from_the_environment():
    text = (GRAFANA / "provisioning" / "datasources" / "stock_assets.yaml").read_text()
    source = yaml.safe_load(text)["datasources"][0]
    settings = [source["url"], source["user"], source["jsonData"]["database"], source["jsonData"]["sslmode"]]
    assert all(re.fullmatch(r"(\$\{STOCK_ASSETS_GRAFANA_PG_\w+\}:?)+", s) for s in settings)
    assert source["secureJsonData"] == {"password": "$STOCK_ASSETS_GRAFANA_PG_PASSWORD"}  # $VAR: no double expansion
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "stock_assets.yaml").read_text())["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"].startswith("/")
