"""zipline-reloaded: a csvdir bundle registered on the input (`daily/<SYMBOL>.csv`, XNYS) and
ingested as `zipline ingest -b <bundle>` does (bcolz daily bars, SQLite assets and adjustments);
queried through the bundle's daily bar reader. Runs in the peers' environment."""

import os

from benchmarks.peers.child import main, time_queries

BUNDLE = "bench-csvdir"
FIELDS = ["open", "high", "low", "close", "volume"]


def register(input: str, store: str, first: str, last: str) -> dict:
    """The bundle registered in this process (zipline keeps its registry in memory); its environ."""
    import pandas as pd
    from zipline.data.bundles import register as zipline_register
    from zipline.data.bundles.csvdir import csvdir_equities

    zipline_register(BUNDLE, csvdir_equities(["daily"], input), calendar_name="XNYS",
                     start_session=pd.Timestamp(first), end_session=pd.Timestamp(last))
    return dict(os.environ, ZIPLINE_ROOT=store)


def imports() -> None:
    import warnings

    warnings.filterwarnings("ignore")
    import pandas  # noqa: F401
    import zipline.data.bundles
    import zipline.data.bundles.csvdir  # noqa: F401


def ingest(input: str, store: str, first: str, last: str, **_) -> dict:
    from zipline.data.bundles import ingest as zipline_ingest

    environ = register(input, store, first, last)
    zipline_ingest(BUNDLE, environ=environ, show_progress=False)
    return {}


def query(input: str, store: str, symbol: str, session: str, first: str, last: str, repeats: int, **_) -> dict:
    import numpy as np
    import pandas as pd
    from zipline.data.bundles import load

    environ = register(input, store, first, last)
    start, end, day = pd.Timestamp(first), pd.Timestamp(last), pd.Timestamp(session)

    def open_store():
        bundle = load(BUNDLE, environ)
        sids = list(bundle.asset_finder.sids)
        return bundle, sids

    def one_symbol(handle):
        bundle, _ = handle
        asset = bundle.asset_finder.lookup_symbol(symbol, as_of_date=None)
        arrays = bundle.equity_daily_bar_reader.load_raw_arrays(FIELDS, start, end, [asset.sid])
        close = arrays[FIELDS.index("close")]
        return close.shape[0], float(np.nansum(close))

    def one_session(handle):
        bundle, sids = handle
        arrays = bundle.equity_daily_bar_reader.load_raw_arrays(FIELDS, day, day, sids)
        close = arrays[FIELDS.index("close")]
        return close.shape[1], float(np.nansum(close))

    return time_queries(open_store, one_symbol, one_session, repeats)


if __name__ == "__main__":
    main(ingest, query, imports)
