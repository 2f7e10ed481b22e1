"""Why a provider response is not data. The class says what the caller should do about it.

Every message reads "<provider> <symbol>: <detail>" and never carries an API key: details
quoted from a provider body or URL go through `redact` first.
"""

import json
import re

_KEY_PATTERN = re.compile(r"(?i)(api_?key[\"']?\s*[=:]\s*[\"']?)[^&\s\"',}]+")
_MAX_DETAIL = 300


def redact(text: str) -> str:
    """Mask anything that looks like `apikey=…` / `apiKey: …`, and cap the length."""
    text = _KEY_PATTERN.sub(r"\1***", text)
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"


class ProviderError(Exception):
    """Base class: the response is not usable data. `retryable` tells the caller whether to try again."""

    retryable = False
    # The provider answered, with no bar in the window (an empty series, an archive that starts
    # later): the symbol may not be listed yet. raw_prices asks the lake whether it traded before.
    no_bars = False

    def __init__(self, provider: str, symbol: str, detail: str):
        self.provider, self.symbol, self.detail = provider, symbol, redact(detail)
        super().__init__(f"{provider} {symbol}: {self.detail}")


class ThrottledError(ProviderError):
    """Rate limited (Alpha Vantage `Note`/rate-limit `Information`, HTTP 429): retry later."""

    retryable = True


class BadSymbolError(ProviderError):
    """Invalid call or unknown symbol (Alpha Vantage `Error Message`): permanent."""


class BadKeyError(ProviderError):
    """API key missing or invalid (Polygon `API Key was not provided`, HTTP 401/403): permanent."""


class PremiumEndpointError(ProviderError):
    """The plan or the demo key does not cover this request (Polygon `NOT_AUTHORIZED`): permanent."""


class MalformedPayloadError(ProviderError):
    """Truncated or unparseable body, or a shape we do not know: permanent for this payload."""


def json_object(provider: str, symbol: str, body: bytes) -> dict:
    """A payload's JSON object, or a MalformedPayloadError naming provider and symbol."""
    try:
        doc = json.loads(body)
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError both
        raise MalformedPayloadError(provider, symbol, f"body is not valid JSON (truncated?): {err}") from err
    if not isinstance(doc, dict):
        raise MalformedPayloadError(provider, symbol, f"JSON body is a {type(doc).__name__}, not an object")
    return doc


class EmptyResultError(ProviderError):
    """Polygon `results` missing/null: intermittent for active symbols, so retry before concluding."""

    retryable = True
    no_bars = True


class MissingResultsError(ProviderError):
    """A reference answer (Polygon splits/dividends) without its `results` list: retried, then
    the symbol fails, since a window whose actions are unknown cannot be adjusted."""

    retryable = True
