"""grpo.config: ScriptArgs + trl.GRPOConfig parsed from YAML and --key value overrides; clear errors.

Run: ``pytest -q tests/test_config.py``.
"""

import pytest

from grpo.config import GSM8K_REWARDS, ScriptArgs, parse_config
from grpo.errors import UserError


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
    cfg = write(tmp_path, f"model: some/dir\nlora_r: 8\nlearning_rate: 3.0e-5\nmax_steps: 7\noutput_dir: {tmp_path}/run\n")
    script, training = parse(["--config", cfg, "--lora_r", "4", "--max_steps", "9"], grpo_config_cls)
    assert script.model == "some/dir"
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
