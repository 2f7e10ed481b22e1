"""A write that failed for lack of space, said as such: what was being written, where, and that
the disk must be freed before the window is run again (an immediate retry fails the same way).

Python and pyarrow say so with an errno; delta-rs and DuckDB only in their message text.
"""

import contextlib
import errno
import os
from collections.abc import Iterator

NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class DiskFullError(RuntimeError):
    """A lake table, lake file or warehouse could not be written: its disk (or quota) is full."""

    def __init__(self, what: str, where: str, reason: str):
        self.what, self.where, self.reason = what, where, reason
        super().__init__(f"{what} {where} could not be written: the disk is full ({reason}). "
                         "Free space on it, then run the window again")  # fmt: skip


def no_space(err: BaseException) -> int | None:
    """The errno of a write that failed for lack of space (its error or a cause), else None."""
    while err is not None:
        if isinstance(err, OSError) and err.errno in NO_SPACE:
            return err.errno
        text = str(err)
        for code in NO_SPACE:
            if f"os error {code})" in text or os.strerror(code) in text:
                return code
        err = err.__cause__
    return None


@contextlib.contextmanager
def writing(what: str, where: str) -> Iterator[None]:
    """Raise a write inside that failed for lack of space as DiskFullError naming `what` `where`."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as err:
        code = no_space(err)
        if code is None:
            raise
        raise DiskFullError(what, where, f"[errno {code}] {os.strerror(code)}") from err
