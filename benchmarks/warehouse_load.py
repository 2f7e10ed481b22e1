"""PostgreSQL load rate: our window loader (COPY into staging, delete + insert, one transaction)
against an ORM bulk save of mapped objects (SQLAlchemy `bulk_save_objects`, how the seed
pipeline loads), same rows, same server, same run.

    .venv/bin/python -m benchmarks.warehouse_load        # 200 symbols x 252 sessions ~ 50k bars
    BENCH_SCALE=0.1 .venv/bin/python -m benchmarks.warehouse_load

Our loader runs BENCH_REPEATS times (3; median), the ORM once (seconds long, it averages itself).
Server: STOCK_ASSETS_BENCH_POSTGRES_URL, else STOCK_ASSETS_TEST_POSTGRES_URL, else the local
postgresql://postgres@127.0.0.1:5432/test. Works in a schema of its own, dropped at the end.
`run(scale)` returns the numbers as a dict (`make bench`: benchmarks/loader.py).
"""

import json
import os
import statistics
import time
import uuid

import psycopg2
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy import orm

from stock_assets.partitions import sessions_between
from stock_assets.providers.synthetic import SyntheticProvider, parse_synthetic
from stock_assets.schema import BAR_SCHEMA
from stock_assets.warehouse.common import redact_url
from stock_assets.warehouse.warehouse import warehouse_for_url

SA_TYPES = {pa.string(): sa.Text, pa.date32(): sa.Date, pa.float64(): sa.Double, pa.int64(): sa.BigInteger}


def synthetic_bars(scale: float) -> pa.Table:
    symbols = [f"SYM{i:04d}" for i in range(max(1, round(200 * scale)))]
    sessions = sessions_between("2015-01-02", "2024-01-02", "2024-12-31")[:252]
    payloads = SyntheticProvider().fetch(symbols, sessions, "1d").payloads
    return pa.concat_tables([parse_synthetic(p) for p in payloads])


def orm_bar_class(table: str) -> type:
    """A mapped class with the canonical bar's columns and a surrogate key, as an ORM model has."""
    columns = {
        f.name: sa.Column(sa.DateTime(timezone=True) if pa.types.is_timestamp(f.type) else SA_TYPES[f.type])
        for f in BAR_SCHEMA
    }
    base = orm.declarative_base()
    return type("Bar", (base,), {"__tablename__": table, "id": sa.Column(sa.BigInteger, primary_key=True), **columns})


def load_orm(url: str, schema: str, data: pa.Table) -> float:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg2://", 1),
                              connect_args={"options": f"-csearch_path={schema}"})
    bar = orm_bar_class("prices_orm")
    bar.metadata.create_all(engine)
    started = time.perf_counter()
    with orm.Session(engine) as session:
        session.bulk_save_objects([bar(**row) for row in data.to_pylist()])
        session.commit()
    elapsed = time.perf_counter() - started
    engine.dispose()
    return elapsed


def differing_rows(con, a: str, b: str) -> int:
    cols = ", ".join(f'"{c}"' for c in BAR_SCHEMA.names)
    with con.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM ((SELECT {cols} FROM {a} EXCEPT ALL SELECT {cols} FROM {b}) "
                    f"UNION ALL (SELECT {cols} FROM {b} EXCEPT ALL SELECT {cols} FROM {a})) d")
        return cur.fetchone()[0]


def run(scale: float | None = None, repeats: int | None = None) -> dict:
    scale = float(os.environ.get("BENCH_SCALE", "1.0")) if scale is None else scale
    repeats = int(os.environ.get("BENCH_REPEATS", "3")) if repeats is None else repeats
    url = (os.environ.get("STOCK_ASSETS_BENCH_POSTGRES_URL") or os.environ.get("STOCK_ASSETS_TEST_POSTGRES_URL")
           or "postgresql://postgres@127.0.0.1:5432/test")
    data = synthetic_bars(scale)
    first, last = data["session"][0].as_py(), data["session"][-1].as_py()
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(url)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE SCHEMA "{schema}"')
    try:
        warehouse = warehouse_for_url(f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}")
        seconds = []
        for _ in range(repeats):  # the first creates the table; the others replace the window
            started = time.perf_counter()
            warehouse.replace_window("prices", data, first, last)
            seconds.append(time.perf_counter() - started)
        orm_seconds = load_orm(url, schema, data)  # one run: it is long enough to average itself
        admin.cursor().execute(f'SET search_path TO "{schema}"')
        assert differing_rows(admin, "prices", "prices_orm") == 0, "the two loads hold different rows"
    finally:
        admin.cursor().execute(f'DROP SCHEMA "{schema}" CASCADE')
        admin.close()
    n, ours = data.num_rows, statistics.median(seconds)
    return {
        "benchmark": "warehouse_load", "postgres": redact_url(url), "scale": scale, "rows": n, "repeats": repeats,
        "loader_seconds": round(ours, 4), "loader_rows_per_s": round(n / ours),
        "loader_first_load_rows_per_s": round(n / seconds[0]),
        "orm_seconds": round(orm_seconds, 4), "orm_rows_per_s": round(n / orm_seconds),
        "speedup": round(orm_seconds / ours, 1),
    }


def main() -> dict:
    result = run()
    print(f"{result['rows']:,} bars into PostgreSQL ({result['postgres']})")
    print(f"  COPY + delete/insert loader: {result['loader_rows_per_s']:>10,} rows/s  "
          f"({result['loader_seconds']} s, median of {result['repeats']}; first load {result['loader_first_load_rows_per_s']:,} rows/s)")
    print(f"  ORM bulk_save_objects:       {result['orm_rows_per_s']:>10,} rows/s  ({result['orm_seconds']} s)")
    print(f"  speedup: {result['speedup']}x (goal >= 10x)")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
