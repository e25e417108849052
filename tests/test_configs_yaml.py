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
ALL_CONFIGS = sorted(p for d in CONFIG_DIRS if d.is_dir() for p in d.rglob("*.yaml"))
GRPO_CONFIGS = [p for p in ALL_CONFIGS if p.is_relative_to(ROOT / "grpo" / "configs")]


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
            from grpo.cli import COMMANDS

            assert sub.group(1) in COMMANDS, command


@pytest.mark.parametrize("path", [pytest.param(p, id=rel(p)) for p in GRPO_CONFIGS])
def test_grpo_config_parses_and_resolves(path, tmp_path):
    from trl import GRPOConfig

    from grpo.config import ScriptArgs, parse_config

    import torch

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
        elif key not in {"report_to", "lr_scheduler_type"}:  # TRL normalises these to lists/enums
            assert got == value or str(got) == str(value), (key, got, value)
    from grpo.pipeline import load_reward_funcs

    funcs = load_reward_funcs(script.reward_funcs, training.reward_weights, script.reward_kwargs)
    assert len(funcs) == len(script.reward_funcs) and all(callable(f) for f in funcs)
    if "hub" not in path.stem:  # the defaults run offline (gsm8k_hub.yaml is the documented GPU variant)
        assert script.model.startswith("embedded:") or (ROOT / script.model).exists(), script.model
        assert script.dataset.startswith("synthetic:") or (ROOT / script.dataset).exists(), script.dataset
