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


def test_off_a_terminal_each_logged_step_is_one_line_and_nothing_else(capsys):
    """In a log file (stdout/stderr not a TTY) there is no bar to redraw: a header, then one line per logged step."""
    progress = StepProgress(4, "GRPO")  # capsys: not a terminal
    for step in range(1, 5):
        progress.update(step, {"reward": step / 4, "step_time": 1.0}, log_row=step % 2 == 0)
    progress.close()
    captured = capsys.readouterr()
    assert "\r" not in captured.out + captured.err and "GRPO" not in captured.out + captured.err
    lines = captured.out.splitlines()
    assert [ln.split()[0] for ln in lines] == ["step", "2", "4"], lines


def test_setup_console_info_plain_on_stdout_warnings_on_stderr_bars_off(capsys, monkeypatch):
    import logging
    import os

    from grpo.common.console import setup_console

    for name in ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY"):
        monkeypatch.setenv(name, "")  # recorded, so that what setup_console sets is undone after the test
        monkeypatch.delenv(name)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_console(verbose=False)
        logging.getLogger("grpo.cli.pipeline").info("hardware: 2 cores")
        logging.getLogger("grpo.training.sft").warning("careful")
        logging.getLogger("transformers.modeling_utils").info("library chatter")
        captured = capsys.readouterr()
        assert captured.out == "hardware: 2 cores\n"
        assert captured.err == "warning: grpo.training.sft: careful\n"
        assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1" == os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"]
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
        for name in ("grpo", "rewards", "recipes", "embedded_models", "bitsandbytes"):
            logging.getLogger(name).setLevel(logging.NOTSET)


def test_verbose_leaves_progress_bars_on(monkeypatch):
    import logging
    import os

    from grpo.common.console import setup_console

    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "")
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS")
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_console(verbose=True)
        assert "HF_HUB_DISABLE_PROGRESS_BARS" not in os.environ
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
        for name in ("grpo", "rewards", "recipes", "embedded_models", "bitsandbytes"):
            logging.getLogger(name).setLevel(logging.NOTSET)


def test_quiet_progress_replaces_the_raw_dict_printer_even_with_disable_tqdm(capsys):
    """transformers prints every log as a raw dict when disable_tqdm is on (PrinterCallback): swapped for table rows."""
    from types import SimpleNamespace

    from transformers import PrinterCallback, ProgressCallback

    from grpo.common.console import quiet_progress

    class FakeTrainer:
        def __init__(self, disable_tqdm):
            self.args = SimpleNamespace(disable_tqdm=disable_tqdm)
            self.callbacks = [PrinterCallback if disable_tqdm else ProgressCallback]

        def remove_callback(self, cls):
            self.callbacks = [c for c in self.callbacks if c is not cls]

        def add_callback(self, cb):
            self.callbacks.append(cb)

    for disable_tqdm in (True, False):
        trainer = FakeTrainer(disable_tqdm)
        quiet_progress(trainer, "warm-start SFT")
        assert PrinterCallback not in trainer.callbacks and ProgressCallback not in trainer.callbacks
        (progress,) = trainer.callbacks
        state = SimpleNamespace(is_world_process_zero=True, max_steps=2, global_step=0)
        progress.on_train_begin(None, state, None)
        state.global_step = 1
        progress.on_log(None, state, None, logs={"loss": 1.387, "mean_token_accuracy": 0.68, "epoch": 1.0})
        progress.on_train_end(None, state, None)
    out = capsys.readouterr().out
    assert "{'" not in out and [ln.split()[:2] for ln in out.splitlines()] == [["step", "loss"], ["1", "1.39"]] * 2
