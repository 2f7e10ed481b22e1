"""The core reads without Dagster: calendar, settings, providers, lake, warehouse engines,
transforms and reports import in a process where `dagster` never loads. Only the resources and
IO managers that wire them into the code location (`*/resource.py`, `*/io_manager.py`) and
`defs/` may import it."""

import pkgutil
import subprocess
import sys

import stock_assets
from stock_assets_tests.test_cli import ROOT

WIRING = {"resource", "io_manager"}


def test_the_plain_modules_import_without_dagster():
    modules = ["stock_assets.calendar", "stock_assets.settings", "stock_assets.schema", "stock_assets.seed_csv", "stock_assets.preflight"]
    for package in ("transforms", "providers", "lake", "warehouse", "reports"):
        path = [f"{stock_assets.__path__[0]}/{package}"]
        modules += [f"stock_assets.{package}.{m.name}" for m in pkgutil.iter_modules(path) if m.name not in WIRING]
    probe = "import sys\n" + "".join(f"import {m}\n" for m in modules) + "print(sorted(m for m in sys.modules if m.split('.')[0] == 'dagster'))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert len(modules) > 30 and done.stdout.strip() == "[]"


def test_dependencies_point_one_way_providers_never_load_the_lake():
    """definitions -> defs -> plain modules; the lake stores what providers return, so providers
    (and the formats they share with it) must not import the lake."""
    path = [f"{stock_assets.__path__[0]}/providers"]
    modules = [f"stock_assets.providers.{m.name}" for m in pkgutil.iter_modules(path) if m.name not in WIRING]
    probe = "import sys\n" + "".join(f"import {m}\n" for m in modules) + "print(sorted(m for m in sys.modules if m.startswith(('stock_assets.lake', 'stock_assets.defs', 'stock_assets.definitions'))))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert len(modules) > 8 and done.stdout.strip() == "[]"
