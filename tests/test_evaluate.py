"""grpo.evaluate: scoring hand-written completions, the table, and evaluate() on a tiny random model.

Run: ``pytest -q tests/test_evaluate.py``.
"""

import pytest

from grpo.evaluate import format_table, score_completions

FORMATTED_RIGHT = "<reasoning>\nMia has 3 * 4 = 12 apples.\n</reasoning>\n<answer>\n12\n</answer>\n"
PLAIN_RIGHT = "Mia has 3 * 4 = 12 apples. So the answer is 12."
FORMATTED_WRONG = "<reasoning>\n3 + 4 = 7\n</reasoning>\n<answer>\n7\n</answer>\n"
PLAIN_WRONG = "I think it is 7, or maybe 13."


def test_score_completions_cases():
    scores = score_completions([FORMATTED_RIGHT, PLAIN_RIGHT, FORMATTED_WRONG, PLAIN_WRONG], ["12"] * 4)
    assert scores["per_problem"] == [
        {"correct": True, "last_number_correct": True, "format": True},    # format + correct
        {"correct": False, "last_number_correct": True, "format": False},  # right number, no tags
        {"correct": False, "last_number_correct": False, "format": True},  # format, wrong
        {"correct": False, "last_number_correct": False, "format": False},
    ]
    assert scores["accuracy"] == pytest.approx(0.25)
    assert scores["last_number_accuracy"] == pytest.approx(0.5)
    assert scores["format_rate"] == pytest.approx(0.5)


def test_score_completions_number_equivalence():
    # math-verify equivalence: commas and a dollar sign do not make a right answer wrong
    completions = ["<reasoning>\n40 * 30\n</reasoning>\n<answer>\n$1,200\n</answer>\n",
                   "<reasoning>\nhalf\n</reasoning>\n<answer>\n18.0\n</answer>\n"]
    scores = score_completions(completions, ["1200", "18"])
    assert scores["accuracy"] == 1.0


def test_score_completions_answer_tag_beats_last_number():
    # only the <answer> content counts for accuracy, even when a later number is right
    text = "<reasoning>\nmaybe 12\n</reasoning>\n<answer>\n11\n</answer>\nActually 12."
    scores = score_completions([text], ["12"])
    assert scores["accuracy"] == 0.0
    assert scores["last_number_accuracy"] == 1.0


def test_score_completions_empty():
    scores = score_completions([], [])
    assert scores["accuracy"] == 0.0 and scores["per_problem"] == []


REPORT_A = {"n": 4, "accuracy": 0.0625, "last_number_accuracy": 0.125, "format_rate": 0.0, "mean_completion_length": 151.25}
REPORT_B = {"n": 4, "accuracy": 0.5, "last_number_accuracy": 0.75, "format_rate": 1.0, "mean_completion_length": 80.0}


def test_format_table_terminal():
    table = format_table({"base": REPORT_A, "after GRPO": REPORT_B, "after warm-start": None})
    rows = [line.split() for line in table.splitlines()]
    assert rows[0] == ["metric", "base", "after", "GRPO", "after", "warm-start"]
    assert rows[1] == ["accuracy", "6.2%", "50.0%", "-"]
    assert rows[2] == ["last_number_accuracy", "12.5%", "75.0%", "-"]
    assert rows[3] == ["format_rate", "0.0%", "100.0%", "-"]
    assert rows[4] == ["mean_completion_length", "151.2", "80.0", "-"]
    widths = {len(line) for line in table.splitlines()}
    assert len(widths) == 1  # aligned columns


def test_format_table_markdown():
    table = format_table({"base": REPORT_A, "after": {"accuracy": 0.5}}, markdown=True).splitlines()
    assert table[0] == "| metric | base | after |"
    assert table[1] == "| --- | --- | --- |"
    assert table[2] == "| accuracy | 6.2% | 50.0% |"
    assert table[5] == "| mean_completion_length | 151.2 | - |"


@pytest.fixture(scope="module")
def tiny_model_and_tokenizer():
    """A randomly initialised 2-layer Llama with the embedded SmolLM2 tokenizer (seconds, not minutes)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from grpo.models import EMBEDDED_SMOLLM2, load_tokenizer

    tokenizer = load_tokenizer(EMBEDDED_SMOLLM2)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    return LlamaForCausalLM(config), tokenizer


def test_evaluate_on_tiny_model(tiny_model_and_tokenizer):
    from grpo.data import load_gsm8k
    from grpo.evaluate import evaluate

    model, tokenizer = tiny_model_and_tokenizer
    rows = load_gsm8k("synthetic:gsm8k:3", split="test")
    model.train()
    report = evaluate(model, tokenizer, rows, max_new_tokens=6, batch_size=2, progress=False)
    assert model.training  # train/eval mode restored
    assert report["n"] == 3 and len(report["samples"]) == 3
    assert set(report) >= {"accuracy", "last_number_accuracy", "format_rate", "mean_completion_length", "samples"}
    assert 0 < report["mean_completion_length"] <= 6
    for sample, row in zip(report["samples"], rows):
        assert sample["question"] == row["question"] and sample["answer"] == row["answer"]
        assert 1 <= sample["tokens"] <= 6
        assert isinstance(sample["completion"], str)
    # the report's rates agree with re-scoring its own completions
    rescored = score_completions([s["completion"] for s in report["samples"]], list(rows["answer"]))
    assert report["accuracy"] == rescored["accuracy"] and report["format_rate"] == rescored["format_rate"]


def test_generate_greedy_is_deterministic_and_batch_independent(tiny_model_and_tokenizer):
    from grpo.data import make_prompt
    from grpo.evaluate import generate_greedy

    model, tokenizer = tiny_model_and_tokenizer
    prompts = [make_prompt("What is 2 + 2?"), make_prompt("A much longer question about apples and pears?")]
    texts_a, lengths_a = generate_greedy(model, tokenizer, prompts, max_new_tokens=5, batch_size=2, progress=False)
    texts_b, lengths_b = generate_greedy(model, tokenizer, prompts, max_new_tokens=5, batch_size=1, progress=False)
    assert texts_a == texts_b and lengths_a == lengths_b  # left padding does not change greedy outputs
