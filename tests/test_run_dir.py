"""grpo.runs.run_dir and grpo.common.checkpoint_io: metrics/samples logs, atomic JSON and checkpoints, curves.png, model card.

Run: ``pytest -q tests/test_run_dir.py``. Uses a tiny fake model (anything with ``save_pretrained``).
"""

import json
from types import SimpleNamespace

import pytest

from grpo.common.checkpoint_io import save_checkpoint, write_json_atomic
from grpo.runs import run_dir
from grpo.runs.run_dir import MetricsLogger, plot_curves, save_final_checkpoint, write_model_card


class FakeModel:
    """Stands in for a PreTrainedModel: ``save_pretrained`` writes one weights file."""

    def __init__(self, weights: str):
        self.weights = weights

    def save_pretrained(self, path):
        path.mkdir(parents=True, exist_ok=True)
        (path / "weights.txt").write_text(self.weights)


def lines(path):
    return [json.loads(ln) for ln in path.read_text().splitlines()]


def test_metrics_lines_and_nan_as_null(tmp_path):
    import torch

    log = MetricsLogger(tmp_path / "run")
    log.log(1, {"reward": 0.5, "kl": float("nan"), "loss": torch.tensor(2.0)})
    log.log(2, {"reward": float("inf"), "completions/mean_length": 12})
    text = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text
    got = lines(tmp_path / "run" / "metrics.jsonl")
    assert got == [{"step": 1, "reward": 0.5, "kl": None, "loss": 2.0},
                   {"step": 2, "reward": None, "completions/mean_length": 12}]
    assert log.read() == got


def test_log_samples_one_line_per_completion(tmp_path):
    log = MetricsLogger(tmp_path)
    log.log_samples(3, ["p1", "p2"], ["c1", "c2"], {"accuracy_reward": [2.0, float("nan")], "int_reward": [0.5, 0.0]})
    got = lines(tmp_path / "samples.jsonl")
    assert got == [
        {"step": 3, "prompt": "p1", "completion": "c1", "rewards": {"accuracy_reward": 2.0, "int_reward": 0.5}},
        {"step": 3, "prompt": "p2", "completion": "c2", "rewards": {"accuracy_reward": None, "int_reward": 0.0}},
    ]


def test_disabled_logger_writes_nothing(tmp_path):
    log = MetricsLogger(tmp_path / "rank1", enabled=False)
    log.log(1, {"reward": 1.0})
    log.log_samples(1, ["p"], ["c"], {"r": [1.0]})
    log.truncate_after(0)
    assert not (tmp_path / "rank1").exists()
    assert log.read() == []


def test_truncate_after(tmp_path):
    log = MetricsLogger(tmp_path)
    for step in (1, 2, 3, 4):
        log.log(step, {"reward": step / 10})
        log.log_samples(step, ["p"], ["c"], {"r": [step]})
    log.truncate_after(2)
    assert [m["step"] for m in log.read()] == [1, 2]
    assert [s["step"] for s in lines(tmp_path / "samples.jsonl")] == [1, 2]
    log.log(3, {"reward": 0.9})  # appending continues after truncation
    assert [m["step"] for m in log.read()] == [1, 2, 3]
    log.truncate_after(0)
    assert log.read() == []


def test_write_json_atomic(tmp_path):
    import torch

    path = tmp_path / "deep" / "report.json"
    write_json_atomic(path, {"accuracy": torch.tensor(0.25), "n": 4})
    assert json.loads(path.read_text()) == {"accuracy": 0.25, "n": 4}
    write_json_atomic(path, {"n": 5})
    assert json.loads(path.read_text()) == {"n": 5}
    assert [p.name for p in path.parent.iterdir()] == ["report.json"]  # no temp files left


def test_write_json_atomic_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "report.json"
    write_json_atomic(path, {"n": 1})

    class Boom:
        def item(self):
            raise RuntimeError("cannot serialise")

    with pytest.raises(RuntimeError):
        write_json_atomic(path, {"n": Boom()})
    assert json.loads(path.read_text()) == {"n": 1}


def test_save_checkpoint_atomic_writes_model_and_extras(tmp_path):
    dest = tmp_path / "run" / "checkpoint"
    out = save_checkpoint(FakeModel("v1"), None, dest,
                          extra_files={"notes/a.bin": b"\x00\x01", "adapter": FakeModel("lora").save_pretrained})
    assert out == dest
    assert (dest / "weights.txt").read_text() == "v1"
    assert (dest / "notes" / "a.bin").read_bytes() == b"\x00\x01"
    assert (dest / "adapter" / "weights.txt").read_text() == "lora"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["checkpoint"]


def test_save_checkpoint_atomic_replaces_only_when_complete(tmp_path):
    dest = tmp_path / "checkpoint"
    save_checkpoint(FakeModel("old"), None, dest, extra_files={"extra.txt": b"old extra"})

    def fail(path):
        path.write_text("half written")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(FakeModel("new"), None, dest, extra_files={"extra.txt": fail})
    # the old checkpoint is intact and nothing half-written is left beside it
    assert (dest / "weights.txt").read_text() == "old"
    assert (dest / "extra.txt").read_bytes() == b"old extra"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]

    with pytest.raises(KeyboardInterrupt):  # Ctrl-C mid-save behaves the same
        save_checkpoint(FakeModel("new"), None, dest,
                        extra_files={"x": lambda p: (_ for _ in ()).throw(KeyboardInterrupt())})
    assert (dest / "weights.txt").read_text() == "old"

    save_checkpoint(FakeModel("new"), None, dest)
    assert (dest / "weights.txt").read_text() == "new"
    assert (dest / "extra.txt").read_bytes() == b"old extra"  # entries the new save does not write are kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_save_checkpoint_replace_drops_what_the_new_save_does_not_write(tmp_path):
    dest = tmp_path / "checkpoint"
    save_checkpoint(FakeModel("old"), None, dest, extra_files={"adapter/adapter_config.json": {"r": 8}})
    save_checkpoint(FakeModel("new"), None, dest, replace=True)
    assert sorted(p.name for p in dest.iterdir()) == ["weights.txt"]  # no stale adapter/ from the earlier run
    assert (dest / "weights.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_final_checkpoint_of_a_plain_model_after_a_lora_run_has_no_adapter(tmp_path):
    from test_native import tiny_model

    from grpo.modeling.models import apply_lora

    save_final_checkpoint(apply_lora(tiny_model(), r=2, lora_alpha=4), None, tmp_path)
    assert (tmp_path / "checkpoint" / "adapter").is_dir()
    save_final_checkpoint(tiny_model(), None, tmp_path)  # the same output_dir reused without LoRA
    assert not (tmp_path / "checkpoint" / "adapter").exists()  # `grpo export` would have merged the stale adapter


def test_save_checkpoint_keeps_other_entries_and_gives_them_back_on_failure(tmp_path, monkeypatch):
    import os

    dest = tmp_path / "run"
    (dest / "checkpoint-2").mkdir(parents=True)
    (dest / "checkpoint-2" / "state.json").write_text("{}")
    (dest / "notes.txt").write_text("mine")
    (dest / "adapter").mkdir()
    (dest / "adapter" / "old.bin").write_bytes(b"old")

    real_replace = os.replace

    def interrupted_swap(src, dst):
        if str(src) == str(dest):  # Ctrl-C after the kept entries moved into the temp dir, before the swap
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", interrupted_swap)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(FakeModel("new"), None, dest)
    monkeypatch.setattr(os, "replace", real_replace)
    # they went back where they were, and the temp dir is gone
    assert sorted(p.name for p in dest.iterdir()) == ["adapter", "checkpoint-2", "notes.txt"]
    assert (dest / "checkpoint-2" / "state.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]

    save_checkpoint(FakeModel("new"), None, dest, extra_files={"adapter": FakeModel("lora").save_pretrained})
    assert (dest / "notes.txt").read_text() == "mine" and (dest / "checkpoint-2" / "state.json").exists()
    assert sorted(p.name for p in (dest / "adapter").iterdir()) == ["weights.txt"]  # a written dir replaces the old one
    assert (dest / "weights.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def make_metrics(n=5):
    return [{"step": s, "reward": 0.1 * s, "reward_std": 0.2, "rewards/xmlcount_reward/mean": 0.05 * s,
             "rewards/accuracy_reward/mean": 0.5 if s % 2 else float("nan"),
             "kl": None if s == 1 else 0.01 * s, "completions/mean_length": 100 - s}
            for s in range(1, n + 1)]


def test_plot_curves_from_list(tmp_path):
    path = plot_curves(tmp_path, make_metrics())
    assert path == tmp_path / "curves.png"
    head = path.read_bytes()[:8]
    assert head == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 5000
    assert not list(tmp_path.glob(".curves*"))


def test_plot_curves_from_metrics_file(tmp_path):
    log = MetricsLogger(tmp_path)
    for m in make_metrics(3):
        log.log(m["step"], {k: v for k, v in m.items() if k != "step"})
    assert plot_curves(tmp_path) == tmp_path / "curves.png"


def test_plot_curves_nothing_to_plot(tmp_path):
    assert plot_curves(tmp_path) is None
    assert plot_curves(tmp_path, [{"step": 1, "loss": 1.0}]) is None
    assert not (tmp_path / "curves.png").exists()


def test_model_card_contains_the_numbers(tmp_path):
    from grpo.config.script_args import ScriptArgs

    (tmp_path / "run").mkdir()
    script = ScriptArgs(lora_r=8, lora_alpha=16, warm_start=True)
    # the GRPOConfig fields the card reads (a stand-in keeps this test free of the trl import)
    training = SimpleNamespace(learning_rate=3.5e-5, max_steps=17, num_generations=2, per_device_train_batch_size=2,
                               gradient_accumulation_steps=1, max_completion_length=64, temperature=1.0, beta=0.0,
                               epsilon=0.2, loss_type="dapo", scale_rewards="group", seed=42, reward_weights=None)
    before = {"n": 32, "accuracy": 0.0625, "last_number_accuracy": 0.125, "format_rate": 0.0,
              "mean_completion_length": 151.25}
    after = {"n": 32, "accuracy": 0.3125, "last_number_accuracy": 0.375, "format_rate": 0.96875,
             "mean_completion_length": 88.5}
    path = write_model_card(tmp_path / "run", script, training, {"base": before, "after GRPO": after, "skipped": None},
                            "embedded:smollm2-135m-instruct")
    text = path.read_text()
    assert path == tmp_path / "run" / "README.md"
    # the metadata names the Hub id the embedded spec stands for; the body names the spec
    assert text.startswith("---\n") and "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in text
    assert "from `embedded:smollm2-135m-instruct`" in text
    for number in ("6.2%", "31.2%", "12.5%", "37.5%", "96.9%", "151.2", "88.5"):
        assert number in text, number
    assert "32 held-out rows of gsm8k" in text
    assert "r=8, alpha=16" in text and "Warm-start SFT before GRPO: yes" in text
    assert '"learning_rate": 3.5e-05' in text and '"max_steps": 17' in text
    assert "skipped" not in text  # None reports are dropped
    for name in ("xml_count", "correctness"):
        assert f"`{name}`" in text


def _card_args(**script):
    from grpo.config.script_args import ScriptArgs

    training = SimpleNamespace(learning_rate=1e-4, max_steps=20, num_generations=8, per_device_train_batch_size=2,
                               gradient_accumulation_steps=8, max_completion_length=200, temperature=1.0, beta=0.0,
                               epsilon=0.2, loss_type="dapo", scale_rewards="group", seed=42, reward_weights=None)
    return ScriptArgs(**script), training


def _report(flags_acc, flags_fmt, **extra):
    from grpo.evaluation.evaluate import rate_summary

    samples = [{"question": f"q{i}", "correct": a, "formatted": f} for i, (a, f) in enumerate(zip(flags_acc, flags_fmt))]
    return {"n": len(samples), **rate_summary("accuracy", flags_acc), **rate_summary("format_rate", flags_fmt),
            "last_number_accuracy": 0.0, "mean_completion_length": 50.0, "samples": samples, **extra}


def test_model_card_metadata_reads_back_with_huggingface_hub(tmp_path):
    """The Hub parses the card: base_model, datasets, library_name, tags and a model-index with the eval results."""
    from huggingface_hub import ModelCard

    script, training = _card_args(eval_dataset="gsm8k", warm_start=True)
    sft = _report([True] * 2 + [False] * 18, [True] * 20)
    grpo = _report([True] * 3 + [False] * 17, [True] * 20, placeholder_reasoning_rate=0.85)
    trend = {"n": 20, "slope": 0.01, "slope_ci": [0.002, 0.018], "first": 1.0, "last": 1.2}
    path = write_model_card(tmp_path / "demo", script, training, {"after warm-start": sft, "after GRPO": grpo},
                            "embedded:smollm2-135m-instruct", "grpo train --config x.yaml", trend=trend)
    card = ModelCard.load(path)
    data = card.data
    assert data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert data.datasets == ["openai/gsm8k"] and data.library_name == "transformers"
    assert {"grpo", "trl", "grpo-toolkit"} <= set(data.tags)
    results = {(r.metric_name, r.metric_type): r.metric_value for r in data.eval_results}
    assert results[("accuracy (after GRPO)", "accuracy")] == 0.15
    assert results[("format_rate (after warm-start)", "format_rate")] == 1.0
    assert all(r.dataset_type == "openai/gsm8k" and r.dataset_split == "test" for r in data.eval_results)
    text = card.text
    assert "Shortcut detected" in text and "85.0% of the completions have placeholder reasoning" in text
    assert "Paired on the same 20 problems" in text and "no significant change" in text
    assert "slope +0.0100 per step" in text and "(rising;" in text


def test_model_card_without_evaluation_says_so(tmp_path):
    from huggingface_hub import ModelCard

    script, training = _card_args(eval_size=0)
    path = write_model_card(tmp_path / "run", script, training, {"after GRPO": None}, "embedded:smollm2-135m-instruct")
    card = ModelCard.load(path)
    assert "Not evaluated (eval_size 0)" in card.text and "- problems" not in card.text and "| metric" not in card.text
    assert not card.data.eval_results


def test_panels_cover_trl_metric_names():
    names = [n for _, group, _ in run_dir.PANELS for n in group]
    assert names == ["reward", "rewards/", "eval/accuracy", "eval/format_rate", "eval/placeholder_reasoning_rate",
                     "completions/mean_length", "completions/clipped_ratio", "completions/placeholder_reasoning_rate",
                     "kl"]


def _umask():
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def _mode(path):
    return path.stat().st_mode & 0o777


def test_write_json_atomic_has_normal_file_permissions(tmp_path):
    normal = tmp_path / "normal.json"
    normal.write_text("{}")
    write_json_atomic(tmp_path / "atomic.json", {})
    assert _mode(tmp_path / "atomic.json") == _mode(normal)


def test_checkpoint_dir_has_normal_permissions(tmp_path):
    normal = tmp_path / "normal"
    normal.mkdir()
    save_checkpoint(FakeModel("v"), None, tmp_path / "checkpoint")
    assert _mode(tmp_path / "checkpoint") == _mode(normal)
