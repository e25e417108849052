"""Decoder checkpoints written by the recipes (causal_lm fine-tune, translation, summarization) are
valid ``--model_name_or_path`` inputs to ``grpo train``: each recipe runs one step, then GRPO runs one step from it
(causal_lm: the GSM8K config; translation and summarization: their own GRPO configs, reference rewards on the
recipe's data, evaluated before/after against the recipe's baseline).

    pytest -q -m slow tests/test_recipe_to_grpo.py
"""

import json

import pytest

RECIPE_RUNS = {
    "causal_lm": ["--config", "recipes/configs/causal_lm_finetune.yaml", "--stdlib_files", "4",
                  "--max_chars_per_file", "3000", "--eval_fraction", "0.5", "--max_train_samples", "4",
                  "--max_eval_samples", "2"],
    "translation": ["--config", "recipes/configs/translation.yaml", "--max_train_samples", "4",
                    "--max_eval_samples", "2", "--generation_max_length", "8"],
    "summarization": ["--config", "recipes/configs/summarization.yaml", "--max_train_samples", "4",
                      "--max_eval_samples", "2", "--generation_max_length", "8"],
}


GRPO_RUNS = {  # the config each recipe's checkpoint feeds, on tiny data
    "causal_lm": ["--config", "grpo/configs/gsm8k.yaml", "--warm_start", "false", "--dataset_name", "synthetic:gsm8k:16",
                  "--eval_size", "0", "--periodic_eval_steps", "0"],
    "translation": ["--config", "grpo/configs/translate_en_fr.yaml", "--train_limit", "4", "--eval_size", "2",
                    "--eval_max_new_tokens", "4"],
    "summarization": ["--config", "grpo/configs/summarize.yaml", "--train_limit", "4", "--eval_size", "2",
                      "--eval_max_new_tokens", "4"],
}


@pytest.mark.slow
@pytest.mark.parametrize("recipe", sorted(RECIPE_RUNS))
def test_grpo_trains_from_a_recipe_checkpoint(recipe, tmp_path):
    import recipes
    from grpo.cli import commands as cli

    checkpoint = tmp_path / "recipe"
    assert recipes.get(recipe).main([*RECIPE_RUNS[recipe], "--output_dir", str(checkpoint), "--max_steps", "1",
                                     "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "2"]) == 0
    assert (checkpoint / "config.json").exists() and (checkpoint / "chat_template.jinja").exists()

    run = tmp_path / "grpo"
    code = cli.main(["train", *GRPO_RUNS[recipe], "--model_name_or_path", str(checkpoint), "--output_dir", str(run),
                     "--max_steps", "1", "--num_generations", "2", "--per_device_train_batch_size", "2",
                     "--gradient_accumulation_steps", "1", "--max_completion_length", "8", "--save_steps", "0",
                     "--disable_tqdm", "true"])
    assert code == 0
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert lines and "reward" in lines[-1]
    if recipe != "causal_lm":  # the recipe's checkpoint scored before and after on the recipe's held-out rows
        before, after = (json.loads((run / name).read_text()) for name in ("eval_before.json", "eval_after.json"))
        assert before["task"] == after["task"] == recipe and before["n"] == after["n"] == 2
        assert "paired" in json.loads((run / "eval_comparison.json").read_text())[0]
