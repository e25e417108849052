"""The ``grpo`` command: bad input gives one ``error:`` line and exit code 2, help exits 0.

Run: ``pytest -q tests/test_cli.py``. Most cases call ``grpo.cli.main([...])`` in-process (the
errors happen before any model is loaded, so each takes well under a second once TRL is
imported); ``python -m grpo.cli`` runs as a real subprocess for the process exit code and the exact
stderr (``grpo eval`` in the fast tier, ``grpo train`` under ``-m slow``).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from grpo.cli.commands import main
from grpo.common.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "gsm8k"
GOOD = str(FIXTURES / "good.jsonl")


def run(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(code, err, *needles):
    assert code == 2
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture
def train_argv(tmp_path):
    """`grpo train` flags for a tiny offline run directory under tmp_path."""
    return ["train", "--output_dir", str(tmp_path / "run"), "--dataset_name", GOOD, "--eval_size", "1"]


def test_missing_dataset_file(capsys, tmp_path, train_argv):
    missing = str(tmp_path / "missing.jsonl")
    code, _, err = run(capsys, [*train_argv, "--dataset_name", missing])
    assert_one_error_line(code, err, "missing.jsonl", "does not exist")


def test_broken_jsonl_line(capsys, train_argv):
    code, _, err = run(capsys, [*train_argv, "--dataset_name", str(FIXTURES / "broken_json.jsonl")])
    assert_one_error_line(code, err, "broken_json.jsonl:3", "JSON")


def test_row_without_final_answer(capsys, train_argv):
    code, _, err = run(capsys, [*train_argv, "--dataset_name", str(FIXTURES / "no_hash.jsonl")])
    assert_one_error_line(code, err, "no_hash.jsonl:2", "####")


def test_unknown_model_spec(capsys, train_argv):
    code, _, err = run(capsys, [*train_argv, "--model_name_or_path", "embedded:gpt5"])
    assert_one_error_line(code, err, "embedded:gpt5", "embedded:smollm2-135m-instruct")


def test_missing_model_dir(capsys, tmp_path, train_argv):
    code, _, err = run(capsys, [*train_argv, "--model_name_or_path", str(tmp_path / "no_model")])
    assert_one_error_line(code, err, "no_model", "does not exist")


def test_hub_model_while_offline(capsys, monkeypatch, train_argv):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run(capsys, [*train_argv, "--model_name_or_path", "someone/not-cached-model-xyz"])
    assert_one_error_line(code, err, "someone/not-cached-model-xyz", "HF_HUB_OFFLINE")


def test_hub_dataset_while_offline(capsys, monkeypatch, train_argv):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run(capsys, [*train_argv, "--dataset_name", "openai/gsm8k"])
    assert_one_error_line(code, err, "openai/gsm8k", "HF_HUB_OFFLINE")


def test_unknown_reward_name(capsys, train_argv):
    code, _, err = run(capsys, [*train_argv, "--reward_funcs", "correctness", "corectness_typo"])
    assert_one_error_line(code, err, "corectness_typo", "xml_count")


def test_config_key_typo_on_command_line(capsys, train_argv):
    code, _, err = run(capsys, [*train_argv, "--lerning_rate", "1e-5"])
    assert_one_error_line(code, err, "lerning_rate", "learning_rate")


def test_config_key_typo_in_yaml(capsys, tmp_path):
    cfg = tmp_path / "typo.yaml"
    cfg.write_text((ROOT / "grpo" / "configs" / "gsm8k.yaml").read_text() + "\nnum_generatoins: 4\n")
    code, _, err = run(capsys, ["train", "--config", str(cfg), "--output_dir", str(tmp_path / "run")])
    assert_one_error_line(code, err, "num_generatoins", "did you mean 'num_generations'")


def test_missing_config_file(capsys, tmp_path):
    code, _, err = run(capsys, ["train", "--config", str(tmp_path / "nope.yaml")])
    assert_one_error_line(code, err, "nope.yaml", "does not exist")


def test_sft_missing_dataset(capsys, tmp_path):
    code, _, err = run(capsys, ["sft", "--output_dir", str(tmp_path / "run"), "--dataset_name", str(tmp_path / "x.jsonl")])
    assert_one_error_line(code, err, "x.jsonl", "does not exist")


@pytest.mark.parametrize("command", [["train", "--backend", "trl"], ["train", "--backend", "native"], ["sft"]])
def test_pad_to_multiple_of_below_one_is_refused_before_any_model_or_eval(capsys, tmp_path, command):
    # the warm-start's SFTConfig reads it on either backend: refused up front, not after the base evaluation
    code, _, err = run(capsys, [*command, "--output_dir", str(tmp_path / "run"), "--dataset_name", GOOD,
                                "--eval_base", "true", "--pad_to_multiple_of", "0"])
    assert_one_error_line(code, err, "pad_to_multiple_of must be >= 1")
    assert not (tmp_path / "run" / "eval_before.json").exists()


def test_sft_refuses_push_to_hub_instead_of_ignoring_it(capsys, tmp_path):
    code, _, err = run(capsys, ["sft", "--output_dir", str(tmp_path / "run"), "--push_to_hub", "true",
                                "--hub_model_id", "me/sft"])
    assert_one_error_line(code, err, "grpo sft does not push", "grpo export")
    assert not (tmp_path / "run" / "sft_checkpoint").exists()


def test_eval_errors(capsys, tmp_path):
    code, _, err = run(capsys, ["eval", "--model", "embedded:gpt5", "--dataset", GOOD])
    assert_one_error_line(code, err, "embedded:gpt5")
    code, _, err = run(capsys, ["eval", "--model", str(tmp_path), "--dataset", GOOD])
    assert_one_error_line(code, err, "not a checkpoint directory")
    code, _, err = run(capsys, ["eval", "--model", "embedded:smollm2-135m-instruct",
                                "--dataset", str(FIXTURES / "missing_question.jsonl")])
    assert_one_error_line(code, err, "missing_question.jsonl:3", "'question'")


@pytest.mark.parametrize("flag, value, needle", [
    ("--temperature", "0", "temperature=0.0: must be > 0"), ("--top_p", "1.5", "top_p=1.5"),
    ("--top_p", "0", "top_p=0.0"), ("--top_k", "-1", "top_k=-1"),
    ("--max_completion_length", "0", "max_completion_length=0"),
    ("--num_generations", "1", "generations")])  # TRL's own check fires first
def test_sampling_settings_refused_at_parse_time(capsys, train_argv, flag, value, needle):
    code, _, err = run(capsys, [*train_argv, flag, value])
    assert_one_error_line(code, err, needle)
    assert not (Path(train_argv[2]) / "eval_before.json").exists()  # nothing ran


@pytest.mark.parametrize("files, needle", [
    ({"config.json": ""}, "config.json is not valid JSON"),
    ({"config.json": "{}"}, "no 'model_type'"),
    ({"config.json": '{"model_type": "llama"}'}, "no weights"),
    ({"config.json": '{"model_type": "llama"}', "model.safetensors": ""}, "no tokenizer files"),
    ({"adapter_config.json": "{}"}, "no base_model_name_or_path")])
def test_eval_names_what_a_broken_checkpoint_dir_lacks(capsys, tmp_path, files, needle):
    model_dir = tmp_path / "ckpt"
    model_dir.mkdir()
    for name, text in files.items():
        (model_dir / name).write_text(text)
    code, _, err = run(capsys, ["eval", "--model", str(model_dir), "--dataset", GOOD])
    assert_one_error_line(code, err, str(model_dir), needle)


def test_unknown_command(capsys):
    code, _, err = run(capsys, ["trian"])
    assert_one_error_line(code, err, "'trian'", "train")


def test_top_level_help(capsys):
    code, out, _ = run(capsys, ["--help"])
    assert code == 0
    for command in ("grpo train", "grpo sft", "grpo eval", "grpo rewards", "grpo recipe"):
        assert command in out
    code, out2, _ = run(capsys, [])
    assert code == 0 and out2 == out


@pytest.mark.parametrize("command, flag", [("eval", "--max_new_tokens"), ("train", "--num_generations"),
                                           ("train", "--reward_funcs"), ("sft", "--sft_examples")])
def test_command_help(capsys, command, flag):
    try:
        code = main([command, "--help"])
    except SystemExit as exit_info:  # argparse's own --help (grpo eval)
        code = exit_info.code
    assert code in (0, None)
    assert flag in capsys.readouterr().out


def test_train_help_is_short_grouped_and_fast(tmp_path):
    """`grpo train --help`: its own usage line, --config listed, the toolkit's options, then the most-used TRL
    fields, the rest behind --help-all; one screenful-ish, answered without importing TRL."""
    import time

    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "grpo.cli", "train", "--help"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    seconds = time.perf_counter() - start
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr
    assert out.startswith("usage: grpo train ") and "--config FILE.yaml" in out
    toolkit, most_used = out.index("\ngrpo-toolkit options"), out.index("\nmost-used TRL options")
    assert out.index("\n  --config ") < toolkit < out.index("\n  --reward_funcs ") < out.index("\n  --backend ") < most_used
    assert most_used < out.index("\n  --learning_rate ") < out.index("\n  --num_generations ")
    assert "--adam_beta1" not in out and "--help-all" in out
    assert len(out.splitlines()) < 160 and len(out) < 12_000
    assert seconds < 2.0, f"grpo train --help took {seconds:.2f} s"


def test_help_all_lists_every_field(capsys):
    from grpo.config.help import format_help

    text = format_help("train", full=True, width=100)
    assert "--adam_beta1" in text and "--vllm_mode" in text and "--lora_task_type" in text
    assert text.index("\ngrpo-toolkit options") < text.index("\nmost-used TRL") < text.index("\nall other options")


def test_help_snapshot_matches_installed_trl():
    """help_fields.json is what `python -m grpo.config.help` writes from the installed ScriptArgs + GRPOConfig."""
    import json

    from trl import GRPOConfig

    from grpo.config.help import SNAPSHOT, field_entries, short_entries
    from grpo.config.script_args import ScriptArgs

    live = json.loads(json.dumps(short_entries(field_entries((ScriptArgs, GRPOConfig)))))
    assert json.loads(SNAPSHOT.read_text()) == live, "stale: run `python -m grpo.config.help`"


# --------------------------------------------------------------------------------------------
# overrides on top of --config compose


GSM8K_YAML = str(ROOT / "grpo" / "configs" / "gsm8k.yaml")
COURSE_YAML = str(ROOT / "grpo" / "configs" / "gsm8k_course.yaml")  # the course's five rewards, integer_answer x2
USER_REWARDS = str(Path(__file__).parent / "fixtures" / "rewards" / "user_rewards.py")


def test_reward_funcs_override_resets_the_configs_weights_and_kwargs(caplog, tmp_path):
    import logging

    from grpo.cli.commands import _training_config
    from grpo.cli.pipeline import load_reward_funcs

    with caplog.at_level(logging.INFO, logger="grpo"):
        script_args, training_args = _training_config(["--config", COURSE_YAML, "--reward_funcs", f"{USER_REWARDS}:brevity",
                                                       "--output_dir", str(tmp_path)])
    assert training_args.reward_weights is None and not script_args.reward_kwargs
    notes = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("reward_weights [1.0, 1.0, 1.0, 2.0, 1.0]" in n and "reset" in n for n in notes), notes
    assert any("reward_kwargs for correctness are dropped" in n for n in notes), notes
    funcs = load_reward_funcs(script_args.reward_funcs, training_args.reward_weights, script_args.reward_kwargs)
    assert [f.__name__ for f in funcs] == ["brevity"]


def test_reward_funcs_override_keeps_matching_and_explicit_settings(tmp_path):
    from grpo.cli.commands import _training_config

    script_args, training_args = _training_config([
        "--config", COURSE_YAML, "--reward_funcs", "xml_count,soft_format,strict_format,integer_answer,correctness",
        "--output_dir", str(tmp_path)])
    assert training_args.reward_weights == [1.0, 1.0, 1.0, 2.0, 1.0]  # same length: the config's weights stay
    assert script_args.reward_kwargs == {"correctness": {"extractors": ["answer_tag"]}}
    script_args, training_args = _training_config(["--config", COURSE_YAML, "--reward_funcs", "correctness",
                                                   "--reward_weights", "2.0", "--output_dir", str(tmp_path)])
    assert training_args.reward_weights == [2.0] and script_args.reward_kwargs == {"correctness": {"extractors": ["answer_tag"]}}


def test_wrong_reward_weights_on_the_command_line_say_which_flag(tmp_path):
    from grpo.cli.commands import _training_config
    from grpo.cli.pipeline import load_reward_funcs

    script_args, training_args = _training_config(["--config", GSM8K_YAML, "--reward_funcs", "correctness", "xml_count",
                                                   "--reward_weights", "1.0", "--output_dir", str(tmp_path)])
    with pytest.raises(UserError, match="give --reward_weights with 2 values, one per reward"):
        load_reward_funcs(script_args.reward_funcs, training_args.reward_weights, script_args.reward_kwargs)


def test_without_config_the_defaults_are_announced_and_short_warmup_warned(caplog, tmp_path):
    import logging

    from grpo.cli.commands import _training_config

    with caplog.at_level(logging.INFO, logger="grpo"):
        _training_config(["--output_dir", str(tmp_path), "--max_steps", "2", "--warmup_steps", "5"])
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "no --config" in text and "grpo/configs/gsm8k.yaml" in text
    assert "max_steps=2 <= warmup_steps=5" in text


# --------------------------------------------------------------------------------------------
# preflight: a model that cannot generate


def test_encoder_checkpoint_is_refused_in_one_line(capsys, train_argv):
    code, _, err = run(capsys, [*train_argv, "--model_name_or_path", "embedded:minilm-l6"])
    assert_one_error_line(code, err, "not a causal language model (BertModel)", "grpo recipe causal_lm")


def test_recipe_encoder_output_is_refused(capsys, tmp_path, train_argv):
    import json

    ckpt = tmp_path / "ner"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps({"architectures": ["BertForTokenClassification"], "model_type": "bert"}))
    (ckpt / "model.safetensors").write_bytes(b"")
    (ckpt / "tokenizer.json").write_text("{}")
    code, _, err = run(capsys, [*train_argv, "--model_name_or_path", str(ckpt)])
    assert_one_error_line(code, err, "BertForTokenClassification", "token_classification recipes produce encoders")
    code, _, err = run(capsys, ["sft", "--output_dir", str(tmp_path / "s"), "--model_name_or_path", str(ckpt)])
    assert_one_error_line(code, err, "not a causal language model")


def test_mistyped_local_path_is_not_called_a_hub_id(capsys, tmp_path, monkeypatch, train_argv):
    (tmp_path / "runs" / "checkpoint").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, [*train_argv, "--model_name_or_path", "runs/chekpoint"])
    assert_one_error_line(code, err, "model directory 'runs/chekpoint' does not exist",
                          "did you mean 'runs/checkpoint'?")


# --------------------------------------------------------------------------------------------
# one real process: the exit code and stderr the user sees


def run_process(tmp_path, *argv):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "grpo.cli", *argv], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def assert_process_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    # exactly one line: no library warnings around the error
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for needle in needles:
        assert needle in lines[0]


def test_subprocess_exit_code_and_one_error_line(tmp_path):
    # `grpo eval` reads the data before importing transformers/trl, so this process takes seconds
    proc = run_process(tmp_path, "eval", "--model", "embedded:smollm2-135m-instruct",
                       "--dataset", str(FIXTURES / "broken_json.jsonl"))
    assert_process_error(proc, "broken_json.jsonl:3")


@pytest.mark.slow
def test_subprocess_train_error_is_one_line(tmp_path):
    # `grpo train` builds GRPOConfig first (transformers + trl imports, ~20 s on a busy CPU); transformers'
    # FutureWarnings used to add two lines to stderr here
    proc = run_process(tmp_path, "train", "--output_dir", str(tmp_path / "run"),
                       "--dataset_name", str(FIXTURES / "broken_json.jsonl"))
    assert_process_error(proc, "broken_json.jsonl:3")


def test_subprocess_help_exit_zero():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "grpo.cli", "--help"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and "grpo train" in proc.stdout


def test_importing_grpo_modules_stays_light():
    """STYLE 14: heavy dependencies load inside the functions that need them, so `grpo --help` is instant.

    Not grpo.cli.pipeline: it imports the whole stack at its top (the graph in plain sight) and
    is itself imported only inside the commands that run a job."""
    code = ("import sys, grpo, grpo.cli.commands, grpo.config.parser, grpo.modeling.models, grpo.data.loaders, "
            "grpo.data.synthetic, grpo.runs.run_dir, grpo.evaluation.evaluate, grpo.training.trl_backend, "
            "grpo.training.sft, grpo.modeling.hub, grpo.runs.publish, grpo.training.diagnostics; "
            "print(' '.join(m for m in ('torch', 'transformers', 'trl', 'peft', 'vllm', 'datasets', 'matplotlib') "
            "if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"imported at module level: {proc.stdout.strip()}"


def test_closing_table_without_evaluation_says_so(capsys):
    from grpo.cli.commands import _print_closing_table

    _print_closing_table({"base": None, "after GRPO": None})
    out = capsys.readouterr().out
    assert out.startswith("not evaluated (eval_size 0)") and "metric" not in out


def test_recipe_help_is_grouped_and_short(capsys):
    with pytest.raises(SystemExit) as info:
        main(["recipe", "masked_lm", "--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0 and out.startswith("usage: grpo recipe masked_lm ")
    assert out.index("\nmasked_lm options") < out.index("\nmost-used Trainer options") < out.index("\n  --learning_rate ")
    assert "--adam_beta1" not in out and len(out.splitlines()) < 120
