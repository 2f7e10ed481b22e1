"""Item 5, warehouse load: benchmarks/warehouse_load.py (our PostgreSQL loader against an ORM
bulk save of the same rows) in a child; reported as "not available" when that module is absent."""

import importlib.util
import os

from benchmarks.common import ROOT, SCALE, child_main, run_child

MODULE = ROOT / "benchmarks" / "warehouse_load.py"


def child(scale: float) -> dict:
    from benchmarks import warehouse_load

    if hasattr(warehouse_load, "run"):
        return warehouse_load.run(scale)
    return warehouse_load.main()  # prints too; the result line is the last one read


def run() -> dict:
    if not MODULE.exists() or importlib.util.find_spec("benchmarks.warehouse_load") is None:
        return {"error": f"not available: {MODULE.relative_to(ROOT)} does not exist yet"}
    return run_child("loader", {"scale": SCALE}, dict(os.environ))


if __name__ == "__main__":
    child_main(child)
