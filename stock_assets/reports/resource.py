"""Where reports are written: a folder on the machine that runs the asset."""

from pathlib import Path

import dagster as dg


class ReportsResource(dg.ConfigurableResource):
    """`$STOCK_ASSETS_HOME/reports` unless bound otherwise (stock_assets/definitions.py)."""

    directory: str

    def path(self, name: str) -> Path:
        return Path(self.directory) / name
