"""Windows scoped to symbols, and the universe over time (README "How history stays consistent")."""

import datetime as dt

import pyarrow as pa

from stock_assets.lake import delta
from stock_assets.lake.storage import LakeStorage
from stock_assets.schema import BAR_SCHEMA, conform

D1, D2 = dt.date(2012, 1, 3), dt.date(2012, 1, 4)


def bars(symbols, sessions, close: float) -> pa.Table:
    rows = [{"symbol": s, "session": d, "ts": dt.datetime(d.year, d.month, d.day, 21, tzinfo=dt.UTC), "interval": "1d",
             "close": close, "source": "test"} for s in symbols for d in sessions]  # fmt: skip
    return conform(pa.Table.from_pylist(rows), BAR_SCHEMA)


def test_write_window_scoped_to_symbols_keeps_other_symbols_rows(tmp_path):
    storage = LakeStorage(str(tmp_path / "lake"))
    delta.write_window(storage, "lake/prices", bars(["AAPL", "MSFT"], [D1, D2], 1.0), [D1, D2])
    # A window of IBM alone: a row of AAPL handed over by mistake is not written either.
    version, written = delta.write_window(storage, "lake/prices", bars(["IBM", "AAPL"], [D1, D2], 2.0), [D1, D2], symbols=["IBM"])
    assert set(written["symbol"].to_pylist()) == {"IBM"}
    rows = delta.read_window(storage, "lake/prices", [D1, D2]).to_pylist()
    assert {(r["symbol"], r["close"]) for r in rows} == {("AAPL", 1.0), ("MSFT", 1.0), ("IBM", 2.0)}
    assert len(rows) == 6
    only_ibm = delta.read_window(storage, "lake/prices", [D1, D2], symbols=["IBM"])
    assert only_ibm["symbol"].to_pylist() == ["IBM", "IBM"]
    # The unscoped window replaces every symbol's rows, as before.
    delta.write_window(storage, "lake/prices", bars(["AAPL"], [D1], 3.0), [D1, D2])
    assert delta.read_window(storage, "lake/prices", [D1, D2])["symbol"].to_pylist() == ["AAPL"]
