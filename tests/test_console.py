"""Tests for grpo/common/console.py: the terminal shows one bar and a compact table, not raw metric dicts.

Run: pytest tests/test_console.py
"""

from grpo.common.console import StepProgress


def test_table_has_a_header_once_and_a_row_per_logged_step(capsys):
    progress = StepProgress(3, "GRPO")
    metrics = {"reward": 0.25, "rewards/soft_format_reward/mean": 0.125, "completions/mean_length": 141.5,
               "step_time": 12.0, "clip_ratio/low_mean": 0.0, "entropy": 1.2, "grad_norm": 0.3}
    progress.update(1, metrics, log_row=True)
    progress.update(2, {"step_time": 11.0}, log_row=False)
    progress.update(3, {**metrics, "reward": 0.5}, log_row=True)
    progress.close()
    captured = capsys.readouterr()
    text = captured.out + captured.err
    lines = [ln for ln in text.replace("\r", "\n").splitlines() if ln.strip().startswith(("step", "1 ", "3 "))]
    header = [ln for ln in lines if ln.strip().startswith("step")]
    assert len(header) == 1 and "soft_format" in header[0] and "s/step" in header[0] and "entropy" not in header[0]
    rows = [ln.split() for ln in lines if not ln.strip().startswith("step")]
    assert [r[0] for r in rows] == ["1", "3"] and rows[0][1] == "0.25" and rows[1][1] == "0.5"
    assert "{'" not in text  # no raw dicts


def test_disabled_progress_prints_nothing(capsys):
    progress = StepProgress(2, disable=True)
    progress.update(1, {"reward": 1.0}, log_row=True)
    progress.close()
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
