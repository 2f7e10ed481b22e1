"""qlib (pyqlib): the input converted to qlib's binary format, as `scripts/dump_bin.py dump_all
--include_fields open,high,low,close,volume,dividend,split` makes it (calendars/day.txt,
instruments/all.txt, features/<symbol>/<field>.day.bin: little-endian float32, the first value
the calendar index of the symbol's first day); queried with `qlib.data.D.features`. Runs in the
peers' environment.

dump_bin.py lives in qlib's repository, not in the pyqlib wheel (and PyPI has no sdist of
pyqlib), so it is not installable here. This script does dump_bin's steps with qlib's own storage
classes where they work (qlib.data.storage.file_storage: FileCalendarStorage.extend, and
FileFeatureStorage.write, which writes the format dump_bin writes) and the instruments file as
dump_bin writes it (FileInstrumentStorage's writer is broken in 0.9.7), in one process: dump_bin
runs its per-symbol step on a process pool.
"""

from benchmarks.peers.child import main, time_queries

FIELDS = ["open", "high", "low", "close", "volume", "dividend", "split"]
QUERY = ["$open", "$high", "$low", "$close", "$volume"]


def imports() -> None:
    import warnings

    warnings.filterwarnings("ignore")
    import pandas  # noqa: F401
    import qlib.data
    import qlib.data.storage.file_storage  # noqa: F401


def ingest(input: str, store: str, **_) -> dict:
    import logging
    from pathlib import Path

    import pandas as pd
    import qlib
    from qlib.constant import REG_US
    from qlib.data.storage.file_storage import FileCalendarStorage, FileFeatureStorage

    uri = {"day": store}
    for folder in ("calendars", "instruments", "features"):
        Path(store, folder).mkdir(parents=True, exist_ok=True)
    qlib.init(provider_uri=uri, region=REG_US, logging_level=logging.WARNING, kernels=1)  # the storages read qlib's config
    frames = {}
    for path in sorted(Path(input, "daily").glob("*.csv")):  # dump_bin: pd.read_csv per file, the symbol from the name
        frame = pd.read_csv(path, parse_dates=["date"])
        frames[path.stem.upper()] = frame.drop_duplicates("date").set_index("date").sort_index()
    calendar = sorted(set().union(*(frame.index for frame in frames.values())))
    FileCalendarStorage("day", future=False, provider_uri=uri).extend([d.strftime("%Y-%m-%d") for d in calendar])
    # As dump_bin writes it: FileInstrumentStorage's writer (0.9.7) puts the symbol in the last column, which
    # its own reader then takes for a date.
    spans = [(s, f.index[0].strftime("%Y-%m-%d"), f.index[-1].strftime("%Y-%m-%d")) for s, f in frames.items()]
    pd.DataFrame(spans).to_csv(Path(store, "instruments", "all.txt"), sep="\t", header=False, index=False)
    position = {d: i for i, d in enumerate(calendar)}
    for symbol, frame in frames.items():
        first = position[frame.index[0]]
        frame = frame.reindex(calendar[first:position[frame.index[-1]] + 1])  # dump_bin: the symbol's span of the calendar
        Path(store, "features", symbol.lower()).mkdir(exist_ok=True)
        for field in FIELDS:
            FileFeatureStorage(symbol, field, "day", provider_uri=uri).write(frame[field].to_numpy(), index=first)
    return {"symbols": len(frames), "calendar": len(calendar)}


def query(store: str, symbol: str, session: str, first: str, last: str, repeats: int, **_) -> dict:
    import logging

    import qlib
    from qlib.constant import REG_US

    def open_store():
        qlib.init(provider_uri=store, region=REG_US, logging_level=logging.WARNING, kernels=1)
        from qlib.data import D

        return D

    def one_symbol(D):
        frame = D.features([symbol], QUERY, start_time=first, end_time=last, freq="day")
        return len(frame), frame["$close"].sum()

    def one_session(D):
        frame = D.features(D.instruments("all"), QUERY, start_time=session, end_time=session, freq="day")
        return len(frame), frame["$close"].sum()

    return time_queries(open_store, one_symbol, one_session, repeats)


if __name__ == "__main__":
    main(ingest, query, imports)
