"""Backend ``trl`` end to end (slow): a real two-step GRPO run on the embedded SmolLM2 writes a full run dir.

Run: ``nice -n 10 pytest -q -m slow tests/test_trl_backend.py`` (a few minutes on 2 CPU cores).

Besides the course's ``xml_count`` reward, the run uses a test reward that scores each completion
by a checksum of its text, so the two completions of a group almost surely differ in reward:
the advantages are non-zero and the LoRA weights must move (with only the course's rewards an
untrained model ties every group at 0 and nothing would change).
"""

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SPREAD_REWARD = '''
import zlib


def text_checksum_reward(completions, **kwargs):
    """Test-only: a reward in [0, 1) that differs between different completion texts."""
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [zlib.crc32(t.encode()) % 1000 / 1000 for t in texts]
'''


def tiny_args(tmp_path, *extra):
    from trl import GRPOConfig

    from grpo.config.parser import parse_config
    from grpo.config.script_args import ScriptArgs

    reward_file = tmp_path / "spread_reward.py"
    reward_file.write_text(SPREAD_REWARD)
    argv = [
        "--output_dir", str(tmp_path / "run"),
        "--model_name_or_path", "embedded:smollm2-135m-instruct",
        "--dataset_name", "synthetic:gsm8k:12",
        "--reward_funcs", "xml_count", f"{reward_file}:text_checksum_reward",
        "--eval_size", "2", "--eval_max_new_tokens", "16", "--eval_batch_size", "2",
        "--warm_start", "false",
        "--max_steps", "2", "--num_generations", "2", "--per_device_train_batch_size", "2",
        "--max_completion_length", "16", "--learning_rate", "1e-3", "--logging_steps", "1",
        "--lora_r", "4", "--lora_alpha", "8",
        "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true", "--bf16", "false", "--seed", "0",
        *extra,
    ]
    return parse_config(argv, (ScriptArgs, GRPOConfig))


@pytest.fixture(scope="module")
def two_step_run(tmp_path_factory):
    from grpo.cli.pipeline import run_training

    tmp_path = tmp_path_factory.mktemp("trl_run")
    script_args, training_args = tiny_args(tmp_path)
    result = run_training(script_args, training_args)
    return Path(training_args.output_dir), result


def read_jsonl(path):
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def test_metrics_use_trl_names(two_step_run):
    out, _ = two_step_run
    metrics = read_jsonl(out / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2]
    for m in metrics:
        for key in ("reward", "reward_std", "frac_reward_zero_std", "completions/mean_length",
                    "rewards/xmlcount_reward/mean", "rewards/text_checksum_reward/mean"):
            assert key in m, (key, sorted(m))
        assert 0 < m["completions/mean_length"] <= 16
        assert 0 <= m["frac_reward_zero_std"] <= 1


def readme_metric_names() -> list[str]:
    """Backticked names in the first column of the README's metrics.jsonl table."""
    import re

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = text.split("### Metrics", 1)[1].split("\n#", 1)[0]
    rows = [ln.split("|")[1] for ln in section.splitlines() if ln.startswith("| `")]
    return [name for row in rows for name in re.findall(r"`([^`]+)`", row)]


def test_readme_metric_table_matches_what_trl_logs(two_step_run):
    out, _ = two_step_run
    logged = set(read_jsonl(out / "metrics.jsonl")[0])
    documented = readme_metric_names()
    assert "frac_reward_zero_std" in documented
    for name in documented:
        if name == "kl":  # TRL logs kl only when beta > 0; this run uses beta 0
            continue
        expanded = [name.replace("<name>", r) for r in ("xmlcount_reward", "text_checksum_reward")]
        assert all(n in logged for n in expanded), f"README documents {name!r} but TRL did not log it"


def test_samples_have_prompts_completions_and_scores(two_step_run):
    out, _ = two_step_run
    samples = read_jsonl(out / "samples.jsonl")
    assert samples and {s["step"] for s in samples} <= {1, 2}
    for s in samples:
        assert isinstance(s["prompt"], str) and s["prompt"]
        assert isinstance(s["completion"], str)
        assert set(s["rewards"]) == {"xmlcount_reward", "text_checksum_reward"}
        # the row's gold columns, from the reward call's own keywords: `grpo rewards try` needs no --dataset
        assert s["answer"] and s["question"] in s["prompt"] and "trainer_state" not in s and "completion_ids" not in s


def test_eval_reports_and_card(two_step_run):
    out, result = two_step_run
    for name in ("eval_before.json", "eval_after.json"):
        report = json.loads((out / name).read_text())
        assert report["n"] == 2 and len(report["samples"]) == 2
        assert 0 <= report["accuracy"] <= 1 and 0 <= report["format_rate"] <= 1
        assert 0 < report["mean_completion_length"] <= 16
    assert result["eval_before"]["n"] == 2 and result["eval_after"]["n"] == 2
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    card = (out / "README.md").read_text()
    assert "embedded:smollm2-135m-instruct" in card and "accuracy" in card
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card and "model-index:" in card
    assert f'{result["eval_after"]["mean_completion_length"]:.1f}' in card


def test_checkpoint_reloads_and_lora_moved(two_step_run):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    out, result = two_step_run
    ckpt = out / "checkpoint"
    assert result["checkpoint"] == str(ckpt)
    model = AutoModelForCausalLM.from_pretrained(ckpt)
    assert not any("lora_" in n for n, _ in model.named_parameters())  # merged
    adapter = ckpt / "adapter"
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    assert cfg["r"] == 4 and cfg["lora_alpha"] == 8
    weights = load_file(adapter / "adapter_model.safetensors")
    lora_b = [t for n, t in weights.items() if "lora_B" in n]
    assert lora_b
    # peft initialises lora_B to zeros: any non-zero entry means the optimizer moved the adapter
    assert any(t.abs().max() > 0 for t in lora_b)
    # and the merged checkpoint differs from the base model accordingly
    from grpo.modeling.models import load_model

    base, tokenizer = load_model("embedded:smollm2-135m-instruct")
    ids = torch.tensor([tokenizer("Mia has 3 bags of 4 apples.")["input_ids"]])
    with torch.no_grad():
        assert not torch.allclose(base(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-5)


def test_warm_start_then_one_grpo_step(tmp_path):
    from transformers import AutoModelForCausalLM

    from grpo.cli.pipeline import run_training

    script_args, training_args = tiny_args(tmp_path, "--warm_start", "true", "--sft_examples", "4",
                                           "--sft_batch_size", "4", "--max_steps", "1", "--eval_size", "0")
    result = run_training(script_args, training_args)
    out = Path(training_args.output_dir)
    sft = out / "sft_checkpoint"
    assert (sft / "config.json").exists()
    assert not (sft / "adapter_config.json").exists()  # merged, a plain model
    AutoModelForCausalLM.from_pretrained(sft)
    assert [m["step"] for m in read_jsonl(out / "metrics.jsonl")] == [1]
    assert (out / "checkpoint" / "adapter" / "adapter_config.json").exists()
    assert result["eval_before"] is None and result["eval_after"] is None  # eval_size 0 skips evaluation
    assert "Warm-start SFT before GRPO: yes" in (out / "README.md").read_text()


@pytest.mark.parametrize("sft_lora_dropout, expected", [(None, "Dropout"), ("0", "Identity")])
def test_sft_lora_dropout_replaces_lora_dropout_for_the_warm_start_only(tmp_path, monkeypatch, sft_lora_dropout,
                                                                        expected):
    import trl

    from grpo.data.loaders import load_gsm8k
    from grpo.modeling.models import load_model
    from grpo.training.sft import warm_start

    seen = []
    original = trl.SFTTrainer.train

    def train(self, *args, **kwargs):  # the adapter's dropout modules as the SFT trains them
        seen.extend(type(m).__name__ for n, m in self.model.named_modules() if n.endswith("lora_dropout.default"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(trl.SFTTrainer, "train", train)
    extra = ["--warm_start", "true", "--sft_examples", "2", "--sft_batch_size", "2", "--sft_micro_batch_size", "1",
             "--lora_dropout", "0.1"] + ([] if sft_lora_dropout is None else ["--sft_lora_dropout", sft_lora_dropout])
    script_args, training_args = tiny_args(tmp_path, *extra)
    model, tokenizer = load_model("embedded:smollm2-135m-instruct")
    warm_start(model, tokenizer, load_gsm8k("synthetic:gsm8k:4"), script_args, training_args, tmp_path / "run")
    assert seen and set(seen) == {expected}
    assert script_args.lora_dropout == 0.1  # the GRPO stage's adapter keeps lora_dropout

