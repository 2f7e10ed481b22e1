"""Ingest: fetch the window from the provider (raw_prices), land it as CSV (landing_csv)."""

import datetime as dt

import dagster as dg
import pyarrow as pa

from stock_assets.calendar import session_offset
from stock_assets.defs.common import RANGE_TAGS, lake_asset, run_window, table_metadata, window_sessions
from stock_assets.lake import layout
from stock_assets.lake.io_manager import LakeResource, stop_when_disk_full
from stock_assets.preflight import unreachable
from stock_assets.providers.base import ACTION_KINDS, RawPayload
from stock_assets.providers.errors import ProviderError
from stock_assets.providers.registry import parse_payloads
from stock_assets.providers.resource import MissingSettingError, ProviderResource
from stock_assets.schema import BAR_SCHEMA
from stock_assets.seed_csv import LandingFormatError, to_landing_csv
from stock_assets.settings import Settings
from stock_assets.transforms.accounting import REASONS, sample_keys, sort_window_bars
from stock_assets.warehouse.io_manager import WarehouseResource


class RawPricesConfig(dg.Config):
    refetch: bool = False  # fetch every symbol again, even those this window already holds


def _failures_md(failures: dict[str, str]) -> dg.MetadataValue:
    rows = "\n".join(f"| {symbol} | {why.replace('|', '/')} |" for symbol, why in failures.items())
    return dg.MetadataValue.md(f"| symbol | why |\n|---|---|\n{rows}" if failures else "none")


SHOWN_FAILURES = 10  # symbols quoted in a failure's message; the metadata table has them all


def _stop(message: str, **metadata) -> dg.Failure:
    """A failure no layer retries: the step's RetryPolicy skips it (dg.Failure(allow_retries=False)),
    run retries skip step failures (run_retries.retry_on_asset_or_op_failure: false in dagster.yaml)."""
    return dg.Failure(f"{message} (not retried: fix the cause, then run again)", metadata=metadata, allow_retries=False)


def _no_window(context: dg.AssetExecutionContext) -> dg.Failure:
    first, last = (context.run.tags.get(tag, "?") for tag in RANGE_TAGS)
    return _stop(f"the window {first}..{last} holds no NYSE session: is the partition range reversed? "
                 "Give the earlier session first (--partition-range FIRST...LAST, backfill --start/--end)")


def _listed_before(lake: LakeResource, settings: Settings, sessions: list[dt.date], symbols: set[str]) -> tuple[dt.date | None, set[str]]:
    """The session before the window, and which of `symbols` have a bar on it in lake/deduped."""
    before = session_offset(sessions[0], -1, floor=settings.start)
    if not symbols or before >= sessions[0]:
        return None, set()
    return before, set(layout.read_sessions(lake.storage(), "lake/deduped", [before])["symbol"].to_pylist()) & symbols


def _incomplete(window: str, failures: dict[str, str], permanent: set[str], fetched: int, tries: int, last_try: bool) -> dg.Failure:
    """The window lacks symbols no known reason explains: nothing downstream may run on it.
    `fetched`: symbols kept in raw/ that a re-run will not fetch again (0 where it fetches all)."""
    names = sorted(failures)
    named = ", ".join(names[:SHOWN_FAILURES]) + (f" and {len(names) - SHOWN_FAILURES} more" if len(names) > SHOWN_FAILURES else "")
    detail = "; ".join(f"{symbol}: {failures[symbol]}" for symbol in names[:SHOWN_FAILURES])
    kept = f"; the {fetched} symbol(s) fetched are kept in raw/, so a re-run fetches only {named}" if fetched else ""
    if set(failures) & permanent:
        return _stop(f"{window}: {named} cannot be fetched ({detail}): an incomplete window is neither loaded nor published{kept}",
                     failures=_failures_md(failures))  # fmt: skip
    message = f"{window}: {named} could not be fetched after {tries} {'try' if tries == 1 else 'tries'} ({detail}): an incomplete window is neither loaded nor published{kept}"
    if last_try:  # said here, not as Dagster's "Exceeded max_retries"
        return dg.Failure(f"{message}; re-run the window once the provider answers", metadata={"failures": _failures_md(failures)}, allow_retries=False)
    return dg.Failure(message, metadata={"failures": _failures_md(failures)})


def build(settings: Settings) -> dg.Definitions:
    @lake_asset(
        settings, "raw", "ingest", {"python"},
        # A step that still fails after the HTTP layer's own retries is retried whole, later.
        retry_policy=dg.RetryPolicy(
            max_retries=settings.step_retries,
            delay=settings.step_retry_delay_seconds,
            backoff=dg.Backoff.EXPONENTIAL,
            jitter=dg.Jitter.PLUS_MINUS,
        ),
        # Concurrent runs (backfill chunks, the schedule) share the provider's rate limit.
        pool=f"provider_{settings.provider}",
    )
    def raw_prices(
        context: dg.AssetExecutionContext,
        config: RawPricesConfig,
        provider: dg.ResourceParam[ProviderResource],
        lake: LakeResource,
        warehouse: WarehouseResource,
    ) -> dg.Output[list[RawPayload]]:
        """Provider payloads for the window, byte-for-byte as received (bronze): one per response.

        A re-run fetches only the symbols this window lacks (quota is precious), unless `refetch`.
        Only a complete window goes on: a symbol that could not be fetched fails the step by name,
        after what was fetched is written to raw/ (so the next try fetches only the rest).
        Throttling, 5xx and dropped connections are retried by the HTTP layer, then by the step's
        RetryPolicy. What no retry can mend fails at once and is not retried
        (dg.Failure(allow_retries=False)): an empty or reversed window, no symbol, an unreachable
        warehouse, lake or budget store, and any symbol that failed permanently (bad key, premium
        endpoint, bad symbol, malformed or bad request, spent daily budget). A symbol the provider
        answered with no bar for, and that has no bar on the session before in the lake, is not
        listed yet: it does not block.
        """
        sessions, symbols = window_sessions(context), run_window(context, settings).symbols  # only the window's symbols are fetched
        if not sessions:
            raise _no_window(context)
        if not symbols:
            raise _stop("no symbol to fetch: set STOCK_ASSETS_SYMBOLS (e.g. AAPL,MSFT)")
        if problem := unreachable(warehouse.get(), warehouse.url, lake.storage(), lake.url, provider.budget()):
            raise _stop(problem)
        try:
            client = provider.client()
        except MissingSettingError as err:
            raise _stop(str(err)) from None
        kept: list[RawPayload] = []
        if client.reuse_fetched and (not config.refetch or context.retry_number):
            # With refetch, only what an earlier try of this very run fetched counts as fetched.
            started = context.instance.get_run_stats(context.run.run_id).start_time if config.refetch else 0.0
            since = dt.datetime.fromtimestamp(started, dt.UTC) if started is not None else dt.datetime.max.replace(tzinfo=dt.UTC)
            stored = layout.read_raw(lake.storage(), sessions[0], sessions[-1], exact=True)
            kept = [p for p in stored if p.provider == client.name and p.interval in (provider.interval, *ACTION_KINDS) and p.symbol in symbols and p.ingested_at >= since]
        have = {p.symbol for p in kept}
        result = client.fetch([s for s in symbols if s not in have], sessions, provider.interval)
        window = str(run_window(context, settings))  # its symbols named when the run scopes them
        failures, unlisted = dict(result.failures), {}
        before, traded = _listed_before(lake, settings, sessions, result.no_bars)
        for symbol in sorted(result.no_bars):
            if symbol in traded:  # it traded the session before: no bars now is a gap, not a listing to come
                failures[symbol] += f"; yet it has a bar on {before} in lake/deduped"
            else:
                unlisted[symbol] = failures.pop(symbol)
                context.log.info(f"raw_prices {window}: {symbol} has no bar in the window and none before it: not listed yet ({unlisted[symbol]})")
        for symbol, why in failures.items():
            context.log.warning(f"raw_prices {window}: {symbol} not fetched: {why}")
        for note in result.notes:
            context.log.warning(f"raw_prices {window}: {note}")
        payloads = kept + result.payloads
        if failures:
            storage = lake.storage()  # what was fetched stays: the next try and a re-run fetch only the rest
            with stop_when_disk_full():
                storage.map(lambda p: storage.write_bytes(f"raw/{sessions[0]}_{sessions[-1]}/{layout.raw_name(p)}", p.body), result.payloads)
            tries = context.retry_number + 1
            reused = len({p.symbol for p in payloads}) if client.reuse_fetched else 0
            raise _incomplete(window, failures, result.permanent, reused, tries, tries > settings.step_retries)
        return dg.Output(
            payloads,
            metadata={
                "provider": provider.name,
                "synthetic": provider.name == "synthetic",
                "payloads": len(payloads),
                "requests": len(result.payloads),
                "reused_symbols": len(have),
                "bytes": sum(len(p.body) for p in payloads),
                "not_listed_yet": _failures_md(unlisted),
                "notes": "; ".join(result.notes) or "none",
                "window": window,
            },
        )

    @lake_asset(
        settings, "landing", "ingest", {"csv"},
        check_specs=[
            dg.AssetCheckSpec(
                "landing_bars_accounted", asset="landing_csv", blocking=True,
                description="Every bar the provider returned is landed, set aside in quarantine with its reason, or outside the window.",
            )
        ],
    )
    def landing_csv(context: dg.AssetExecutionContext, raw_prices: list[RawPayload], lake: LakeResource):
        """Normalized bars as seed-format CSV, one file per session and ingestion under landing/<date>/.

        A bar dated in the window on a day that is not an NYSE session is set aside in quarantine/
        with its reason; bars outside the window (a full-history answer) stay in raw/ only."""
        sessions = window_sessions(context)
        parsed, unreadable = [], {}
        for payload, result in zip(raw_prices, parse_payloads(raw_prices, (ProviderError, LandingFormatError))):
            if isinstance(result, pa.Table):
                parsed.append(result)
            else:  # keep the rest; the payload stays in raw/
                unreadable[f"{payload.symbol} part {payload.part}"] = str(result)
                context.log.error(f"landing_csv: cannot parse {payload.provider} payload for {payload.symbol}: {result}")
        bars = pa.concat_tables(parsed) if parsed else BAR_SCHEMA.empty_table()
        sorted_out = sort_window_bars(bars, sessions)
        storage = lake.storage()
        quarantined = []
        for short, rows in sorted_out.set_aside.items():
            reason = REASONS[short]
            name = f"provider/{sessions[0]}_{sessions[-1]}/{layout.stamp(dt.datetime.now(dt.UTC))}-{short}.csv"
            quarantined += layout.quarantine(storage, name, to_landing_csv(rows), f"{rows.num_rows} bars {reason}: {sample_keys(rows)}\n")
            context.log.warning(f"landing_csv {sessions[0]}..{sessions[-1]}: {rows.num_rows} bars set aside, {reason} ({sample_keys(rows)}); see {storage.uri(quarantined[-2])}")
        counts = sorted_out.counts()
        yield dg.Output(
            sorted_out.landed,
            metadata=table_metadata(context, sorted_out.landed, sessions) | {
                "unparsed_payloads": _failures_md(unreadable),
                "bars_returned": counts["returned"], "bars_landed": counts["landed"],
                "bars_set_aside": counts["set_aside"], "bars_outside_window": counts["outside_window"],
                "set_aside": dg.MetadataValue.md("\n".join(f"- {r.num_rows} {REASONS[why]}: {sample_keys(r)}" for why, r in sorted_out.set_aside.items()) or "none"),
            },
        )  # the IO manager writes the landing files and their records here
        written = layout.landing_record_rows(storage, sessions, run_window(context, settings).symbols)
        accounted = written + counts["set_aside"] + counts["outside_window"]
        yield dg.AssetCheckResult(
            check_name="landing_bars_accounted",
            passed=accounted == counts["returned"],
            metadata={
                "bars_returned": counts["returned"], "bars_in_landing_files": written,
                "bars_set_aside": counts["set_aside"], "bars_outside_window": counts["outside_window"],
                "unaccounted": counts["returned"] - accounted,
                "quarantine": ", ".join(storage.uri(p) for p in quarantined[::2]) or "none",
            },
        )

    return dg.Definitions(assets=[raw_prices, landing_csv])
