"""The UI steps of docs/operations.md, followed in a real browser: `make dev`'s command
(`dagster dev -w workspace.yaml`) serves a throwaway STOCK_ASSETS_HOME, and headless chromium
clicks the buttons and links by the names the doc gives, in its order, and sees the dialog and
pages the doc describes; a small backfill is launched and shows under Runs. The doc's names are
read from the doc itself, so a renamed button fails here until the doc says the new name.

Nothing leaves the machine: the browser may reach the server only (see browser.py)."""

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from stock_assets.partitions import sessions_between
from stock_assets_tests.browser import Chromium, chromium_binary
from stock_assets_tests.test_cli import DAGSTER, ROOT, environment

pytestmark = pytest.mark.slow

OPERATIONS = ROOT / "docs" / "operations.md"
READY_SECONDS = 90
WAIT_MS = 15_000  # any one step of the UI
START = "2015-01-02"  # STOCK_ASSETS_START's default: the server's environment has no STOCK_ASSETS_* variable
QUERY = """{ assetNodes { assetKey { path } }
  workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError { __typename ... on PythonError { message } } } } } }"""


def section(heading: str) -> str:
    """The text of one `## heading` section of docs/operations.md, lines joined."""
    text = OPERATIONS.read_text()
    start = text.index(f"## {heading}\n")
    end = text.find("\n## ", start + 1)
    return " ".join(text[start : end if end > 0 else None].split())


def named(text: str) -> list[str]:
    """The UI names a sentence gives in italics, *like this*, in order."""
    return re.findall(r"(?<![*\w])\*([^*\s][^*]*?)\*(?![*\w])", text)


def log_tail(path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop(server: subprocess.Popen) -> None:
    """The whole process group (webserver, daemon, code servers, any run): politely, then for sure."""
    for sig, grace in ((signal.SIGINT, 12), (signal.SIGKILL, 10)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            return
        try:
            server.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
        try:  # the parent is gone; children that outlived it still get the next signal
            os.killpg(server.pid, 0)
        except ProcessLookupError:
            return


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """`make dev` on a fresh home: the UI's address once it serves the code location, and the assets' names."""
    chromium_binary()  # skip (or, under CI, fail) before starting a server no browser will see
    home = tmp_path_factory.mktemp("ui_home")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = home / "dagster_dev.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [str(DAGSTER), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=ROOT, env=environment(home), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline, assets = time.monotonic() + READY_SECONDS, None
        while assets is None:
            if server.poll() is not None:
                pytest.fail(f"dagster dev exited with {server.returncode}:\n{log_tail(log)}")
            if time.monotonic() > deadline:
                pytest.fail(f"dagster dev did not serve the code location within {READY_SECONDS} s:\n{log_tail(log)}")
            try:
                request = urllib.request.Request(f"{base}/graphql", json.dumps({"query": QUERY}).encode(), {"Content-Type": "application/json"})
                data = json.load(urllib.request.urlopen(request, timeout=5))["data"]
                entries = data["workspaceOrError"]["locationEntries"]
                loaded = [e["locationOrLoadError"] or {} for e in entries]
                errors = [e["message"] for e in loaded if e.get("__typename") == "PythonError"]
                if errors:
                    pytest.fail(f"the code location did not load in dagster dev: {errors[0]}")
                if [e["name"] for e in entries] == ["stock_assets"] and data["assetNodes"]:
                    assets = sorted(n["assetKey"]["path"][-1] for n in data["assetNodes"])
            except (OSError, KeyError, TypeError, ValueError):
                pass
            if assets is None:
                time.sleep(0.5)
        yield base, assets
    finally:
        stop(server)


@pytest.fixture
def page(ui, request, tmp_path):
    """A fresh browser on the UI, allowed to reach only the UI's own server; checked for errors
    after the test, and its last screen kept as a test artifact."""
    from playwright.sync_api import expect

    base, _ = ui
    browser = Chromium(chromium_binary(), allow=(base,))
    page = browser.page
    page.set_default_timeout(WAIT_MS)
    expect.set_options(timeout=WAIT_MS)
    # A fresh instance greets its first visitor with a newsletter form: a person skips it.
    # It can come up while the page still shows a loading overlay, which would take the click: force it.
    page.add_locator_handler(page.get_by_text("Join the Dagster community"), lambda _: page.get_by_role("button", name="Skip").click(force=True))
    try:
        yield page
        artifacts = Path(os.environ.get("STOCK_ASSETS_TEST_ARTIFACTS") or tmp_path)
        artifacts.mkdir(parents=True, exist_ok=True)
        shot = artifacts / f"ui_{request.node.name}.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"last UI screen: {shot}")
        assert browser.exceptions == [], f"the UI threw: {browser.exceptions}"
        assert browser.blocked == [], f"the UI reached outside its server: {browser.blocked}"
    finally:
        browser.close()


def nav(page, name: str):
    """A link of the main navigation by its visible name (its icon's name comes first in the accessible one)."""
    return page.get_by_role("link", name=re.compile(rf"(^|\s){re.escape(name)}$"))


def test_materialize_and_backfill_a_range_from_the_ui_as_operations_md_says(ui, page):
    from playwright.sync_api import expect

    base, assets = ui
    doc = section("Materialize and backfill a range")
    walkthrough = doc[doc.index("From the UI") :].split(". ")[0]
    steps = named(walkthrough)
    assert steps[:6] == ["Catalog", "Materialize selected", "Show all partitions", "Launch backfill", "Runs", "Backfills"], walkthrough
    example = re.search(r"`\[(\d{4}-\d\d-\d\d)\.\.\.(\d{4}-\d\d-\d\d)\]`", walkthrough)
    assert example, f"the walkthrough gives no range to type: {walkthrough}"
    assert "press Enter" in walkthrough  # typing alone selects nothing
    assert "make dev" in walkthrough and "http://127.0.0.1:3000" in walkthrough  # make dev's default port; here another
    assert "$(BIN)/dagster dev -w workspace.yaml" in (ROOT / "Makefile").read_text()  # what this test starts
    assert "`make dev`" in (ROOT / "README.md").read_text()  # the README sends a person to it

    page.goto(base)
    nav(page, "Catalog").click()
    expect(page).to_have_url(re.compile(r"/assets$"))
    rows = page.get_by_test_id(re.compile(r"^checkbox-"))
    expect(rows, "the Catalog does not list every asset").to_have_count(len(assets))
    # "tick the box at the top of the asset list": the header checkbox, the first one on the page
    page.get_by_role("checkbox").first.locator("xpath=..").click()
    for i in range(len(assets)):
        expect(rows.nth(i)).to_be_checked()
    page.get_by_role("button", name=f"Materialize selected ({len(assets)})").click()

    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(f"Launch runs to materialize {len(assets)} assets")
    expect(dialog).to_contain_text("Partition selection")
    dialog.get_by_role("button", name="Show all partitions").click()
    first, last = example.groups()
    typed = dialog.get_by_role("textbox")
    expect(typed, "no partition box in the launch dialog").to_have_count(1)
    typed.fill(f"[{first}...{last}]")  # the doc's example, as written, then Enter
    typed.press("Enter")
    expect(dialog).to_contain_text(f"{len(sessions_between(START, first, last))} partitions")
    # A short range of the same form is what is launched here: the doc's whole year would do the same, slower.
    small = sessions_between(START, first, last)[:3]
    typed.fill(f"[{small[0]}...{small[-1]}]")
    typed.press("Enter")
    expect(dialog).to_contain_text("3 partitions")
    dialog.get_by_role("button", name="Launch backfill").click()
    created = page.get_by_text(re.compile(r"^Created backfill \w+$"))
    expect(created, "launching did not say it created a backfill").to_be_visible()
    backfill = created.inner_text().split()[-1]

    nav(page, "Runs").click()
    tab = page.get_by_role("tab", name="Backfills")
    tab.click()
    expect(tab).to_have_attribute("aria-selected", "true")
    page.get_by_role("link", name=backfill).first.click()
    expect(page).to_have_url(re.compile(rf"/runs/b/{backfill}"))
    expect(page.get_by_text(f"{small[0]}...{small[-1]}")).to_be_visible()
    for asset in ("raw_prices", "redshift_table", "dashboard"):
        expect(page.get_by_role("link", name=asset).first).to_be_visible()


def test_materialize_all_from_lineage_opens_the_same_dialog(ui, page):
    from playwright.sync_api import expect

    base, assets = ui
    walkthrough = section("Materialize and backfill a range")
    assert "*Lineage* → *Materialize all…*" in walkthrough
    page.goto(base)
    nav(page, "Lineage").click()
    page.get_by_role("button", name="Materialize all…").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(f"Launch runs to materialize {len(assets)} assets")
    expect(dialog.get_by_role("button", name="Launch backfill")).to_be_visible()
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)


def test_the_automation_page_lists_the_schedule_and_sensors_switched_on(ui, page):
    from playwright.sync_api import expect

    base, _ = ui
    unattended = section("Running it unattended")
    assert "*Automation*" in unattended
    first_cells = re.findall(r"^\| ([^|]+) \|", OPERATIONS.read_text(), re.MULTILINE)
    table = [n for cell in first_cells for n in re.findall(r"`(\w+_(?:schedule|sensor))`", cell)]
    assert len(table) == 8, table  # the daily and maintenance schedules, live_session_schedule, five sensors
    page.goto(base)
    nav(page, "Automation").click()
    for name in table:
        row = page.locator("[data-index]").filter(has=page.get_by_text(name, exact=True))
        expect(row, f"{name} is not on the Automation page").to_have_count(1)
        expect(row.get_by_role("checkbox").last, f"{name} is not switched on").to_be_checked()


def test_a_backfill_scoped_to_symbols_from_the_ui_as_operations_md_says(ui, page):
    """docs/operations.md's steps for the tag `stock_assets/symbols` on a backfill: its runs fetch
    and rewrite only those symbols' rows."""
    from playwright.sync_api import expect

    base, assets = ui
    doc = section("Materialize and backfill a range")
    steps = doc[doc.index("From the UI, the same tag") :]
    assert named(steps)[:8] == ["Catalog", "Materialize selected", "Show all partitions", "Tags", "Add tags", "Apply", "Launch backfill", "Runs"], steps
    assert "key `stock_assets/symbols`, value `NVDA`" in steps

    page.goto(base)
    nav(page, "Catalog").click()
    rows = page.get_by_test_id(re.compile(r"^checkbox-"))
    expect(rows, "the Catalog does not list every asset").to_have_count(len(assets))  # ticked before: only those listed
    page.get_by_role("checkbox").first.locator("xpath=..").click()
    for i in range(len(assets)):
        expect(rows.nth(i)).to_be_checked()
    page.get_by_role("button", name=f"Materialize selected ({len(assets)})").click()
    dialog = page.get_by_role("dialog").filter(has_text="Launch runs to materialize")
    dialog.get_by_role("button", name="Show all partitions").click()
    small = sessions_between(START, "2024-03-04", "2024-03-06")
    typed = dialog.get_by_role("textbox")
    typed.fill(f"[{small[0]}...{small[-1]}]")
    typed.press("Enter")
    expect(dialog).to_contain_text("3 partitions")
    dialog.get_by_text("Tags", exact=True).click()  # a section of the dialog, closed at first
    expect(dialog).to_contain_text("Tags will be applied to all backfill runs")
    dialog.get_by_role("button", name="Add tags", exact=True).click()
    tags = page.get_by_role("dialog").filter(has_text="Add tags to run")
    tags.get_by_placeholder("Tag Key").last.fill("stock_assets/symbols")
    tags.get_by_placeholder("Tag Value").last.fill("NVDA")
    tags.get_by_role("button", name="Apply").click()
    expect(tags).to_have_count(0)
    expect(dialog).to_contain_text("stock_assets/symbols: NVDA")
    dialog.get_by_role("button", name="Launch backfill").click()
    created = page.get_by_text(re.compile(r"^Created backfill \w+$"))
    expect(created).to_be_visible()
    backfill = created.inner_text().split()[-1]

    query = "query($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { tags { key value } } } }"
    body = json.dumps({"query": query, "variables": {"id": backfill}}).encode()
    request = urllib.request.Request(f"{base}/graphql", body, {"Content-Type": "application/json"})
    found = json.load(urllib.request.urlopen(request, timeout=10))["data"]["partitionBackfillOrError"]["tags"]
    assert {"key": "stock_assets/symbols", "value": "NVDA"} in found  # every run of the backfill carries it
