"""Corporate actions (splits, cash dividends) as data, and the adjusted prices derived from them.

Convention (CRSP / zipline): per symbol and session, a backward cumulative factor F(s), the
product of the `factor` of every action with ex_date > s. A split of r (new shares per old)
has factor 1/r; a cash dividend D has factor 1 - D / (the traded close of the session before
its ex-date). Adjusted prices are the traded ones times F; a split multiplies earlier volumes by r.
"""

import pyarrow as pa

KEY = ("symbol", "ex_date", "kind")
ACTIONS_SCHEMA = pa.schema(
    [
        ("symbol", pa.string()),
        ("ex_date", pa.date32()),
        ("kind", pa.string()),  # "split" or "dividend"
        ("value", pa.float64()),  # split: new shares per old share (4.0 for 4:1); dividend: cash per share
        ("source", pa.string()),  # the provider that said so
        ("first_seen", pa.timestamp("us", tz="UTC")),  # when we first saw it; kept on re-runs
        ("factor", pa.float64()),  # what it multiplies every earlier session by; NULL until knowable
    ]
)
