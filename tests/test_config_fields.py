"""Every GRPO-specific trl.GRPOConfig field is classified for the native backend (grpo/training/native/fields.py),
docs/grpo_config_fields.md is the table generated from that, and out-of-range counts are refused at parse time.

Run: pytest tests/test_config_fields.py      (seconds)
"""

from pathlib import Path

import pytest

from grpo.common.errors import UserError
from grpo.training.native.fields import IGNORED, NOTES, REFUSED, SUPPORTED, classify, fields_table, grpo_fields

DOC = Path(__file__).resolve().parent.parent / "docs" / "grpo_config_fields.md"


def test_every_grpo_field_is_classified_exactly_once():
    """Fails when a TRL release adds a GRPOConfig field nobody has put in SUPPORTED, IGNORED or REFUSED."""
    names = [f.name for f in grpo_fields()]
    unclassified = [n for n in names if classify(n) == "unclassified"]
    assert not unclassified, f"classify these new GRPOConfig fields in grpo/training/native/fields.py: {unclassified}"
    twice = [n for n in names if (n in SUPPORTED) + (n in IGNORED) + (n in REFUSED) != 1]
    assert not twice, f"fields in more than one list: {twice}"
    assert not set(REFUSED) - set(names), "REFUSED names fields GRPOConfig no longer has"
    import dataclasses

    from trl import GRPOConfig

    assert not set(NOTES) - {f.name for f in dataclasses.fields(GRPOConfig)}, "NOTES names fields GRPOConfig lacks"


def test_the_native_backend_covers_most_fields():
    verdicts = [classify(f.name) for f in grpo_fields()]
    assert sum(v.startswith(("honoured", "ignored")) for v in verdicts) >= 55


def test_docs_table_is_current():
    assert DOC.read_text() == fields_table(), "run: python scripts/grpo_config_fields.py"


def test_refusal_names_the_field_and_the_reason(tmp_path):
    from trl import GRPOConfig

    from grpo.training.native.fields import check_supported

    args = GRPOConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, router_aux_loss_coef=0.01)
    with pytest.raises(UserError, match=r"router_aux_loss_coef=0.01 .*Mixture-of-Experts.*--backend trl"):
        check_supported(args)


# ---------------------------------------------------------------------------- out-of-range counts


def parse(argv, tmp_path):
    from trl import GRPOConfig

    from grpo.config.parser import check_ranges, parse_config
    from grpo.config.script_args import ScriptArgs

    _, training = parse_config([*argv, "--output_dir", str(tmp_path)], (ScriptArgs, GRPOConfig))
    check_ranges(training)
    return training


@pytest.mark.parametrize("argv, needle", [
    (["--max_steps", "-3"], "max_steps=-3: must be >= 1 .* or -1"), (["--max_steps", "0"], "max_steps=0"),
    (["--per_device_train_batch_size", "0"], "per_device_train_batch_size=0"),
    (["--gradient_accumulation_steps", "0"], "gradient_accumulation_steps=0"),
    (["--num_iterations", "0"], "num_iterations=0"), (["--steps_per_generation", "0"], "steps_per_generation=0"),
    (["--ref_model_sync_steps", "-2"], "ref_model_sync_steps=-2"), (["--num_train_epochs", "0"], "num_train_epochs=0"),
    (["--save_total_limit", "-1"], "save_total_limit=-1"), (["--seed", "-5"], "seed=-5"),
    (["--sft_lora_dropout", "1.0"], r"sft_lora_dropout=1.0: must be in \[0, 1\)")])
def test_out_of_range_counts_are_refused_in_one_line(tmp_path, argv, needle):
    with pytest.raises(UserError, match=needle) as err:
        parse(argv, tmp_path)
    assert "\n" not in str(err.value)


def test_in_range_counts_pass(tmp_path):
    assert parse(["--max_steps", "-1"], tmp_path).max_steps == -1
    assert parse(["--max_steps", "3", "--steps_per_generation", "2"], tmp_path).steps_per_generation == 2


def test_given_keys_reads_yaml_and_flags(tmp_path):
    from grpo.config.parser import given_keys

    cfg = tmp_path / "c.yaml"
    cfg.write_text("per_device_train_batch_size: 2\nlearning_rate: 1.0e-5\n")
    assert given_keys(["--config", str(cfg), "--max_steps", "3", "--model=x"]) == {
        "per_device_train_batch_size", "learning_rate", "max_steps", "model_name_or_path"}
    assert given_keys([]) == frozenset()
