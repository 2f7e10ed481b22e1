"""What a window's run says on each session's materialization stays bounded: Dagster copies a
window's metadata onto every session's event (and the instance keeps two copies of each), so a
window's list of corporate actions is named in full once, on its last session, and shortened on
the others; the published manifest still lists every action restated."""

import json

import pytest

from stock_assets.defs.actions import SHOWN
from stock_assets.lake.storage import LakeStorage
from stock_assets_tests.test_restatement import load, settings_for

pytestmark = pytest.mark.slow

SYMBOLS = tuple(f"SYM{i:04d}" for i in range(30))


def test_a_window_of_many_actions_names_them_all_once(tmp_path):
    settings = settings_for(tmp_path, provider="synthetic", symbols=SYMBOLS)
    result = load(settings, ("2023-01-03", "2023-03-31"))
    events = [e.step_materialization_data.materialization for e in result.get_asset_materialization_events()
              if e.asset_key.to_user_string() == "corporate_actions"]  # fmt: skip
    last = events[-1]
    assert last.partition == "2023-03-31" and len(events) == 62
    restated = last.metadata["restated"].value
    assert len(restated) > SHOWN and len(last.metadata["restatement"].value.split("; ")) == len(restated)
    assert len(last.metadata["actions_in_window"].value.split("; ")) > SHOWN
    for event in events[:-1]:
        assert event.metadata["restated"].value == restated[:SHOWN]
        said = event.metadata["restatement"].value.split("; ")
        assert len(said) == SHOWN + 1 and said[-1] == f"and {len(restated) - SHOWN} more (all of them on 2023-03-31)"
        assert event.metadata["actions_in_window"].value.endswith("more (all of them on 2023-03-31)")
    assert json.loads(LakeStorage(settings.lake_url).read_bytes("published/LATEST"))["restated"] == restated
