"""The shortcuts for tables already in order give what the full sort, dedup and check give,
on random windows sorted and shuffled, with repeated keys, ties and nulls."""

import collections
import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from stock_assets import tables
from stock_assets.lake.delta import SORT_COLUMNS, sort_rows
from stock_assets.schema import KEY_COLUMNS, conform
from stock_assets.transforms.dedup import dedupe_latest
from stock_assets.transforms.quality import duplicate_key
from stock_assets.transforms.quality_window import jumps, rows_per_session

UTC = dt.UTC


def window(seed: int, rows: int = 400, repeats: bool = True, nulls: bool = False) -> pa.Table:
    """Bars of a few symbols over a few sessions, some keys landed twice (same or later ingestion)."""
    rng = np.random.default_rng(seed)
    symbols = rng.choice(["AAPL", "MSFT", "BRK.B", "A", "AA"], rows)
    days = rng.integers(0, 15, rows)
    sessions = [dt.date(2024, 1, 2) + dt.timedelta(days=int(d)) for d in days]
    stamps = [dt.datetime.combine(s, dt.time(5), UTC) for s in sessions]
    ingested = [dt.datetime(2024, 2, 1, tzinfo=UTC) + dt.timedelta(hours=int(h)) for h in rng.integers(0, 3 if repeats else 1, rows)]
    close = rng.choice([10.0, 11.0, 12.0], rows).astype(object)
    if nulls:
        close[rng.random(rows) < 0.1] = None
    table = conform(pa.table({"symbol": symbols, "session": sessions, "ts": stamps, "interval": ["1d"] * rows, "open": close,
                              "high": close, "low": close, "close": close, "volume": rng.integers(0, 3, rows), "source": ["t"] * rows,
                              "ingested_at": ingested}))  # fmt: skip
    if not repeats:  # one row per key
        table = table.take(np.unique(np.array([f"{s}|{d}" for s, d in zip(symbols, days)]), return_index=True)[1])
    return table


def canonical(table: pa.Table) -> list:
    return sorted(table.to_pylist(), key=repr)


@pytest.mark.parametrize("seed", range(6))
def test_is_sorted_agrees_with_a_sort(seed):
    t = window(seed)
    columns = [c for c in SORT_COLUMNS if c in t.column_names]
    ordered = t.sort_by([(c, "ascending") for c in columns])
    assert tables.is_sorted(ordered, columns)
    assert not tables.is_sorted(ordered.take(np.random.default_rng(seed).permutation(t.num_rows)), columns)
    assert sort_rows(ordered) is ordered  # nothing copied
    again = sort_rows(t.take(np.arange(t.num_rows)[::-1]))
    assert tables.is_sorted(again, columns) and canonical(again) == canonical(ordered)
    assert tables.is_sorted(ordered.slice(0, 1), columns) and tables.is_sorted(ordered.slice(0, 0), columns)


def test_a_null_key_is_never_taken_as_sorted():
    t = pa.table({"a": pa.array([1, None, 2]), "b": [1, 2, 3]})
    assert not tables.is_sorted(t, ["a", "b"])
    assert tables.sort(t, ["a", "b"])["a"].to_pylist() == [1, 2, None]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("repeats", [True, False])
def test_dedup_of_a_sorted_window_is_that_of_the_same_rows_in_any_order(seed, repeats):
    rows = window(seed, repeats=repeats, nulls=seed % 2 == 0)
    ordered = sort_rows(rows)
    shuffled = ordered.take(np.random.default_rng(seed).permutation(ordered.num_rows))
    assert not tables.is_sorted(shuffled, KEY_COLUMNS)  # the general path
    fast, general = dedupe_latest(ordered), dedupe_latest(shuffled)
    assert canonical(fast) == canonical(general)
    assert fast.num_rows == len({(r["symbol"], r["interval"], r["ts"]) for r in rows.to_pylist()})
    if not repeats:
        assert fast is ordered  # no key twice: the window as it came


@pytest.mark.parametrize("seed", range(6))
def test_duplicate_keys_are_the_same_rows_sorted_or_not(seed):
    ordered = sort_rows(window(seed))
    order = np.random.default_rng(seed).permutation(ordered.num_rows)
    shuffled = ordered.take(order)
    fast = np.asarray(duplicate_key(ordered).to_pylist())
    general = np.asarray(duplicate_key(shuffled).to_pylist())
    assert fast.any() and fast[order].tolist() == general.tolist()
    keys = [(r["symbol"], r["interval"], r["ts"]) for r in ordered.to_pylist()]
    assert fast.tolist() == [keys.count(k) > 1 for k in keys]


def test_only_keeps_the_table_when_every_row_passes():
    t = pa.table({"a": [1, 2, 3]})
    assert tables.only(t, pa.array([True, True, True])) is t
    assert tables.only(t, pa.array([True, None, True]))["a"].to_pylist() == [1, 3]
    assert tables.only(t, pa.array([True, False, True]))["a"].to_pylist() == [1, 3]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("repeats", [True, False])
def test_rows_and_keys_per_session_are_the_same_counted_in_order_or_by_duckdb(seed, repeats):
    ordered = sort_rows(window(seed, repeats=repeats))
    shuffled = ordered.take(np.random.default_rng(seed).permutation(ordered.num_rows))
    rows = ordered.to_pylist()
    keys = collections.Counter(s for s, *_ in {(r["session"], r["symbol"], r["interval"], r["ts"]) for r in rows})
    assert rows_per_session(ordered, distinct_keys=True) == rows_per_session(shuffled, distinct_keys=True) == dict(keys)
    assert rows_per_session(shuffled) == dict(collections.Counter(r["session"] for r in rows))
    if repeats:
        assert sum(keys.values()) < len(rows)  # some key landed twice, counted once


@pytest.mark.parametrize("seed", range(8))
def test_jumps_are_the_same_found_in_order_or_by_duckdb(seed):
    rng = np.random.default_rng(seed)
    rows = dedupe_latest(window(seed, rows=600))
    n = rows.num_rows
    close = rng.choice([10.0, 11.0, 14.0, 0.0, np.nan], n, p=[0.4, 0.3, 0.2, 0.05, 0.05])
    adj = np.where(rng.random(n) < 0.3, close * 0.5, np.nan)
    split = np.where(rng.random(n) < 0.1, 2.0, np.nan)
    nulls = lambda a: pa.array(a, pa.float64(), mask=np.isnan(a))
    rows = rows.set_column(rows.schema.get_field_index("close"), "close", nulls(close))
    rows = rows.set_column(rows.schema.get_field_index("adj_close"), "adj_close", nulls(adj))
    rows = rows.set_column(rows.schema.get_field_index("split_coefficient"), "split_coefficient", nulls(split))
    last = dt.date(2024, 1, 2) + dt.timedelta(days=int(rng.integers(0, 3)))  # the sessions up to it are "previous"
    early = pc.less_equal(rows["session"], pa.scalar(last, pa.date32()))
    previous, bars = rows.filter(early), sort_rows(rows.filter(pc.invert(early)))
    sessions = sorted(set(bars["session"].to_pylist()))
    shuffled = bars.take(rng.permutation(bars.num_rows))
    assert tables.is_sorted(bars, ("symbol", "interval", "ts")) and not tables.is_sorted(shuffled, ("symbol", "interval", "ts"))
    fast, general = jumps(bars, previous, sessions, 0.25, "d"), jumps(shuffled, previous, sessions, 0.25, "d")
    assert fast["observed"].to_pylist() == general["observed"].to_pylist()
    assert sum(fast["observed"].to_pylist()) > 0  # some move was found, so the comparison says something
