"""The Grafana provisioning in grafana/, as a Grafana server would read it: the data source from
the environment only, and every panel's and variable's SQL, with Grafana's macros and
variables substituted the way its PostgreSQL data source does, executed against the DuckDB
warehouse of a real materialization and against PostgreSQL holding the same rows (copied in
here with plain psycopg2 COPY), each returning rows in time order. Both are given a
`live_prices` table as a live refresh writes it: today so far, as of 11:00 New York."""

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
from stock_assets_tests.test_dashboard import LIVE_SCHEMA, last_closes, live_rows, materialized_once, warehouse_copy

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
    return queries | {f"{p['title']} [{t['refId']}]": t["rawSql"] for p in DASHBOARD["panels"] for t in p["targets"]}


def panel(title: str, ref: str = "A") -> str:
    return panel_queries()[f"{title} [{ref}]"]


@pytest.fixture(scope="module")
def materialized(tmp_path_factory):
    settings, _ = materialized_once(tmp_path_factory)
    with duckdb.connect(str(settings.home / "warehouse.duckdb"), read_only=True) as con:
        data = {t: con.sql(f"SELECT * FROM {t}").to_arrow_table() for t in TABLES}
    return settings, data


@pytest.fixture(scope="module")
def live(materialized) -> pa.Table:
    """live_prices at 11:00 New York on the session after the history: 5min bars and the partial daily bar."""
    return live_rows(last_closes(materialized[0].home / "warehouse.duckdb"))


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
def engine(request, materialized, tmp_path):
    """open(live_prices rows, or None for no table) -> run(sql) on the materialized tables, in
    a copy of the DuckDB warehouse or a PostgreSQL schema of the test's own (one open a test)."""
    settings, data = materialized
    opened = []
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None  # set up first: torn down after our connections

    def open_with(live: pa.Table | None):
        if request.param == "duckdb":
            con = duckdb.connect(str(warehouse_copy(settings, tmp_path, live)), read_only=True)
            con.execute("SET TimeZone = 'UTC'")
            opened.append(con)
            return lambda sql: columns_and_rows(con.execute(sql))
        con = load_postgres(url, data | ({"live_prices": live} if live is not None else {}))
        opened.append(con)

        def run(sql):
            with con.cursor() as cur:
                cur.execute(sql)
                return columns_and_rows(cur)

        return run

    yield open_with
    for con in opened:
        con.close()


@pytest.fixture
def run_sql(engine, live):
    return engine(live)


@pytest.mark.slow
def test_every_panel_and_variable_query_returns_rows_in_time_order(run_sql, materialized, live):
    _, data = materialized
    ts = data["prices"]["ts"].to_pylist() + live["ts"].to_pylist()  # Grafana's "now" is during the session
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


@pytest.mark.slow
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
    every_symbol = ("heatmap", "quality", "Today so far")  # panels of every symbol at once
    per_symbol = [p for p in DASHBOARD["panels"] if not any(w in p["title"] for w in every_symbol)]
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


# --- Today so far: live_prices beside history -----------------------------------------------

def window(live: pa.Table) -> tuple[dt.datetime, dt.datetime]:
    """The dashboard's default range, now-1y .. now, with now = the refresh's as_of."""
    now = max(live["as_of"].to_pylist())
    return now - dt.timedelta(days=365), now


@pytest.mark.slow
def test_today_so_far_is_the_session_in_progress_as_of_new_york_time(engine, live):
    run = engine(live)
    start, end = window(live)
    titles = [p["title"] for p in DASHBOARD["panels"]]
    assert {"Today so far, ${today_as_of}", "${symbol} today so far, ${today_as_of}"} <= set(titles)
    assert titles.index("Today so far, ${today_as_of}") < titles.index("Price and moving averages")  # first on the board
    as_of = {v["name"]: v["query"] for v in DASHBOARD["templating"]["list"]}["today_as_of"]
    assert run(as_of)[1] == [("as of 11:00 New York",)]

    columns, rows = run(grafana_sql(panel("Today so far, ${today_as_of}"), {}, start, end))
    assert columns[:3] == ["symbol", "price", "vs last close %"]
    daily = {r["symbol"]: r for r in live.to_pylist() if r["interval"] == "1d"}
    last = dict(run("SELECT symbol, close FROM prices WHERE session = (SELECT max(session) FROM prices)")[1])
    assert [r[0] for r in rows] == sorted(SYMBOLS)
    for symbol, price, change, *_ in rows:
        assert price == pytest.approx(daily[symbol]["close"])
        assert change == pytest.approx(100 * (daily[symbol]["close"] / last[symbol] - 1))

    bars = sorted((r["ts"], r["close"]) for r in live.to_pylist() if r["symbol"] == "MSFT" and r["interval"] != "1d")
    for title, ref in (("${symbol} today so far, ${today_as_of}", "A"), ("Price and moving averages", "B")):
        columns, rows = run(grafana_sql(panel(title, ref), {"symbol": "MSFT"}, start, end))
        assert columns[:2] == ["time", "today so far" if ref == "B" else "close"]
        assert [(r[0], r[1]) for r in rows] == [(t, pytest.approx(c)) for t, c in bars], title  # 18 bars, 09:30 .. 10:55


@pytest.mark.slow
@pytest.mark.parametrize("case", ["empty", "final bars loaded"])
def test_no_session_in_progress_shows_no_today_rows(engine, live, case):
    final = live_rows({s: 100.0 for s in SYMBOLS}, session=dt.date(2024, 2, 28), as_of=dt.datetime(2024, 2, 28, 16, 0, tzinfo=dt.UTC))
    run = engine(LIVE_SCHEMA.empty_table() if case == "empty" else final)  # final: a session whose final bars loaded since
    start, end = window(live)
    as_of = {v["name"]: v["query"] for v in DASHBOARD["templating"]["list"]}["today_as_of"]
    assert run(as_of)[1] == [("no session in progress",)]
    for title, ref in (("Today so far, ${today_as_of}", "A"), ("${symbol} today so far, ${today_as_of}", "A"), ("Price and moving averages", "B")):
        assert run(grafana_sql(panel(title, ref), {"symbol": "MSFT"}, start, end))[1] == [], title
