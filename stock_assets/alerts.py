"""Alerts to Slack (incoming webhook): what failed, where, and a link to the run.

The webhook URL is a secret: it comes from the environment as a dg.EnvVar and never appears
in a log line or an error. A delivery that fails is logged and reported, never raised.
"""

import logging
import re
from urllib.parse import urlsplit

import dagster as dg
import requests

log = logging.getLogger("stock_assets.alerts")


class AlertsResource(dg.ConfigurableResource):
    """STOCK_ASSETS_SLACK_WEBHOOK_URL (unset: alerts are logged only) and the UI's address for links."""

    slack_webhook_url: str | None = None
    ui_url: str = "http://127.0.0.1:3000"
    timeout_seconds: float = 10.0

    def run_link(self, run_id: str) -> str:
        return f"{self.ui_url.rstrip('/')}/runs/{run_id}"

    def send(self, text: str) -> bool:
        """Post `text`; True when Slack accepted it. Never raises."""
        if not self.slack_webhook_url:
            log.warning("alert (no STOCK_ASSETS_SLACK_WEBHOOK_URL set): %s", text)
            return False
        try:
            response = requests.post(self.slack_webhook_url, json={"text": text}, timeout=self.timeout_seconds)
            response.raise_for_status()
            return True
        except requests.RequestException as err:
            detail = f"{type(err).__name__}: {err}"
            for secret in (self.slack_webhook_url, urlsplit(self.slack_webhook_url).path):  # the path holds the token
                detail = detail.replace(secret, "<webhook>")
            log.error("alert delivery failed (%s); the alert was: %s", detail, text)
            return False


def partitions_of(tags: dict) -> str:
    """The sessions a run covered, from its tags."""
    if "dagster/partition" in tags:
        return tags["dagster/partition"]
    start, end = tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end")
    return f"{start}..{end}" if start else "unpartitioned"


CAUSE_LINES, CAUSE_CHARS = 4, 500
_QUALIFIED = re.compile(r"^(?:[A-Za-z_]\w*\.)+(?:Failure: |(?=[A-Z]\w*: ))")  # "dagster….Failure: ", "stock_assets.….Error: "
_PASSWORD = re.compile(r"(://[^/:@\s]+:)[^@\s]+@")
_SECRET_PARAM = re.compile(r"(?i)((?:api_?key|token|secret|password|signature)[\"']?\s*[=:]\s*[\"']?)[^&\s\"',}]+")


def cause_text(message: str) -> str:
    """An error's message as an alert quotes it: its first lines, up to a traceback or backtrace,
    passwords and keys masked, bounded."""
    lines = []
    for line in message.strip().splitlines():
        if line.startswith(("Traceback", "Stack backtrace", "stack backtrace", "  File ")):
            break
        lines.append(line)
    text = " ".join(lines[:CAUSE_LINES])
    text = _SECRET_PARAM.sub(r"\1***", _PASSWORD.sub(r"\1***@", _QUALIFIED.sub("", text)))
    return text if len(text) <= CAUSE_CHARS else text[: CAUSE_CHARS - 1] + "…"
