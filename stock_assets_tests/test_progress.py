"""What a backfill says as it goes (stock_assets/progress.py): after every step that ends, the time
left; from the instance's last run over a session range, its steps scaled to this run's sessions
and to this run's pace, else from this run's own steps so far. The CLI in a subprocess on a fresh
home; the estimate's arithmetic on given figures; the history read from a real SQLite instance."""

import re
import subprocess
import sys

import pytest

from stock_assets.progress import StepProgress, backfill_left, expected_steps
from stock_assets_tests.test_cli import ROOT, environment
from stock_assets_tests.test_instance_storage import WINDOW, backfill, instance_in


def progress(expected=None, done=None, steps=0, after=None) -> StepProgress:
    said = StepProgress(None, 0, say=lambda _: None, expected=expected, after=after)
    said.done, said.steps = dict(done or {}), steps
    return said


def test_the_time_left_is_the_steps_to_go_at_this_run_s_pace():
    expected = {"a": 10.0, "b": 20.0, "c": 30.0}
    assert progress(expected, {"a": 20.0}).left({}, 100.0) == pytest.approx(2 * (20 + 30))  # twice as slow as the history
    assert progress(expected, {"a": 20.0}).left({"b": 95.0}, 100.0) == pytest.approx(2 * 20 - 5 + 2 * 30)  # b running for 5 s
    assert progress(expected, {"a": 20.0}, after=50.0).left({}, 100.0) == pytest.approx(150)  # and the runs after this one
    assert progress(None, {"a": 3.0, "b": 5.0}, steps=4).left({}, 0.0) == pytest.approx(8)  # no history: the mean step so far
    assert progress(None, {}, steps=4).left({}, 0.0) is None  # nothing to go by yet
    assert backfill_left([(10, 30.0)], {}, 5, 20) == pytest.approx((75.0, 60.0))  # 3 s a session, from the runs done
    assert backfill_left([], {"a": 10.0}, 5, 0) == (10.0, 0.0) and backfill_left([], {}, 5, 5) == (None, None)


def test_the_history_is_the_last_ranged_run_scaled_by_sessions(tmp_path):
    with instance_in(tmp_path / "home", ours=True) as instance:
        assert expected_steps(instance, 42) == {}
        run_id = backfill(instance, WINDOW[0], WINDOW[-1])
        took = {s.step_key: s.end_time - s.start_time for s in instance.get_run_step_stats(run_id)}
        assert expected_steps(instance, 2 * len(WINDOW)) == pytest.approx({step: 2 * seconds for step, seconds in took.items()})


@pytest.mark.slow
def test_a_cli_backfill_says_the_time_left_after_every_step(tmp_path):
    env = environment(tmp_path, STOCK_ASSETS_SYMBOLS="IBM,MSFT")
    for first, last in (("2024-01-02", "2024-01-12"), ("2024-01-16", "2024-01-26")):  # the second with the first as history
        done = subprocess.run([sys.executable, "-m", "stock_assets.cli", "backfill", "--start", first, "--end", last],
                              cwd=ROOT, env=env, check=True, capture_output=True, text=True)  # fmt: skip
        lines = done.stdout.splitlines()
        ended = [i for i, line in enumerate(lines) if re.fullmatch(r"  \S+\s+done.*, \d+\.\d s", line)]
        said = [re.fullmatch(r"  time left\s+~\d+ s \((\d+) of (\d+) steps done\)", lines[i + 1]) for i in ended]  # one run: all that is left
        assert ended and all(said), lines
        assert [int(m[1]) for m in said] == list(range(1, len(ended) + 1)) and {int(m[2]) for m in said} == {len(ended)}
