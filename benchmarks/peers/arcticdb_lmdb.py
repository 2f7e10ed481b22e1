"""ArcticDB on its LMDB backend (a local `lmdb://` folder): each symbol's CSV read with pandas and
written as one symbol of a library (`lib.write`, one call per symbol); queried with `lib.read`
(one symbol) and `lib.read_batch` with a date range (all symbols, one session). Runs in the
peers' environment."""

from benchmarks.peers.child import main, time_queries

LIBRARY = "bars"
COLUMNS = ["open", "high", "low", "close", "volume"]


def imports() -> None:
    import arcticdb  # noqa: F401
    import pandas  # noqa: F401


def ingest(input: str, store: str, **_) -> dict:
    from pathlib import Path

    import arcticdb as adb
    import pandas as pd

    library = adb.Arctic(f"lmdb://{store}").get_library(LIBRARY, create_if_missing=True)
    paths = sorted(Path(input, "daily").glob("*.csv"))
    for path in paths:
        library.write(path.stem, pd.read_csv(path, parse_dates=["date"], index_col="date"))
    return {"symbols": len(paths)}


def query(store: str, symbol: str, session: str, first: str, last: str, repeats: int, **_) -> dict:
    import arcticdb as adb
    import pandas as pd

    day = pd.Timestamp(session)

    def open_store():
        library = adb.Arctic(f"lmdb://{store}").get_library(LIBRARY)
        return library, sorted(library.list_symbols())

    def one_symbol(handle):
        library, _ = handle
        frame = library.read(symbol, date_range=(pd.Timestamp(first), pd.Timestamp(last)), columns=COLUMNS).data
        return len(frame), frame["close"].sum()

    def one_session(handle):
        library, symbols = handle
        items = library.read_batch([adb.ReadRequest(s, date_range=(day, day), columns=COLUMNS) for s in symbols])
        frame = pd.concat([item.data for item in items])
        return len(frame), frame["close"].sum()

    return time_queries(open_store, one_symbol, one_session, repeats)


if __name__ == "__main__":
    main(ingest, query, imports)
