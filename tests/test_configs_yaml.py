"""Every shipped YAML config: valid, flat, parses (GRPO configs), and its header gives a command naming it.

Run: ``pytest -q tests/test_configs_yaml.py``. Configs are found with ``rglob`` so nested
directories are covered too (torchtune's config test once checked only the top level).
"""

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIRS = [ROOT / "grpo" / "configs", ROOT / "recipes" / "configs"]
ACCELERATE_DIR = ROOT / "grpo" / "configs" / "accelerate"  # accelerate's own format: tests/test_accelerate_configs.py
ALL_CONFIGS = sorted(p for d in CONFIG_DIRS if d.is_dir() for p in d.rglob("*.yaml") if not p.is_relative_to(ACCELERATE_DIR))
GRPO_CONFIGS = [p for p in ALL_CONFIGS if p.is_relative_to(ROOT / "grpo" / "configs")]
GPU_ONLY = re.compile(r"hub|gpu")  # config names of the GPU + internet variants


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def header_lines(path: Path) -> list[str]:
    """The leading comment block, ``#`` stripped."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return lines


def header_commands(path: Path) -> list[str]:
    """Command lines in the header (``grpo train --config ...`` / ``python -m recipes.x --config ...``)."""
    return [text for text in header_lines(path) if re.match(r"(grpo|python)\s", text)]


def test_configs_found():
    assert GRPO_CONFIGS, "grpo/configs/*.yaml is missing"
    assert any(p.name == "gsm8k.yaml" for p in GRPO_CONFIGS)


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=rel)
def test_yaml_is_a_flat_mapping(path):
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict) and data, f"{rel(path)} is not a non-empty mapping"
    # dict values only for *_kwargs fields (e.g. reward_kwargs: {correctness: {...}})
    nested = [k for k, v in data.items() if isinstance(v, dict) and not k.endswith("kwargs")]
    assert not nested, f"{rel(path)}: keys should be flat field names, nested: {nested}"


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=rel)
def test_header_has_command_naming_its_own_path(path):
    commands = header_commands(path)
    assert commands, f"{rel(path)}: the header comment should give the run command"
    own = [c for c in commands if re.search(rf"--config {re.escape(rel(path))}(\s|$)", c)]
    assert own, f"{rel(path)}: no header command uses --config {rel(path)}; found {commands}"
    # one override example besides the plain command (a full command or an "override: ... --key v" line)
    mentions = [t for t in header_lines(path) if f"--config {rel(path)}" in t]
    assert any(re.search(r"--(?!config\b)\w+", t) for t in mentions), f"{rel(path)}: add an override example"


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=rel)
def test_header_command_targets_exist(path):
    from recipes import RECIPES

    for command in header_commands(path):
        module = re.match(r"python -m ([\w.]+)", command)
        if module:
            assert (ROOT / (module.group(1).replace(".", "/") + ".py")).exists(), command
        recipe = re.match(r"grpo recipe (\w+)", command)
        if recipe:
            assert recipe.group(1) in RECIPES, command
        sub = re.match(r"grpo (\w+)", command)
        if sub:
            from grpo.cli.commands import COMMANDS

            assert sub.group(1) in COMMANDS, command


@pytest.mark.parametrize("path", [pytest.param(p, id=rel(p)) for p in GRPO_CONFIGS])
def test_grpo_config_parses_and_resolves(path, tmp_path):
    import torch
    from trl import GRPOConfig

    from grpo.config.parser import parse_config
    from grpo.config.script_args import ScriptArgs

    overrides = ["--output_dir", str(tmp_path)]
    if not torch.cuda.is_available():  # GPU-only settings of the documented GPU variant
        overrides += ["--bf16", "false", "--use_vllm", "false"]
    script, training = parse_config(["--config", str(path), *overrides], (ScriptArgs, GRPOConfig))
    data = yaml.safe_load(path.read_text())
    # every key in the file reached one of the two dataclasses with its value
    for key, value in data.items():
        if f"--{key}" in overrides:
            continue
        target = script if hasattr(script, key) else training
        got = getattr(target, key)
        if isinstance(value, float):
            assert got == pytest.approx(value), key
        elif key == "backend" and value == "auto":  # resolved at parse time: native without CUDA, trl with it
            assert got == ("trl" if torch.cuda.is_available() else "native")
        elif key not in {"report_to", "lr_scheduler_type"}:  # TRL normalises these to lists/enums
            assert got == value or str(got) == str(value), (key, got, value)
    from grpo.cli.pipeline import load_reward_funcs

    funcs = load_reward_funcs(script.reward_funcs, training.reward_weights, script.reward_kwargs)
    assert len(funcs) == len(script.reward_funcs) and all(callable(f) for f in funcs)
    if not GPU_ONLY.search(path.stem):  # the defaults run offline (gsm8k_hub / *_gpu are the documented GPU variants)
        model, data = script.model_name_or_path, script.dataset_name
        # a recipe's checkpoint (translate_en_fr, summarize) is made by the `grpo recipe` command in the header
        recipe_configs = [ROOT / m.group(1) for c in header_commands(path)
                          if (m := re.match(r"grpo recipe \w+ --config (recipes/configs/\S+\.yaml)", c))]
        made_by_recipe = any(yaml.safe_load(p.read_text()).get("output_dir") == model for p in recipe_configs)
        assert model.startswith("embedded:") or (ROOT / model).exists() or made_by_recipe, model
        assert data in {"gsm8k"} or data.startswith(("synthetic:", "pkg:")) or (ROOT / data).exists(), data  # offline specs


# ---- The GPU recipe (verl's Qwen2.5-0.5B-Instruct GRPO-LoRA, 54.3 on GSM8K): settings, not a run ----------

QWEN_GPU = ROOT / "grpo" / "configs" / "gsm8k_qwen_gpu.yaml"
# (field, value) pairs taken from the verl log the config names; a change here must be a deliberate one.
VERL_SETTINGS = {
    "model_name_or_path": "Qwen/Qwen2.5-0.5B-Instruct", "lora_r": 32, "lora_alpha": 32, "lora_target_modules": "all-linear",
    "dataset_name": "openai/gsm8k", "eval_dataset": "openai/gsm8k", "eval_size": 1319, "eval_max_new_tokens": 1024,
    "prompt_format": "hash", "learning_rate": 3e-5, "weight_decay": 0.01, "max_grad_norm": 1.0,
    "num_generations": 5, "max_completion_length": 1024, "temperature": 1.0, "beta": 0.001, "epsilon": 0.2,
    "entropy_coef": 0.001, "max_steps": 116, "num_iterations": 1, "shuffle_dataset": False,
}


def test_gpu_recipe_mirrors_verl(tmp_path):
    from trl import GRPOConfig

    from grpo.cli.pipeline import load_reward_funcs
    from grpo.config.parser import parse_config
    from grpo.config.script_args import ScriptArgs
    from grpo.data.loaders import make_prompt

    script, training = parse_config(["--config", str(QWEN_GPU), "--output_dir", str(tmp_path), "--bf16", "false",
                                     "--use_vllm", "false"], (ScriptArgs, GRPOConfig))
    for key, value in VERL_SETTINGS.items():
        got = getattr(script, key) if hasattr(script, key) else getattr(training, key)
        assert got == pytest.approx(value) if isinstance(value, float) else got == value, (key, got, value)
    # one optimizer step = verl's batch: 64 prompts x 5 completions, generated once, used once (on-policy)
    per_step = training.per_device_train_batch_size * training.gradient_accumulation_steps
    assert per_step == 320 and training.generation_batch_size == 320 and per_step // training.num_generations == 64
    assert not script.warm_start and script.reward_funcs == ["correctness"]
    # verl's reward: 1.0 when the number after #### is right, 0.0 otherwise (also without any ####)
    (reward,) = load_reward_funcs(script.reward_funcs, training.reward_weights, script.reward_kwargs)
    assert reward(["so 9 * 2 = 18\n#### 18", "#### 17", "The answer is 18."], answer=["18"] * 3) == [1.0, 0.0, 0.0]
    # verl's prompt: one user turn ending in its instruction (the chat template adds Qwen's system prompt)
    (turn,) = make_prompt("How many?", prompt_format=script.prompt_format)
    assert turn == {"role": "user", "content": 'How many? Let\'s think step by step and output the final answer after "####".'}


@pytest.mark.parametrize("overrides, expected", [
    ([], "bf16: true needs a CUDA GPU"),
    (["--bf16", "false"], "vllm"),
    (["--bf16", "false", "--use_vllm", "false"], "openai/gsm8k"),
])
def test_gpu_recipe_stops_with_a_clear_error_here(overrides, expected, tmp_path, capsys, monkeypatch):
    """On this CPU-only, offline machine each GPU/hub requirement stops the run at once, with one line.
    (On a CPU whose bf16 is slow, bf16 without a GPU is refused; GRPO_TOOLKIT_BF16=0 makes this one.)"""
    import torch

    from grpo.cli.commands import main

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    monkeypatch.setenv("GRPO_TOOLKIT_BF16", "0")
    code = main(["train", "--config", str(QWEN_GPU), "--output_dir", str(tmp_path / "run"), *overrides])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and expected in err, err
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


# ---- The demo's rewards against the course's: the template copied from the system prompt ----------------


@pytest.mark.parametrize("name, template_pays_as_much", [("gsm8k.yaml", False), ("gsm8k_course.yaml", True)])
def test_demo_rewards_do_not_pay_for_the_copied_template(name, template_pays_as_much, tmp_path):
    """The shortcut a 20-step run learned on the course's rewards: `...` as the reasoning, a number as the answer.

    Both completions below are wrong; the second reasons (one true step, grounded in the question). The
    course's weighted rewards pay them the same; the demo's pay the copy only for its numeric answer.
    """
    from trl import GRPOConfig

    from grpo.cli.pipeline import load_reward_funcs
    from grpo.config.parser import parse_config
    from grpo.config.script_args import ScriptArgs

    script, training = parse_config(["--config", str(ROOT / "grpo" / "configs" / name), "--output_dir",
                                     str(tmp_path), "--bf16", "false"], (ScriptArgs, GRPOConfig))
    funcs = load_reward_funcs(script.reward_funcs, training.reward_weights, script.reward_kwargs)
    weights = training.reward_weights or [1.0] * len(funcs)
    prompt = [{"role": "system", "content": "Respond in the following format: ..."},
              {"role": "user", "content": "Natalia sold clips to 48 of her friends in April, and half as many in May."}]
    copied = "<reasoning>\n...\n</reasoning>\n<answer>\n2\n</answer>\n"
    reasoned = "<reasoning>\nIn May she sold 48/2 = 24 clips.\n</reasoning>\n<answer>\n24\n</answer>\n"

    def total(text):
        return sum(w * f([text], prompts=[prompt], answer=["72"])[0] for f, w in zip(funcs, weights))

    if template_pays_as_much:
        assert total(copied) == pytest.approx(total(reasoned)) and total(copied) > 2.0
    else:
        integer_weight = weights[script.reward_funcs.index("integer_answer")]
        assert total(copied) == pytest.approx(0.5 * integer_weight)  # the numeric answer, nothing for the layout
        assert total(reasoned) >= total(copied) + 1.5
