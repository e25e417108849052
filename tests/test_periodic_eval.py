"""The periodic evaluation: when it runs, what it logs, where it shows (metrics.jsonl, console, curves.png).

Run: ``pytest tests/test_periodic_eval.py``.
"""

from __future__ import annotations

import pytest
from test_native import config, dataset, tiny_model, tiny_tokenizer, word_reward

from grpo.common.console import StepProgress
from grpo.common.errors import UserError
from grpo.evaluation.periodic_eval import PeriodicEval
from grpo.runs.run_dir import MetricsLogger, plot_curves

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_due_every_n_steps_and_at_the_last_step_once():
    pe = PeriodicEval(None, [{"prompt": "p", "answer": "1"}], every=3, max_new_tokens=4, batch_size=1)
    assert [s for s in range(0, 8) if pe.due(s, max_steps=7)] == [0, 3, 6, 7]
    pe.last_step = 6
    assert not pe.due(6, max_steps=7)  # already evaluated at this step (e.g. the TRL callback fires twice)
    with pytest.raises(ValueError, match="every 0 steps"):
        PeriodicEval(None, [{"prompt": "p"}], every=0, max_new_tokens=4, batch_size=1)
    with pytest.raises(ValueError, match="at least one problem"):
        PeriodicEval(None, [], every=2, max_new_tokens=4, batch_size=1)


def test_script_args_refuse_a_negative_interval():
    from grpo.config.script_args import ScriptArgs

    with pytest.raises(UserError, match="periodic_eval_steps=-1"):
        ScriptArgs(periodic_eval_steps=-1)
    with pytest.raises(UserError, match="periodic_eval_size=0"):
        ScriptArgs(periodic_eval_steps=5, periodic_eval_size=0)


def test_periodic_holdout_is_disjoint_from_training_rows():
    from grpo.cli.pipeline import periodic_holdout
    from grpo.config.script_args import ScriptArgs
    from grpo.data.loaders import load_gsm8k

    rows = load_gsm8k("gsm8k", split="train", limit=40)
    kept, held = periodic_holdout(rows, ScriptArgs(periodic_eval_steps=5, periodic_eval_size=8), seed=1)
    assert len(held) == 8 and len(kept) == 32
    assert not set(held["question"]) & set(kept["question"])
    assert periodic_holdout(rows, ScriptArgs(), seed=1) == (rows, None)  # off by default
    with pytest.raises(UserError, match="not enough to hold out periodic_eval_size=64 for the periodic evaluation"):
        periodic_holdout(rows, ScriptArgs(periodic_eval_steps=5), seed=1)


def test_eval_size_zero_skips_the_evaluation_with_an_eval_dataset_too():
    """eval_size 0 means no before/after evaluation (ScriptArgs' help), not the whole test split."""
    from grpo.cli.pipeline import load_splits
    from grpo.config.script_args import ScriptArgs

    train, heldout = load_splits(ScriptArgs(dataset_name="gsm8k", eval_dataset="gsm8k", eval_size=0), seed=0)
    assert heldout is None and len(train) == 7473
    assert len(load_splits(ScriptArgs(dataset_name="gsm8k", eval_dataset="gsm8k", eval_size=5), seed=0)[1]) == 5


class CountingEval:
    """Stands in for PeriodicEval inside the loop: same interface, records the steps and the model's mode."""

    def __init__(self, every):
        self.real = PeriodicEval(None, [{"prompt": "p"}], every=every, max_new_tokens=1, batch_size=1)
        self.calls = []

    def due(self, step, max_steps):
        return self.real.due(step, max_steps)

    def __call__(self, model, step, rank=0, world=1, device=None):
        self.real.last_step = step
        self.calls.append(step)
        return {"eval/accuracy": step / 10, "eval/format_rate": 1.0, "eval/n": 1}


def test_native_loop_evaluates_before_training_and_when_due(tmp_path):
    from grpo.training.native import train
    from grpo.training.native.plan import build_plan

    counting, log = CountingEval(every=2), MetricsLogger(tmp_path)
    train(tiny_model(), tiny_tokenizer(), dataset(), [word_reward],
          build_plan(config(tmp_path, max_steps=3, logging_steps=5)), log, periodic_eval=counting)
    assert counting.calls == [0, 2, 3]
    rows = log.read()
    assert [r["step"] for r in rows if "eval/accuracy" in r] == [0, 2, 3]
    assert rows[0] == {"step": 0, "eval/accuracy": 0.0, "eval/format_rate": 1.0, "eval/n": 1}
    step2 = next(r for r in rows if r["step"] == 2)  # logging_steps 5: logged only because it evaluated
    assert step2["eval/accuracy"] == pytest.approx(0.2) and "reward" in step2 and "loss" in step2


def test_real_periodic_eval_on_smollm2_keeps_the_training_mode():
    from grpo.data.loaders import load_gsm8k
    from grpo.modeling.models import EMBEDDED_SMOLLM2, load_model

    model, tok = load_model(EMBEDDED_SMOLLM2)
    model.train()
    problems = load_gsm8k("gsm8k", split="train", limit=3)
    metrics = PeriodicEval(tok, problems, every=1, max_new_tokens=8, batch_size=3)(model, 4)
    assert model.training
    assert metrics["eval/n"] == 3 and metrics["eval/seconds"] > 0
    for key in ("eval/accuracy", "eval/format_rate", "eval/numeric_answer_rate", "eval/clipped"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["eval/clipped"] == 1.0  # 8 tokens cannot finish a GSM8K answer


def test_console_carries_the_last_evaluation_into_later_rows():
    progress = StepProgress(total=4, disable=False, bar=True)  # rows written above the bar (a terminal's layout)
    lines = []
    progress.bar.write = lines.append
    progress.update(0, {"eval/accuracy": 0.25, "eval/format_rate": 0.5}, log_row=False)
    progress.update(1, {"reward": 1.0, "step_time": 2.0}, log_row=True)
    progress.update(2, {"reward": 1.5, "step_time": 2.0, "eval/accuracy": 0.375, "eval/format_rate": 0.75},
                    log_row=True)
    progress.close()
    assert lines[0].split() == ["step", "reward", "eval_acc", "eval_fmt", "s/step"]
    assert lines[1].split() == ["1", "1", "0.25", "0.5", "2"]
    assert lines[2].split() == ["2", "1.5", "0.375", "0.75", "2"]


def test_curves_have_a_periodic_evaluation_panel(tmp_path):
    import matplotlib.pyplot as plt

    rows = [{"step": 0, "eval/accuracy": 0.0, "eval/format_rate": 0.1}]
    rows += [{"step": s, "reward": 0.1 * s, "completions/mean_length": 50.0} for s in (1, 2)]
    rows += [{"step": 2, "reward": 0.2, "eval/accuracy": 0.5, "eval/format_rate": 0.9}]
    drawn = {}
    real_savefig = plt.Figure.savefig

    def keep(fig, *args, **kwargs):
        drawn.update({ax.get_title(): ax for ax in fig.axes})
        return real_savefig(fig, *args, **kwargs)

    plt.Figure.savefig = keep
    try:
        assert plot_curves(tmp_path, rows) == tmp_path / "curves.png"
    finally:
        plt.Figure.savefig = real_savefig
    panel = drawn["periodic evaluation (held-out train problems)"]
    assert [list(line.get_xdata()) for line in panel.lines] == [[0, 2], [0, 2]]
    assert [line.get_label() for line in panel.lines] == ["accuracy", "format_rate"]
    kl = drawn["KL to reference"]
    assert not kl.lines and "beta = 0" in kl.texts[0].get_text()
    assert plot_curves(tmp_path / "only_eval", rows[:1]) is None  # nothing trained yet: no figure
