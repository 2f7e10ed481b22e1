"""The provider resource: which market-data source a run fetches from, and how politely.

A plain object built from Settings (no Dagster here): the provider's settings are declared
once, in Settings, and the API key is read from the environment when a client is made, so
it never appears in a resource's config in the UI."""

import os
from dataclasses import dataclass

from stock_assets.lake.storage import LakeStorage
from stock_assets.providers.alphavantage import AlphaVantageProvider
from stock_assets.providers.base import Provider
from stock_assets.providers.budget import DailyBudget
from stock_assets.providers.csvdir import CsvDirProvider
from stock_assets.providers.http import HttpClient, shared_limiter
from stock_assets.providers.polygon import PolygonProvider
from stock_assets.providers.synthetic import SyntheticProvider
from stock_assets.settings import Settings

KEY_VARIABLES = {"alphavantage": "ALPHAVANTAGE_API_KEY", "polygon": "POLYGON_API_KEY"}


class MissingSettingError(ValueError):
    """A setting the chosen provider needs is not set: no retry can mend it."""


@dataclass(frozen=True)
class ProviderResource:
    """STOCK_ASSETS_PROVIDER and its settings."""

    settings: Settings

    @property
    def name(self) -> str:
        return self.settings.provider

    @property
    def symbols(self) -> tuple[str, ...]:
        return self.settings.symbols

    @property
    def interval(self) -> str:
        return self.settings.interval

    def budget(self) -> DailyBudget | None:
        """The daily budget this provider's requests are counted in, or None without a daily limit."""
        if self.name in ("synthetic", "csvdir") or self.settings.requests_per_day is None:
            return None
        return self._limiter().budget

    def _limiter(self):
        s = self.settings
        return shared_limiter(self.name, s.requests_per_minute or 5, s.requests_per_day, s.provider_budget_url)

    def client(self) -> Provider:
        s = self.settings
        if self.name == "synthetic":
            return SyntheticProvider(faults=s.synthetic_faults)
        if self.name == "csvdir":
            if not s.csvdir_url:
                raise ValueError("csvdir: set STOCK_ASSETS_CSVDIR_URL to the folder or s3://bucket/prefix of the <SYMBOL>.csv files")
            return CsvDirProvider(LakeStorage(s.csvdir_url))
        key_variable = KEY_VARIABLES[self.name]
        api_key = os.environ.get(key_variable)
        if not api_key:
            raise MissingSettingError(f"{self.name}: set {key_variable} in the environment")
        http = HttpClient(
            provider=self.name,
            limiter=self._limiter(),
            secret=api_key,
            retries=s.http_retries,
            backoff_seconds=s.http_backoff_seconds,
        )
        if self.name == "alphavantage":
            return AlphaVantageProvider(http, api_key, s.provider_base_url, s.alphavantage_adjusted, s.alphavantage_datatype)
        http.headers = {"Authorization": f"Bearer {api_key}"}
        return PolygonProvider(http, s.provider_base_url)


def provider_resource(settings: Settings) -> ProviderResource:
    return ProviderResource(settings)
