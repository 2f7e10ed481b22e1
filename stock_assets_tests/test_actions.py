"""Corporate actions as data: found in the bars, merged with the known ones, and the CRSP / zipline
backward cumulative factor, checked against a hand-computed example (a dividend, then a split)."""

import datetime as dt

import pyarrow as pa
import pytest

from stock_assets.schema import conform
from stock_assets.transforms.actions import (
    ACTIONS_SCHEMA,
    TOLERANCE,
    actions_from_bars,
    adjust,
    adjusted_bar,
    changed,
    cumulative_factors,
    describe_action,
    disagreements,
    merge_actions,
    with_factors,
)

SEEN = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)
LATER = SEEN + dt.timedelta(days=3)
DAYS = [dt.date(2020, 8, d) for d in (24, 25, 26, 27, 28, 31)]  # six NYSE sessions, Mon..Fri then Mon
CLOSES = [100.0, 50.0, 49.0, 48.0, 47.0, 24.0]


def bars(symbol="XYZ", dividend_on=2, split_on=5, seen=SEEN) -> pa.Table:
    """XYZ pays $0.50 on its 3rd session (ex-date 2020-08-26; the close before, 2020-08-25, is
    50) and splits 2:1 on its 6th (2020-08-31)."""
    n = len(DAYS)
    return conform(pa.table({
        "symbol": [symbol] * n, "session": DAYS, "close": CLOSES, "open": CLOSES, "high": CLOSES, "low": CLOSES,
        "volume": [1000] * n, "source": ["csvdir"] * n, "ingested_at": [seen] * n,
        "dividend": [0.5 if i == dividend_on else 0.0 for i in range(n)],
        "split_coefficient": [2.0 if i == split_on else 1.0 for i in range(n)],
    }))  # fmt: skip


def test_actions_are_found_in_the_bars_with_their_factors():
    found = actions_from_bars(bars())
    assert found.schema == ACTIONS_SCHEMA
    assert found.select(["symbol", "ex_date", "kind", "value", "source", "first_seen"]).to_pylist() == [
        {"symbol": "XYZ", "ex_date": DAYS[2], "kind": "dividend", "value": 0.5, "source": "csvdir", "first_seen": SEEN},
        {"symbol": "XYZ", "ex_date": DAYS[5], "kind": "split", "value": 2.0, "source": "csvdir", "first_seen": SEEN},
    ]
    assert found["factor"].null_count == 2
    factors = with_factors(found, bars())
    # CRSP: the dividend's factor is 1 - 0.50 / 50 (the close of the session before its ex-date); the split's 1/2.
    assert factors["factor"].to_pylist() == [1 - 0.5 / 50, 0.5]
    assert [describe_action(a) for a in factors.to_pylist()] == [
        "$0.5 dividend on 2020-08-26",
        "2:1 split on 2020-08-31",
    ]


def test_the_backward_cumulative_factor_matches_the_hand_computed_one():
    actions = with_factors(actions_from_bars(bars()), bars())
    f = cumulative_factors(bars(), actions).to_pylist()
    d = 0.99  # 1 - 0.5 / 50
    assert [r["adj_factor"] for r in f] == [d * 0.5, d * 0.5, 0.5, 0.5, 0.5, 1.0]
    assert [r["split_factor"] for r in f] == [0.5] * 5 + [1.0]
    adjusted = adjusted_bar(bars(), actions).to_pylist()
    assert [r["adj_close"] for r in adjusted] == pytest.approx([49.5, 24.75, 24.5, 24.0, 23.5, 24.0], rel=1e-15)
    assert [r["adj_volume"] for r in adjusted] == [2000.0] * 5 + [1000.0]  # a 2:1 split doubles earlier volumes
    ours = adjust(bars(), actions)
    assert ours["adj_close"].to_pylist() == [c * r["adj_factor"] for c, r in zip(CLOSES, f)]
    # Any order of rows, any symbol without actions: each row gets its own factor.
    other = bars("ABC", dividend_on=-1, split_on=-1)
    mixed = pa.concat_tables([other, bars()]).take([11, 0, 5, 6, 3])
    assert cumulative_factors(mixed, actions)["adj_factor"].to_pylist() == [1.0, 1.0, 1.0, d * 0.5, 1.0]


def test_a_dividend_whose_close_is_not_loaded_has_no_factor_until_it_is():
    found = actions_from_bars(bars())
    later_only = bars().slice(3)  # the close of 2020-08-25 is not loaded
    assert with_factors(found, later_only)["factor"].to_pylist() == [None, 0.5]
    assert cumulative_factors(later_only, with_factors(found, later_only))["adj_factor"].to_pylist() == [0.5, 0.5, 1.0]
    known = with_factors(found, bars())
    assert with_factors(known, later_only)["factor"].to_pylist() == [0.99, 0.5]  # a factor once known is kept


def test_merging_keeps_first_seen_and_says_what_changed():
    known = with_factors(actions_from_bars(bars()), bars())
    again = actions_from_bars(bars(seen=LATER))
    merged = with_factors(merge_actions(known, again), bars())
    assert merged.to_pylist() == known.to_pylist()  # seen again: nothing changes, first_seen included
    assert changed(merged, known).num_rows == 0
    corrected = again.set_column(3, "value", pa.array([0.6, 2.0]))
    remerged = merge_actions(known, corrected)
    assert remerged["first_seen"].to_pylist() == [SEEN, SEEN] and remerged["factor"].to_pylist() == [None, 0.5]
    assert changed(with_factors(remerged, bars()), known)["value"].to_pylist() == [0.6]
    assert changed(ACTIONS_SCHEMA.empty_table(), known).to_pylist()[0]["value"] is None  # an action gone


def test_the_providers_adjusted_close_is_compared_with_ours_within_the_stated_tolerance():
    sent = bars().set_column(8, "adj_close", pa.array([49.5, 24.75 * 1.004, 30.0, None, 23.5, 24.0]))
    ours = adjust(bars(), with_factors(actions_from_bars(bars()), bars()))
    assert TOLERANCE == 0.005
    differ = disagreements(sent, ours).to_pylist()
    # 0.4 % off is rounding; 2020-08-26 is 22 % off (an action we would not know); a session it sent none for is not compared.
    assert differ == [{"symbol": "XYZ", "session": DAYS[2], "theirs": 30.0, "ours": 24.5}]
