"""The seed-style script: per-symbol CSV to one Parquet file per symbol with pandas
(`read_csv` + `to_parquet`, pyarrow's defaults: snappy), as the project's seed did; queried with
`pd.read_parquet` (one symbol: its file; all symbols, one session: the folder with a filter on
the date). Runs in the peers' environment."""

from benchmarks.peers.child import main, time_queries

COLUMNS = ["open", "high", "low", "close", "volume"]


def imports() -> None:
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401


def ingest(input: str, store: str, **_) -> dict:
    from pathlib import Path

    import pandas as pd

    Path(store).mkdir(parents=True, exist_ok=True)
    paths = sorted(Path(input, "daily").glob("*.csv"))
    for path in paths:
        frame = pd.read_csv(path, parse_dates=["date"])
        frame.insert(0, "symbol", path.stem)
        frame.to_parquet(Path(store, f"{path.stem}.parquet"), index=False)
    return {"symbols": len(paths)}


def query(store: str, symbol: str, session: str, repeats: int, **_) -> dict:
    from pathlib import Path

    import pandas as pd

    day = pd.Timestamp(session)

    def open_store():
        return store

    def one_symbol(folder):
        frame = pd.read_parquet(Path(folder, f"{symbol}.parquet"), columns=["date", *COLUMNS])
        return len(frame), frame["close"].sum()

    def one_session(folder):
        frame = pd.read_parquet(folder, columns=["symbol", "date", *COLUMNS], filters=[("date", "==", day)])
        return len(frame), frame["close"].sum()

    return time_queries(open_store, one_symbol, one_session, repeats)


if __name__ == "__main__":
    main(ingest, query, imports)
