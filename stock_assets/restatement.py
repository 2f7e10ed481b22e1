"""Corporate actions kept in the lake and the warehouse, and the restatement of a symbol's history
when they change. Plain functions over the lake (LakeStorage) and a warehouse engine; no Dagster.

- lake/corporate_actions (Delta, one small unpartitioned table): every action known, with its
  factor. A run's update replaces its symbols' rows in one commit.
- the warehouse table `corporate_actions`: the actions the derived tables were last adjusted
  with (its `session` is the ex-date, as every warehouse table is keyed by session). It is
  written LAST, once every derived table of its symbols is restated, so a restatement killed
  half-way is still pending for the next run: `pending` compares the two.
- A restatement of symbols rewrites, each in one commit or one transaction, their rows of every
  session: lake/deduped (adj_close = close × F), the warehouse `prices` (adj_close, adj_factor),
  the indicators over their whole loaded history (lake/indicators, then the warehouse).
"""

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import write_deltalake

from stock_assets.lake import delta
from stock_assets.lake.damage import readable
from stock_assets.lake.storage import LakeStorage
from stock_assets.schema import BAR_SCHEMA, conform
from stock_assets.tables import duckdb_over
from stock_assets.transforms.actions import (
    ACTIONS_SCHEMA,
    adjust,
    changed,
    describe_action,
    merge_actions,
    previous_sessions,
    with_factors,
)
from stock_assets.transforms.indicators import compute_indicators

ACTIONS = "lake/corporate_actions"
WAREHOUSE_TABLE = "corporate_actions"
EVER = (dt.date(1900, 1, 1), dt.date(2999, 12, 31))  # the warehouse table's "window": every ex-date
RESTATED_SCHEMA = pa.schema([("restated_at", pa.timestamp("us", tz="UTC")), ("restated_by_run", pa.string())])


def _in(table: pa.Table, column: str, values) -> pa.Table:
    return table.filter(
        pc.is_in(table[column], value_set=pa.array(sorted(set(values)), table.schema.field(column).type))
    )


def read_actions(storage: LakeStorage, symbols=None) -> pa.Table:
    """Every known action (of `symbols`, when given), ordered by symbol, ex_date, kind."""
    found = delta.open_table(storage, ACTIONS)
    if found is None:
        return ACTIONS_SCHEMA.empty_table()
    with readable(storage, ACTIONS, delta.storage_options(storage)):
        rows = found.to_pyarrow_table()
    rows = _in(rows, "symbol", symbols) if symbols is not None else rows
    return (
        rows.select(ACTIONS_SCHEMA.names)
        .cast(ACTIONS_SCHEMA)
        .sort_by([("symbol", "ascending"), ("ex_date", "ascending"), ("kind", "ascending")])
    )


def write_actions(storage: LakeStorage, actions: pa.Table, symbols) -> None:
    """Make lake/corporate_actions hold exactly `actions` for `symbols`, in one commit."""
    rows = _in(actions.cast(ACTIONS_SCHEMA), "symbol", symbols)
    write_deltalake(delta.table_uri(storage, ACTIONS), rows, mode="overwrite", predicate=delta.symbol_predicate(list(symbols)).removeprefix(" AND "),
                    storage_options=delta.storage_options(storage), configuration=delta.KEEP_LOG)  # fmt: skip


def closes_before(storage: LakeStorage, actions: pa.Table, window: pa.Table) -> pa.Table:
    """The traded closes a dividend is measured against (symbol, session, close): the session
    before each dividend's ex-date, from the run's deduped window, else lake/deduped; of
    intraday bars, the session's last (its close)."""
    dividends = actions.filter(pc.equal(actions["kind"], "dividend"))
    if not dividends.num_rows:
        return pa.table(
            {
                "symbol": pa.array([], pa.string()),
                "session": pa.array([], pa.date32()),
                "close": pa.array([], pa.float64()),
            }
        )
    wanted = sorted(set(previous_sessions(dividends["ex_date"]).to_pylist()))
    loaded = delta.read_window(storage, "lake/deduped", wanted, symbols=sorted(set(dividends["symbol"].to_pylist())))
    window = window.select(["symbol", "session", "ts", "close"])
    if window.num_rows:
        loaded = loaded.filter(pc.invert(pc.is_in(loaded["session"], value_set=pc.unique(window["session"]))))
    bars = pa.concat_tables([window, loaded.select(["symbol", "session", "ts", "close"]).cast(window.schema)])
    last = "SELECT symbol, session, arg_max(close, ts) AS close FROM bars GROUP BY symbol, session ORDER BY symbol, session"
    return duckdb_over(bars=bars).sql(last).to_arrow_table()


def update_actions(storage: LakeStorage, found: pa.Table, window: pa.Table, symbols) -> pa.Table:
    """Merge the actions `found` in the run (of `symbols`) into the known ones, recompute their
    factors with the window's closes (`window`: its deduped bars), write them; returns them."""
    known = read_actions(storage, symbols)
    merged = merge_actions(known, _in(found, "symbol", symbols))
    merged = with_factors(merged, closes_before(storage, merged, window))
    if merged.to_pylist() != known.to_pylist() or delta.open_table(storage, ACTIONS) is None:
        write_actions(storage, merged, symbols)
    return merged


def applied_actions(store) -> pa.Table:
    if not store.table_exists(WAREHOUSE_TABLE):
        return ACTIONS_SCHEMA.empty_table()
    return store.query(f"SELECT {', '.join(ACTIONS_SCHEMA.names)} FROM {WAREHOUSE_TABLE}").cast(ACTIONS_SCHEMA)


def pending(storage: LakeStorage, store) -> pa.Table:
    """The actions, new, changed or gone, that the derived tables do not reflect yet."""
    return changed(read_actions(storage), applied_actions(store))


def _symbol_rows(storage: LakeStorage, prefix: str, symbols: list[str]) -> pa.Table:
    found = delta.dataset(storage, prefix)
    if found is None:
        return BAR_SCHEMA.empty_table()
    with readable(storage, prefix, delta.storage_options(storage)):  # a damaged file is named
        return conform(found.to_table(filter=pc.field("symbol").isin(symbols)))


def _sessions(table: pa.Table) -> list[dt.date]:
    return sorted(pc.unique(table["session"]).to_pylist())


def restate(
    storage: LakeStorage, store, symbols: list[str], window: list[dt.date], run_id: str, now: dt.datetime
) -> list[dict]:
    """Restate every loaded session of `symbols` with their actions now known; returns, per
    changed action, {"symbol", "action", "sessions"}: the loaded sessions before its ex-date
    outside the run's `window` (whose own rows the run writes next)."""
    symbols = sorted(set(symbols))
    actions = read_actions(storage, symbols)
    todo = changed(actions, _in(applied_actions(store), "symbol", symbols))
    deduped = _symbol_rows(storage, "lake/deduped", symbols)
    if deduped.num_rows:
        restated = conform(adjust(deduped, actions))
        delta.write_window(storage, "lake/deduped", restated, _sessions(restated), symbols=symbols)
    if store.table_exists("prices"):
        prices = store.query(
            f"SELECT * FROM prices WHERE symbol IN ({', '.join('?' * len(symbols))}) ORDER BY symbol, interval, ts",
            symbols,
        )
        if prices.num_rows:
            prices = adjust(prices, actions)
            first, last = min(_sessions(prices)), max(_sessions(prices))
            store.replace_window("prices", prices, first, last, symbols=symbols)
            values = compute_indicators(
                prices.select(["symbol", "session", "ts", "interval", "high", "low", "close", "adj_close"])
            )
            delta.write_window(storage, "lake/indicators", values, _sessions(values), symbols=symbols)
            store.replace_window("indicators", values, first, last, symbols=symbols)
    record_applied(store, actions, symbols, run_id, now)  # last: the restatement is done
    return _said(todo, deduped, window)


def record_applied(store, actions: pa.Table, symbols: list[str], run_id: str, now: dt.datetime) -> None:
    """The warehouse `corporate_actions` rows of `symbols`: `actions`, the derived tables now adjusted with them."""
    record = actions.append_column("session", actions["ex_date"])
    stamp = [
        pa.array([now] * record.num_rows, RESTATED_SCHEMA[0].type),
        pa.array([run_id] * record.num_rows, pa.string()),
    ]
    for field, column in zip(RESTATED_SCHEMA, stamp):
        record = record.append_column(field, column)
    store.replace_window(WAREHOUSE_TABLE, record, *EVER, symbols=symbols)


def _said(todo: pa.Table, deduped: pa.Table, window: list[dt.date]) -> list[dict]:
    outside = (
        deduped.filter(pc.invert(pc.is_in(deduped["session"], value_set=pa.array(window, pa.date32()))))
        if window
        else deduped
    )
    out = []
    for action in todo.to_pylist():
        if action["value"] is None:
            continue  # an action no longer listed: its symbol was restated without it
        mine = outside.filter(
            pc.and_(
                pc.equal(outside["symbol"], action["symbol"]),
                pc.less(outside["session"], pa.scalar(action["ex_date"], pa.date32())),
            )
        )
        out.append(
            {
                "symbol": action["symbol"],
                "action": describe_action(action),
                "sessions": len(np.unique(mine["session"].to_numpy())),
            }
        )
    return out


def describe_restated(item: dict) -> str:
    """'SPLT: 4:1 split on 2020-08-31 — 105 earlier sessions restated, indicators recomputed'."""
    return f"{item['symbol']}: {item['action']} — {item['sessions']} earlier sessions restated, indicators recomputed"
