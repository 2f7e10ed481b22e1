"""The provider resource: which market-data source a run fetches from, and how politely."""

from urllib.parse import urlsplit

import dagster as dg

from stock_assets.lake.storage import LakeStorage
from stock_assets.providers.alphavantage import AlphaVantageProvider
from stock_assets.providers.base import Provider
from stock_assets.providers.budget import DailyBudget
from stock_assets.providers.csvdir import CsvDirProvider
from stock_assets.providers.http import HttpClient, shared_limiter
from stock_assets.providers.polygon import PolygonProvider
from stock_assets.providers.synthetic import SyntheticProvider
from stock_assets.settings import Settings


class ProviderResource(dg.ConfigurableResource):
    """STOCK_ASSETS_PROVIDER and its settings; `api_key` arrives as an EnvVar, never as text."""

    name: str = "synthetic"
    symbols: list[str]
    interval: str = "1d"
    synthetic_faults: list[str] = []
    api_key: str | None = None
    base_url: str = ""
    requests_per_minute: float = 5
    requests_per_day: int | None = None
    retries: int = 4
    backoff_seconds: float = 2.0
    adjusted: bool = False
    datatype: str = "json"
    # STOCK_ASSETS_PROVIDER_BUDGET_URL: where requests_per_day is counted, for every run and
    # process on the instance; empty: in this process only.
    budget_url: str = ""
    csvdir_url: str = ""  # STOCK_ASSETS_CSVDIR_URL: the folder or s3://bucket/prefix of <SYMBOL>.csv files

    def budget(self) -> DailyBudget | None:
        """The daily budget this provider's requests are counted in, or None without a daily limit."""
        if self.name in ("synthetic", "csvdir") or self.requests_per_day is None:
            return None
        return self._limiter().budget

    def _limiter(self):
        return shared_limiter(self.name, self.requests_per_minute, self.requests_per_day, self.budget_url)

    def client(self) -> Provider:
        if self.name == "synthetic":
            return SyntheticProvider(faults=tuple(self.synthetic_faults))
        if self.name == "csvdir":
            if not self.csvdir_url:
                raise ValueError("csvdir: set STOCK_ASSETS_CSVDIR_URL to the folder or s3://bucket/prefix of the <SYMBOL>.csv files")
            return CsvDirProvider(LakeStorage(self.csvdir_url))
        if not self.api_key:
            raise ValueError(f"{self.name}: set {self.name.upper()}_API_KEY in the environment")
        http = HttpClient(
            provider=self.name,
            limiter=self._limiter(),
            secret=self.api_key,
            retries=self.retries,
            backoff_seconds=self.backoff_seconds,
        )
        if self.name == "alphavantage":
            return AlphaVantageProvider(http, self.api_key, self.base_url, self.adjusted, self.datatype)
        http.headers = {"Authorization": f"Bearer {self.api_key}"}
        return PolygonProvider(http, self.base_url)


def provider_resource(settings: Settings) -> ProviderResource:
    key_var = {"alphavantage": "ALPHAVANTAGE_API_KEY", "polygon": "POLYGON_API_KEY"}.get(settings.provider)
    return ProviderResource(
        name=settings.provider,
        symbols=list(settings.symbols),
        interval=settings.interval,
        synthetic_faults=list(settings.synthetic_faults),
        api_key=dg.EnvVar(key_var) if key_var else None,
        base_url=settings.provider_base_url,
        requests_per_minute=settings.requests_per_minute or 5,
        requests_per_day=settings.requests_per_day,
        retries=settings.http_retries,
        backoff_seconds=settings.http_backoff_seconds,
        adjusted=settings.alphavantage_adjusted,
        datatype=settings.alphavantage_datatype,
        csvdir_url=settings.csvdir_url,
        # A URL with a password came from the environment (the default never has one): read it
        # there at run time, so that it never appears in the resource's config in the UI.
        budget_url=dg.EnvVar("STOCK_ASSETS_PROVIDER_BUDGET_URL") if urlsplit(settings.provider_budget_url).password else settings.provider_budget_url,
    )
