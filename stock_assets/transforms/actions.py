"""Corporate actions (splits, cash dividends) as data, and the adjusted prices derived from them.

Convention (CRSP / zipline): per symbol and session, a backward cumulative factor F(s), the
product of the `factor` of every action with ex_date > s. A split of r (new shares per old)
has factor 1/r; a cash dividend D has factor 1 - D / (the traded close of the session before
its ex-date). Adjusted prices are the traded ones times F; a split multiplies earlier volumes by r.
"""

import datetime as dt
from fractions import Fraction

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stock_assets.calendar import nyse_calendar, session_positions
from stock_assets.tables import duckdb_over

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
FACTORS_SCHEMA = pa.schema([("adj_factor", pa.float64()), ("split_factor", pa.float64())])


def actions_from_bars(bars: pa.Table, first_seen: dt.datetime | None = None) -> pa.Table:
    """The actions a feed's bars carry: a split_coefficient other than 1 is a split of that
    ratio, a dividend above 0 a cash dividend, on the bar's session (its ex-date). first_seen is
    the given moment, else the earliest ingestion of a bar that said so. Factors are NULL here."""
    if not bars.num_rows:
        return ACTIONS_SCHEMA.empty_table()
    seen = "min(ingested_at)" if first_seen is None else "?"
    query = f"""
        SELECT symbol, session AS ex_date, kind, any_value(value ORDER BY ingested_at DESC) AS value,
               any_value(source ORDER BY ingested_at DESC) AS source, {seen} AS first_seen, NULL::DOUBLE AS factor
        FROM (SELECT *, 'split' AS kind, split_coefficient AS value FROM bars
              WHERE split_coefficient IS NOT NULL AND split_coefficient > 0 AND split_coefficient <> 1
              UNION ALL
              SELECT *, 'dividend' AS kind, dividend AS value FROM bars WHERE dividend > 0)
        GROUP BY symbol, session, kind ORDER BY symbol, ex_date, kind"""
    found = duckdb_over(bars=bars).sql(query, params=None if first_seen is None else [first_seen]).to_arrow_table()
    return found.select(ACTIONS_SCHEMA.names).cast(ACTIONS_SCHEMA)


def merge_actions(known: pa.Table, new: pa.Table) -> pa.Table:
    """`known` updated by `new` on KEY: a new action is added, a known one takes the new value
    and source but keeps when it was first seen, and the factor it had until with_factors says."""
    query = """
        SELECT coalesce(n.symbol, k.symbol) AS symbol, coalesce(n.ex_date, k.ex_date) AS ex_date, coalesce(n.kind, k.kind) AS kind,
               coalesce(n.value, k.value) AS value, coalesce(n.source, k.source) AS source,
               least(k.first_seen, n.first_seen) AS first_seen,
               CASE WHEN n.value IS NULL OR n.value = k.value THEN k.factor END AS factor
        FROM known k FULL OUTER JOIN new n USING (symbol, ex_date, kind)
        ORDER BY symbol, ex_date, kind"""
    return (
        duckdb_over(known=known.cast(ACTIONS_SCHEMA), new=new.cast(ACTIONS_SCHEMA))
        .sql(query)
        .to_arrow_table()
        .cast(ACTIONS_SCHEMA)
    )


def previous_sessions(ex_dates: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The NYSE session before each ex-date: the close a dividend is measured against."""
    days = pc.cast(ex_dates, pa.int32()).to_numpy(zero_copy_only=False).astype(np.int64)
    sessions = nyse_calendar().sessions.to_numpy().astype("datetime64[D]")
    return pa.array(sessions[np.maximum(session_positions(days) - 1, 0)], pa.date32())


def with_factors(actions: pa.Table, closes: pa.Table) -> pa.Table:
    """Each action's factor: 1/r for a split of r; 1 - D / close for a dividend D, the traded close
    of the session before its ex-date (`closes`: symbol, session, close). A dividend whose close
    is not in `closes` keeps the factor it had (NULL if never known); one not below that close,
    or a close not above 0, is NULL (no adjustment guessed)."""
    actions = actions.cast(ACTIONS_SCHEMA)
    prior = actions.append_column("prior", previous_sessions(actions["ex_date"]))
    query = """
        SELECT a.symbol, a.ex_date, a.kind, a.value, a.source, a.first_seen,
               CASE WHEN a.kind = 'split' THEN 1.0 / a.value
                    WHEN c.close IS NULL THEN a.factor
                    WHEN c.close > 0 AND a.value < c.close THEN 1.0 - a.value / c.close END AS factor
        FROM prior a LEFT JOIN (SELECT DISTINCT symbol, session, close FROM closes) c ON c.symbol = a.symbol AND c.session = a.prior
        ORDER BY symbol, ex_date, kind"""
    return (
        duckdb_over(prior=prior, closes=closes.select(["symbol", "session", "close"]))
        .sql(query)
        .to_arrow_table()
        .cast(ACTIONS_SCHEMA)
    )


def cumulative_factors(keys: pa.Table, actions: pa.Table) -> pa.Table:
    """Per row of `keys` (symbol, session), in order: adj_factor F, the product of the factor of
    every action of that symbol with ex_date > session (an unknown factor counts as 1), and
    split_factor, the same over splits only (what volumes are divided by)."""
    if not keys.num_rows:
        return FACTORS_SCHEMA.empty_table()
    query = """
        WITH per_day AS (
            SELECT symbol, ex_date, product(coalesce(factor, 1.0)) AS f,
                   product(CASE WHEN kind = 'split' THEN coalesce(factor, 1.0) ELSE 1.0 END) AS s
            FROM actions GROUP BY symbol, ex_date),
        backward AS (
            SELECT symbol, ex_date,
                   product(f) OVER (PARTITION BY symbol ORDER BY ex_date DESC ROWS UNBOUNDED PRECEDING) AS f,
                   product(s) OVER (PARTITION BY symbol ORDER BY ex_date DESC ROWS UNBOUNDED PRECEDING) AS s
            FROM per_day)
        SELECT coalesce(b.f, 1.0) AS adj_factor, coalesce(b.s, 1.0) AS split_factor
        FROM numbered k ASOF LEFT JOIN backward b ON k.symbol = b.symbol AND k.session < b.ex_date
        ORDER BY k.row"""
    numbered = keys.select(["symbol", "session"]).append_column("row", pa.array(np.arange(keys.num_rows)))
    return (
        duckdb_over(numbered=numbered, actions=actions.cast(ACTIONS_SCHEMA)).sql(query).to_arrow_table().cast(FACTORS_SCHEMA)
    )


def adjust(bars: pa.Table, actions: pa.Table) -> pa.Table:
    """`bars` with adj_close = close × F (ours: the provider's own adjusted close is replaced)
    and an `adj_factor` column (F) appended."""
    factors = cumulative_factors(bars, actions)
    adjusted = pc.multiply(bars["close"], factors["adj_factor"])
    at = bars.schema.get_field_index("adj_close")
    bars = (
        bars.set_column(at, bars.schema.field(at), adjusted) if at >= 0 else bars.append_column("adj_close", adjusted)
    )
    if "adj_factor" in bars.column_names:
        bars = bars.drop_columns(["adj_factor"])
    return bars.append_column("adj_factor", factors["adj_factor"])


def adjusted_bar(bars: pa.Table, actions: pa.Table) -> pa.Table:
    """The whole bar adjusted, for whoever wants it: adj_open/high/low/close = traded × F and
    adj_volume = volume / F over splits only (a split of r multiplies earlier volumes by r)."""
    factors = cumulative_factors(bars, actions)
    f = factors["adj_factor"]
    out = {f"adj_{c}": pc.multiply(bars[c], f) for c in ("open", "high", "low", "close")}
    out["adj_volume"] = pc.divide(pc.cast(bars["volume"], pa.float64()), factors["split_factor"])
    return pa.table({"symbol": bars["symbol"], "session": bars["session"], **out, "adj_factor": f})


def describe_action(action: dict) -> str:
    """'4:1 split on 2020-08-31', '$0.82 dividend on 2020-08-07'."""
    if action["kind"] == "split":
        ratio = Fraction(action["value"]).limit_denominator(1000)
        return f"{ratio.numerator}:{ratio.denominator} split on {action['ex_date']}"
    return f"${action['value']:g} dividend on {action['ex_date']}"


def changed(stored: pa.Table, applied: pa.Table) -> pa.Table:
    """The actions of `stored` whose (symbol, ex_date, kind, factor) `applied` lacks, and those
    of `applied` no longer stored (value NULL): what the derived tables still have to reflect."""
    query = """
        SELECT coalesce(s.symbol, a.symbol) AS symbol, coalesce(s.ex_date, a.ex_date) AS ex_date, coalesce(s.kind, a.kind) AS kind,
               s.value, s.source, s.first_seen, s.factor
        FROM stored s FULL OUTER JOIN applied a USING (symbol, ex_date, kind)
        WHERE s.factor IS DISTINCT FROM a.factor OR s.symbol IS NULL OR a.symbol IS NULL
        ORDER BY symbol, ex_date, kind"""
    con = duckdb_over(
        stored=stored.select(ACTIONS_SCHEMA.names).cast(ACTIONS_SCHEMA),
        applied=applied.select(ACTIONS_SCHEMA.names).cast(ACTIONS_SCHEMA),
    )
    return con.sql(query).to_arrow_table().cast(ACTIONS_SCHEMA)


TOLERANCE = 0.005  # relative: Alpha Vantage rounds its adjusted close to 4 decimals
AGREES = (
    f"Where the provider sends an adjusted close, ours (close × the actions' factor) is within {TOLERANCE:.1%} of it."
)


def disagreements(sent: pa.Table, ours: pa.Table) -> pa.Table:
    """Rows (symbol, session, theirs, ours) where the provider's adj_close (`sent`) and ours
    (`ours`, the same rows in the same order) differ by more than TOLERANCE, relative."""
    query = f"""SELECT symbol, session, theirs, ours FROM rows
                WHERE theirs IS NOT NULL AND ours IS NOT NULL AND abs(ours - theirs) > {TOLERANCE} * abs(theirs)
                ORDER BY symbol, session"""
    rows = pa.table(
        {"symbol": sent["symbol"], "session": sent["session"], "theirs": sent["adj_close"], "ours": ours["adj_close"]}
    )
    return duckdb_over(rows=rows).sql(query).to_arrow_table()
