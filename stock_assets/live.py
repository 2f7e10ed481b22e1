"""The session in progress: its intraday bars so far and a partial daily bar built from them, each
row stamped with the refresh's `as_of`. Kept apart from history: a refresh replaces the warehouse
table `live_prices` (one transaction) and the lake table lake/live_prices (one commit) whole, and
never touches `prices` or the final lake tables; a session's live rows go once its final bars load.

as_of = the refresh's time minus the provider's `live_delay` (its feed's documented delay): bars
that ended by then, and none later, are kept, whatever the provider sent.
"""

import datetime as dt
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import write_deltalake

from stock_assets import clock, tables
from stock_assets.calendar import NY, is_session, session_bounds
from stock_assets.full_disk import writing
from stock_assets.lake import delta
from stock_assets.lake.storage import LakeStorage
from stock_assets.providers.errors import ProviderError
from stock_assets.providers.live_bars import bars_so_far
from stock_assets.providers.registry import parse_payloads
from stock_assets.schema import BAR_SCHEMA, conform
from stock_assets.seed_csv import LandingFormatError
from stock_assets.warehouse.ddl import window_sql

TABLE, LAKE_PATH = "live_prices", "lake/live_prices"
MINUTES = {"1min": 1, "5min": 5, "15min": 15, "30min": 30, "60min": 60}
LIVE_SCHEMA = pa.schema(
    [BAR_SCHEMA.field(n) for n in ("symbol", "session", "ts", "interval", "open", "high", "low", "close", "volume", "vwap", "trades", "source")]
    + [("as_of", pa.timestamp("us", tz="UTC"))]
)
# A window holding every session: a refresh replaces the table whole, in the engines' one transaction.
EVERY_SESSION = (dt.date(1900, 1, 1), dt.date(2999, 12, 31))


def session_in_progress(now: dt.datetime) -> tuple[dt.date, dt.datetime, dt.datetime] | None:
    """(session, open, close) of the NYSE session under way at `now` (open <= now <= close; an
    early close is the close), else None: a weekend, a holiday, before the open, after the close."""
    day = now.astimezone(ZoneInfo(NY)).date()
    if not is_session(day):
        return None
    opened, closes = session_bounds(day)
    return (day, opened, closes) if opened <= now <= closes else None


def live_delay(provider) -> dt.timedelta:
    """How far behind real time the provider's feed is (its documented delay; 0 if it states none)."""
    return getattr(provider, "live_delay", dt.timedelta(0))


@dataclass
class LiveFetch:
    """What one refresh got: LIVE_SCHEMA rows, the session (None: none in progress), and by symbol what failed."""

    session: dt.date | None
    as_of: dt.datetime
    rows: pa.Table
    failures: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def fetch_live(provider, symbols, interval: str, now: dt.datetime) -> LiveFetch:
    """Ask `provider` for the session in progress at `now - live_delay` and keep the bars of
    `interval` that have ended by then, plus each symbol's partial daily bar. Outside a session
    nothing is fetched. A symbol that fails is named in `failures`; the others are kept."""
    if interval not in MINUTES:
        raise ValueError(f"live interval {interval!r}: accepted: {', '.join(MINUTES)} (STOCK_ASSETS_LIVE_INTERVAL)")
    as_of = now.astimezone(dt.UTC) - live_delay(provider)
    found = session_in_progress(as_of)
    if found is None:
        said = f"no NYSE session in progress at {as_of.astimezone(ZoneInfo(NY)):%Y-%m-%d %H:%M} New York: nothing fetched"
        return LiveFetch(None, as_of, LIVE_SCHEMA.empty_table(), notes=[said])
    session, opened, _ = found
    result = provider.fetch(list(symbols), [session], interval)
    failures = dict(result.failures)
    parsed = []
    for payload, got in zip(result.payloads, parse_payloads(result.payloads, (ProviderError, LandingFormatError))):
        if isinstance(got, pa.Table):
            parsed.append(got)
        else:
            failures[payload.symbol] = f"cannot parse its {payload.provider} payload: {got}"
    bars = pa.concat_tables(parsed) if parsed else BAR_SCHEMA.empty_table()
    bars = bars.filter(pc.invert(pc.is_in(bars["symbol"], pa.array(sorted(failures), pa.string()))))
    intraday = ended_bars(bars, session, interval, as_of)
    rows = pa.concat_tables([intraday, partial_daily(intraday, opened)]) if intraday.num_rows else intraday
    rows = rows.append_column("as_of", pa.repeat(pa.scalar(as_of, pa.timestamp("us", tz="UTC")), rows.num_rows))
    return LiveFetch(session, as_of, tables.sort(conform(rows, LIVE_SCHEMA), ("symbol", "interval", "ts")), failures, list(result.notes))


def refresh(provider, symbols, interval: str, now: dt.datetime) -> pa.Table:
    """The LIVE_SCHEMA rows of the session in progress at `now` (empty outside a session)."""
    return fetch_live(provider, symbols, interval, now).rows


def ended_bars(bars: pa.Table, session: dt.date, interval: str, as_of: dt.datetime) -> pa.Table:
    """The session's bars of `interval` that overlap its regular hours and ended by `as_of`
    (providers.live_bars.bars_so_far: a bar ends `interval` after its start, or at the close), one
    per (symbol, ts): the latest ingested."""
    so_far = bars_so_far(tables.only(bars, pc.fill_null(pc.equal(bars["interval"], interval), False)), session, as_of)
    latest = tables.duckdb_over(bars=so_far).sql(
        "SELECT * FROM bars QUALIFY row_number() OVER (PARTITION BY symbol, ts ORDER BY ingested_at DESC) = 1"
    ).to_arrow_table()
    return tables.sort(conform(latest, BAR_SCHEMA), ("symbol", "ts"))


def partial_daily(intraday: pa.Table, opened: dt.datetime) -> pa.Table:
    """One `1d` bar per symbol from its intraday bars so far, stamped at the session's open:
    first open, highest high, lowest low, last close, volumes and trades summed, vwap
    volume-weighted (NULL where a bar lacks it)."""
    con = tables.duckdb_over(bars=intraday)
    daily = con.sql(
        """SELECT symbol, session, ?::TIMESTAMPTZ AS ts, '1d' AS interval,
                  arg_min(open, ts) AS open, max(high) AS high, min(low) AS low, arg_max(close, ts) AS close,
                  sum(volume)::BIGINT AS volume,
                  CASE WHEN count(vwap) = count(*) AND sum(volume) > 0 THEN sum(vwap * volume) / sum(volume) END AS vwap,
                  CASE WHEN count(trades) = count(*) THEN sum(trades)::BIGINT END AS trades,
                  arg_max(source, ts) AS source, max(ingested_at) AS ingested_at
           FROM bars GROUP BY symbol, session ORDER BY symbol""",
        params=[opened],
    ).to_arrow_table()
    return conform(daily, BAR_SCHEMA)


def with_previous(warehouse, fetched: LiveFetch) -> pa.Table:
    """The refresh's rows, plus the rows the last refresh stored for the symbols that failed
    this time (same session, their older as_of kept): a failed symbol shows its last known bars."""
    if not fetched.failures or fetched.session is None or not warehouse.table_exists(TABLE):
        return fetched.rows
    where = window_sql(fetched.session, fetched.session, sorted(fetched.failures))
    kept = conform(warehouse.query(f"SELECT * FROM {TABLE} WHERE {where}"), LIVE_SCHEMA)
    return tables.sort(pa.concat_tables([fetched.rows, kept]), ("symbol", "interval", "ts"))


def store_live(storage: LakeStorage, warehouse, rows: pa.Table) -> int:
    """Replace lake/live_prices (one commit) and the warehouse table `live_prices` (one
    transaction) whole with `rows`; returns the lake table's new version. The lake goes first,
    so that a Redshift warehouse could COPY what it holds."""
    rows = conform(rows, LIVE_SCHEMA)
    data = rows.append_column(delta.PARTITION, delta.partition_of(rows["session"]))
    with writing("lake table", storage.uri(LAKE_PATH)):
        write_deltalake(delta.table_uri(storage, LAKE_PATH), data, mode="overwrite", schema_mode="overwrite",
                        partition_by=[delta.PARTITION], storage_options=delta.storage_options(storage),
                        configuration=delta.KEEP_LOG, writer_properties=delta.writer_properties(data.schema))  # fmt: skip
    with writing("warehouse", warehouse.describe()):
        warehouse.replace_window(TABLE, rows, *EVERY_SESSION)
    return delta.open_table(storage, LAKE_PATH).version()


def read_live(storage: LakeStorage) -> pa.Table:
    """lake/live_prices as it is (LIVE_SCHEMA, in order), empty before the first refresh."""
    found = delta.dataset(storage, LAKE_PATH)
    rows = found.to_table().drop_columns([delta.PARTITION]) if found is not None else LIVE_SCHEMA.empty_table()
    return tables.sort(conform(rows, LIVE_SCHEMA), ("symbol", "interval", "ts"))


def drop_final(storage: LakeStorage, warehouse, sessions: list[dt.date], symbols=None, keep_days: float | None = None) -> int:
    """Remove the live rows of `sessions` (of `symbols` only, when given): their final bars have
    just loaded. Tables that hold none are not written (nor created); returns the rows removed.
    With `keep_days`, lake/live_prices is then compacted and its files older than that vacuumed
    (a refresh writes a version each time; the weekly maintenance keeps to the final tables)."""
    if not sessions:
        return 0
    first, last = min(sessions), max(sessions)
    lake_rows = read_live(storage)
    mine = pc.and_(pc.greater_equal(lake_rows["session"], pa.scalar(first, pa.date32())), pc.less_equal(lake_rows["session"], pa.scalar(last, pa.date32())))
    if symbols is not None:
        mine = pc.and_(mine, pc.is_in(lake_rows["symbol"], pa.array(sorted(set(symbols)), pa.string())))
    held = pc.sum(mine.cast(pa.int64())).as_py() or 0
    if held:
        delta.write_window(storage, LAKE_PATH, LIVE_SCHEMA.empty_table(), [first, last], symbols)
        if keep_days is not None:  # delta-rs measures the age of files by the system clock, not ours
            delta.maintain(storage, LAKE_PATH, max(dt.timedelta(0), dt.datetime.now(dt.UTC) - (clock.now() - dt.timedelta(days=keep_days))))
    removed = 0
    if warehouse.table_exists(TABLE):
        count = warehouse.query(f"SELECT count(*) AS n FROM {TABLE} WHERE {window_sql(first, last, symbols)}")["n"][0].as_py()
        if count:
            warehouse.replace_window(TABLE, LIVE_SCHEMA.empty_table(), first, last, symbols=symbols)
            removed = count
    return max(removed, held)

