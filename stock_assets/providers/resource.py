"""The provider resource: which market-data source the run fetches from (STOCK_ASSETS_PROVIDER)."""

import dagster as dg

from stock_assets.providers.base import Provider
from stock_assets.providers.synthetic import SyntheticProvider


def provider_named(name: str, faults: tuple[str, ...] = ()) -> Provider:
    if name == "synthetic":
        return SyntheticProvider(faults=faults)
    raise ValueError(f"unknown provider {name!r}: STOCK_ASSETS_PROVIDER must be 'synthetic'")


class ProviderResource(dg.ConfigurableResource):
    name: str = "synthetic"
    symbols: list[str]
    interval: str = "1d"
    synthetic_faults: list[str] = []

    def client(self) -> Provider:
        return provider_named(self.name, tuple(self.synthetic_faults))
