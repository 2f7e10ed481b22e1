"""Quality rules on hand-made bars: each counts exactly the rows it should, per session."""

import datetime as dt

import pyarrow as pa
import pytest

from stock_assets.schema import conform
from stock_assets.transforms.dedup import dedupe_latest
from stock_assets.transforms.quality import RULES, evaluate
from stock_assets.transforms.quality_window import reconcile, rows_per_session

D1, D2 = dt.date(2024, 1, 2), dt.date(2024, 1, 3)
UTC = dt.UTC
EARLY, LATE = dt.datetime(2024, 1, 3, 1, tzinfo=UTC), dt.datetime(2024, 1, 3, 2, tzinfo=UTC)


def bar(symbol="AAPL", session=D1, o=10.0, h=11.0, l=9.0, c=10.5, v=100, ingested=EARLY):
    ts = dt.datetime.combine(session, dt.time(5), UTC)
    return dict(symbol=symbol, session=session, ts=ts, interval="1d", open=o, high=h, low=l, close=c, volume=v, source="t", ingested_at=ingested)


def table(*rows) -> pa.Table:
    return conform(pa.Table.from_pylist(list(rows)))


def outcome(report: pa.Table, check: str) -> dict:
    return {r["session"]: (r["observed"], r["sample"]) for r in report.to_pylist() if r["check_name"] == check}


@pytest.mark.parametrize(
    "check, bad",
    [
        ("prices_not_null", bar("MSFT", D2, c=None)),
        ("prices_not_null", bar("MSFT", D2, v=None)),
        ("prices_positive", bar("MSFT", D2, l=0.0)),
        ("prices_positive", bar("MSFT", D2, o=-1.0, l=-2.0)),
        ("prices_ohlc_consistent", bar("MSFT", D2, h=10.0)),  # high below close
        ("prices_ohlc_consistent", bar("MSFT", D2, l=10.2)),  # low above open
        ("volume_nonzero", bar("MSFT", D2, v=0)),
    ],
)
def test_a_rule_counts_only_its_failing_rows(check, bad):
    bars = table(bar("AAPL", D1), bar("MSFT", D1), bar("AAPL", D2), bad)
    report = evaluate(RULES, bars, [D1, D2], "deduped_prices")
    assert outcome(report, check) == {D1: (0.0, ""), D2: (1.0, f"MSFT@{D2}")}
    others = [r for r in report.to_pylist() if r["check_name"] != check and not r["passed"]]
    assert others == []  # a bad bar fails one rule, not every rule


def test_clean_bars_pass_every_rule():
    report = evaluate(RULES, table(bar("AAPL"), bar("MSFT"), bar("AAPL", D2)), [D1, D2], "deduped_prices")
    assert report.num_rows == 2 * len(RULES)
    assert all(report["passed"].to_pylist())


def test_duplicate_keys_are_counted_and_resolved_by_dedup():
    bars = table(bar("AAPL", c=10.5, ingested=EARLY), bar("AAPL", c=10.6, ingested=LATE), bar("MSFT"))
    assert outcome(evaluate(RULES, bars, [D1], "lake_parquet"), "prices_unique_keys") == {D1: (2.0, f"AAPL@{D1}, AAPL@{D1}")}
    deduped = dedupe_latest(bars)
    assert sorted((r["symbol"], r["close"]) for r in deduped.to_pylist()) == [("AAPL", 10.6), ("MSFT", 10.5)]
    assert outcome(evaluate(RULES, deduped, [D1], "deduped_prices"), "prices_unique_keys") == {D1: (0.0, "")}
    keys = rows_per_session(bars, distinct_keys=True)
    assert reconcile("deduped_rows_reconcile", "d", [D1], keys, rows_per_session(deduped), ("k", "r"))["passed"].to_pylist() == [True]
    short = reconcile("deduped_rows_reconcile", "d", [D1], keys, rows_per_session(deduped.slice(0, 1)), ("lake keys", "deduped rows"))
    assert short.select(["observed", "sample"]).to_pylist() == [{"observed": 1.0, "sample": "lake keys 2, deduped rows 1"}]


def test_samples_are_capped_and_taken_per_session():
    bars = table(*[bar(f"S{i}", D1, c=None) for i in range(8)], bar("LAST", D2, c=None))
    result = outcome(evaluate(RULES, bars, [D1, D2], "deduped_prices"), "prices_not_null")
    assert result[D1][0] == 8.0 and len(result[D1][1].split(", ")) == 5
    assert result[D2] == (1.0, f"LAST@{D2}")
