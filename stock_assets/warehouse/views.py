"""Dashboard views, the same SQL in DuckDB, PostgreSQL and Redshift.

    prices_latest            the latest bar per (symbol, interval)
    prices_with_indicators   every bar beside its indicators (NULL where not computed yet)
    dq_failures              the dq_report rows whose check failed

Column lists follow the tables, so a column added to a table shows up in its views.
Views are rebuilt with DROP + CREATE in the DDL transaction: Redshift's CREATE OR REPLACE
VIEW refuses any change of columns, and a new column is exactly what triggers a rebuild.
"""

from stock_assets.warehouse.common import quote

DEPENDS_ON = {
    "prices_latest": ("prices",),
    "prices_with_indicators": ("prices", "indicators"),
    "dq_failures": ("dq_report",),
}


def _cols(columns: list[str], alias: str = "") -> str:
    return ", ".join(f"{alias}{quote(c)}" for c in columns)


def view_select(name: str, tables: dict[str, list[str]]) -> str:
    if name == "prices_latest":
        cols = _cols(tables["prices"])
        return (
            f"SELECT {cols} FROM (SELECT {cols}, ROW_NUMBER() OVER "
            '(PARTITION BY "symbol", "interval" ORDER BY "ts" DESC) AS bar_rank FROM "prices") ranked '
            "WHERE bar_rank = 1"
        )
    if name == "prices_with_indicators":
        extra = [c for c in tables["indicators"] if c not in tables["prices"]]
        return (
            f"SELECT {_cols(tables['prices'], 'p.')}{', ' if extra else ''}{_cols(extra, 'i.')} "
            'FROM "prices" p LEFT JOIN "indicators" i '
            'ON i."symbol" = p."symbol" AND i."interval" = p."interval" AND i."ts" = p."ts"'
        )
    if name == "dq_failures":
        return f'SELECT {_cols([c for c in tables["dq_report"] if c != "passed"])} FROM "dq_report" WHERE NOT "passed"'
    raise KeyError(name)


def rebuild_sql(tables: dict[str, list[str]], existing: set[str], changed: set[str]) -> list[str]:
    """DROP + CREATE for each view whose tables all exist and that is missing or reads a changed table."""
    statements = []
    for name, needs in DEPENDS_ON.items():
        if set(needs) <= tables.keys() and (name not in existing or changed & set(needs)):
            statements += [f"DROP VIEW IF EXISTS {quote(name)}", f"CREATE VIEW {quote(name)} AS {view_select(name, tables)}"]
    return statements
