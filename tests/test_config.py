"""grpo.config.parser: ScriptArgs + trl.GRPOConfig parsed from YAML and --key value overrides; clear errors.

Run: ``pytest -q tests/test_config.py`` (``-m slow`` adds a one-step run of a config written for ``trl grpo``).
"""

from pathlib import Path

import pytest

from grpo.common.errors import UserError
from grpo.config.parser import parse_config
from grpo.config.script_args import GSM8K_REWARDS, ScriptArgs


@pytest.fixture(scope="module")
def grpo_config_cls():
    from trl import GRPOConfig

    return GRPOConfig


def parse(argv, grpo_config_cls):
    return parse_config(argv, (ScriptArgs, grpo_config_cls))


def write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_yaml_plus_overrides(tmp_path, grpo_config_cls):
    cfg = write(tmp_path, f"model_name_or_path: some/dir\nlora_r: 8\nlearning_rate: 3.0e-5\nmax_steps: 7\n"
                          f"output_dir: {tmp_path}/run\n")
    script, training = parse(["--config", cfg, "--lora_r", "4", "--max_steps", "9"], grpo_config_cls)
    assert script.model_name_or_path == "some/dir"
    assert script.lora_r == 4  # CLI beats YAML
    assert training.learning_rate == pytest.approx(3e-5)
    assert training.max_steps == 9
    assert training.output_dir == f"{tmp_path}/run"
    # untouched fields keep the dataclass defaults
    assert script.reward_funcs == GSM8K_REWARDS and script.backend == "native"  # 'auto' without CUDA


def test_backend_auto_is_native_without_cuda_and_trl_with_it(monkeypatch):
    import torch

    assert ScriptArgs().backend == ("trl" if torch.cuda.is_available() else "native")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert ScriptArgs().backend == "trl" and ScriptArgs(backend="native").backend == "native"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert ScriptArgs().backend == "native" and ScriptArgs(backend="trl").backend == "trl"


def test_cpu_bf16_default_follows_the_measured_hardware(tmp_path, grpo_config_cls, monkeypatch):
    """bf16 on a CPU only where bf16 matmuls measured faster (GRPO_TOOLKIT_BF16 stands in for the probe)."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("the CPU default does not apply with CUDA")
    for forced, expected in (("1", True), ("0", False)):
        monkeypatch.setenv("GRPO_TOOLKIT_BF16", forced)
        _, training = parse(["--output_dir", str(tmp_path)], grpo_config_cls)
        assert training.bf16 is expected and (training.use_cpu or not expected)
    _, training = parse(["--output_dir", str(tmp_path), "--bf16", "false"], grpo_config_cls)
    assert training.bf16 is False


def test_typo_in_yaml_suggests_the_key(tmp_path, grpo_config_cls):
    cfg = write(tmp_path, f"lerning_rate: 1.0e-5\noutput_dir: {tmp_path}\n")
    with pytest.raises(UserError) as err:
        parse(["--config", cfg], grpo_config_cls)
    msg = str(err.value)
    assert "lerning_rate" in msg and "did you mean 'learning_rate'" in msg


def test_typo_in_script_field_suggests_the_key(tmp_path, grpo_config_cls):
    cfg = write(tmp_path, f"lora_alhpa: 8\noutput_dir: {tmp_path}\n")
    with pytest.raises(UserError, match=r"did you mean 'lora_alpha'"):
        parse(["--config", cfg], grpo_config_cls)


def test_typo_on_command_line_suggests_the_key(tmp_path, grpo_config_cls):
    with pytest.raises(UserError) as err:
        parse(["--output_dir", str(tmp_path), "--eval_sise", "4"], grpo_config_cls)
    assert "eval_sise" in str(err.value) and "did you mean 'eval_size'" in str(err.value)


def test_abbreviated_key_on_command_line_is_rejected(tmp_path, grpo_config_cls):
    with pytest.raises(UserError, match="learning_rat"):
        parse(["--output_dir", str(tmp_path), "--learning_rat", "1e-3"], grpo_config_cls)


def test_backend_typo(tmp_path, grpo_config_cls):
    with pytest.raises(UserError) as err:
        parse(["--output_dir", str(tmp_path), "--backend", "trll"], grpo_config_cls)
    assert "backend='trll'" in str(err.value) and "'native'" in str(err.value)


def test_missing_config_file(tmp_path, grpo_config_cls):
    missing = str(tmp_path / "nope.yaml")
    with pytest.raises(UserError, match=r"config file '.*nope\.yaml' does not exist"):
        parse(["--config", missing], grpo_config_cls)


def test_invalid_yaml(tmp_path, grpo_config_cls):
    cfg = write(tmp_path, "model: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        parse(["--config", cfg], grpo_config_cls)


def test_reward_funcs_comma_string_in_yaml(tmp_path, grpo_config_cls):
    cfg = write(tmp_path, f"reward_funcs: xml_count, correctness\noutput_dir: {tmp_path}\n")
    script, _ = parse(["--config", cfg], grpo_config_cls)
    assert script.reward_funcs == ["xml_count", "correctness"]


def test_reward_funcs_list_on_command_line(tmp_path, grpo_config_cls):
    script, _ = parse(["--output_dir", str(tmp_path), "--reward_funcs", "xml_count", "correctness"], grpo_config_cls)
    assert script.reward_funcs == ["xml_count", "correctness"]


def test_reward_funcs_comma_string_on_command_line(tmp_path, grpo_config_cls):
    script, _ = parse(["--output_dir", str(tmp_path), "--reward_funcs", "xml_count,correctness"], grpo_config_cls)
    assert script.reward_funcs == ["xml_count", "correctness"]


def test_script_args_direct_validation():
    assert ScriptArgs(reward_funcs="a, b,,c").reward_funcs == ["a", "b", "c"]
    with pytest.raises(UserError, match="reward_funcs is empty"):
        ScriptArgs(reward_funcs="")
    with pytest.raises(UserError, match="lora_r=0"):
        ScriptArgs(lora_r=0)
    with pytest.raises(UserError, match="eval_size=-1"):
        ScriptArgs(eval_size=-1)
    with pytest.raises(UserError, match="eval_max_new_tokens=0"):
        ScriptArgs(eval_max_new_tokens=0)


def test_bad_value_type_is_user_error(tmp_path, grpo_config_cls):
    with pytest.raises(UserError, match=r"--lora_r.*invalid int value: 'many'"):
        parse(["--output_dir", str(tmp_path), "--lora_r", "many"], grpo_config_cls)


def test_grpo_config_validation_becomes_user_error(tmp_path, grpo_config_cls):
    # GRPOConfig.__post_init__: the generation batch must divide into groups
    with pytest.raises(UserError, match="num_generations"):
        parse(["--output_dir", str(tmp_path), "--num_generations", "3", "--per_device_train_batch_size", "4"],
              grpo_config_cls)


# ---- TRL's vocabulary: trl.ModelConfig / trl.ScriptArguments names, and the older aliases ---------------------

TRL_YAML = Path(__file__).parent / "fixtures" / "trl_grpo.yaml"


def test_defaults_without_any_config(tmp_path, grpo_config_cls):
    script, _ = parse(["--output_dir", str(tmp_path)], grpo_config_cls)
    assert (script.model_name_or_path, script.dataset_name, script.dataset_train_split) == (
        "embedded:smollm2-135m-instruct", "gsm8k", "train")
    assert script.use_peft is True and script.lora_target_modules == "all-linear"
    assert (script.lora_r, script.lora_alpha, script.lora_dropout) == (16, 32, 0.05)


def test_a_yaml_written_for_trl_grpo_means_the_same_here(tmp_path, grpo_config_cls):
    """Every key of the fixture, parsed by TRL's own `trl grpo` parser and by ours, gives the same value."""
    import yaml
    from trl.scripts.grpo import make_parser

    trl_script, trl_training, trl_model, _ = make_parser().parse_args_and_config(
        ["--config", str(TRL_YAML), "--output_dir", str(tmp_path), "--bf16", "false"], fail_with_unknown_args=True)
    script, training = parse(["--config", str(TRL_YAML), "--output_dir", str(tmp_path)], grpo_config_cls)
    for key in yaml.safe_load(TRL_YAML.read_text()):
        theirs = next(getattr(c, key) for c in (trl_model, trl_script, trl_training) if hasattr(c, key))
        assert getattr(script if hasattr(script, key) else training, key) == theirs, key
    assert script.lora_target_modules == ["q_proj", "v_proj"] and script.use_peft and script.dataset_spec == "gsm8k"


def test_lora_target_modules_forms(tmp_path, grpo_config_cls):
    for argv, expected in ((["q_proj", "v_proj"], ["q_proj", "v_proj"]), (["q_proj,v_proj"], ["q_proj", "v_proj"]),
                           (["all-linear"], "all-linear"), (["q_proj"], "q_proj")):
        script, _ = parse(["--output_dir", str(tmp_path), "--lora_target_modules", *argv], grpo_config_cls)
        assert script.lora_target_modules == expected, argv


@pytest.mark.parametrize("alias, name, value", [
    ("model", "model_name_or_path", "some/dir"), ("dataset", "dataset_name", "synthetic:gsm8k:8"),
    ("dataset_split", "dataset_train_split", "test"), ("use_lora", "use_peft", False)])
def test_older_names_are_aliases_of_trl_names(tmp_path, grpo_config_cls, alias, name, value):
    script, _ = parse(["--output_dir", str(tmp_path), f"--{alias}", str(value)], grpo_config_cls)
    assert getattr(script, name) == value and getattr(script, alias) is None  # one source of truth: TRL's field
    cfg = write(tmp_path, f"{alias}: {str(value).lower() if isinstance(value, bool) else value}\n")
    script, _ = parse(["--config", cfg, "--output_dir", str(tmp_path), f"--{name}", str(value)], grpo_config_cls)
    assert getattr(script, name) == value  # both names, the same value: fine


@pytest.mark.parametrize("argv, needle", [
    (["--model", "a/b", "--model_name_or_path", "c/d"], "model='a/b' and model_name_or_path='c/d' disagree"),
    # the TRL name set to its own default still counts as given
    (["--dataset", "synthetic:gsm8k", "--dataset_name", "gsm8k"], "give only dataset_name"),
    (["--use_lora", "false", "--use_peft", "true"], "use_lora=False and use_peft=True disagree"),
])
def test_alias_and_trl_name_with_different_values_is_an_error(tmp_path, grpo_config_cls, argv, needle):
    with pytest.raises(UserError, match=needle):
        parse(["--output_dir", str(tmp_path), *argv], grpo_config_cls)
    with pytest.raises(UserError, match="disagree"):
        ScriptArgs(model="a/b", model_name_or_path="c/d")


@pytest.mark.parametrize("argv, needle", [
    (["--dtype", "bfloat16"], "dtype='bfloat16'.*bf16"), (["--use_dora", "true"], "use_dora=True"),
    (["--model_revision", "v2"], "model_revision='v2'"), (["--dataset_streaming", "true"], "dataset_streaming")])
def test_trl_fields_grpo_does_not_implement_are_refused_not_ignored(tmp_path, grpo_config_cls, argv, needle):
    with pytest.raises(UserError, match=needle):
        parse(["--output_dir", str(tmp_path), *argv], grpo_config_cls)


def test_dataset_config_joins_a_hub_spec(tmp_path, grpo_config_cls):
    script, _ = parse(["--output_dir", str(tmp_path), "--dataset_name", "openai/gsm8k", "--dataset_config", "main"],
                      grpo_config_cls)
    assert script.dataset_spec == "openai/gsm8k:main" and script.dataset_name == "openai/gsm8k"
    with pytest.raises(UserError, match="dataset_config='main' with dataset_name='gsm8k'"):
        parse(["--output_dir", str(tmp_path), "--dataset_config", "main"], grpo_config_cls)


def test_unknown_key_still_suggests_the_trl_name(tmp_path, grpo_config_cls):
    with pytest.raises(UserError, match=r"unknown config key 'model_name_or_pth' \(did you mean 'model_name_or_path'\?\)"):
        parse(["--output_dir", str(tmp_path), "--model_name_or_pth", "x"], grpo_config_cls)
    cfg = write(tmp_path, "dataset_nme: gsm8k\n")
    with pytest.raises(UserError, match=r"did you mean 'dataset_name'"):
        parse(["--config", cfg, "--output_dir", str(tmp_path)], grpo_config_cls)


@pytest.mark.slow
def test_a_trl_grpo_yaml_trains_one_step(tmp_path):
    """`grpo train --config <a YAML for trl grpo>` runs: one GRPO step of the embedded model on CPU."""
    import json

    from grpo.cli import commands as cli

    run = tmp_path / "run"
    code = cli.main(["train", "--config", str(TRL_YAML), "--output_dir", str(run), "--eval_size", "0",
                     "--train_limit", "8", "--save_steps", "0", "--disable_tqdm", "true"])
    assert code == 0
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert lines and "reward" in lines[-1]
    adapter = json.loads((run / "checkpoint" / "adapter" / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"], sorted(adapter["target_modules"])) == (8, 16, ["q_proj", "v_proj"])
