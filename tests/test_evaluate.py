"""grpo.evaluation.evaluate: scoring hand-written completions, intervals, paired comparison, the tables, and
evaluate() on a tiny random model.

Run: ``pytest -q tests/test_evaluate.py``.
"""

import math

import pytest

from grpo.common.errors import UserError
from grpo.evaluation.evaluate import compare, compare_columns, format_comparisons, format_table, score_completions

Z95 = 1.959963984540054  # the 0.975 normal quantile

FORMATTED_RIGHT = "<reasoning>\nMia has 3 * 4 = 12 apples.\n</reasoning>\n<answer>\n12\n</answer>\n"
PLAIN_RIGHT = "Mia has 3 * 4 = 12 apples. So the answer is 12."
FORMATTED_WRONG = "<reasoning>\n3 + 4 = 7\n</reasoning>\n<answer>\n7\n</answer>\n"
PLAIN_WRONG = "I think it is 7, or maybe 13."


def test_score_completions_cases():
    scores = score_completions([FORMATTED_RIGHT, PLAIN_RIGHT, FORMATTED_WRONG, PLAIN_WRONG], ["12"] * 4)
    assert scores["per_problem"] == [
        {"correct": True, "last_number_correct": True, "format": True, "numeric_answer": True,  # format + correct
         "placeholder_reasoning": False},
        {"correct": False, "last_number_correct": True, "format": False, "numeric_answer": False,  # right number, no tags
         "placeholder_reasoning": False},
        {"correct": False, "last_number_correct": False, "format": True, "numeric_answer": True,  # format, wrong
         "placeholder_reasoning": False},
        {"correct": False, "last_number_correct": False, "format": False, "numeric_answer": False,
         "placeholder_reasoning": False},
    ]
    assert scores["accuracy"] == pytest.approx(0.25)
    assert scores["last_number_accuracy"] == pytest.approx(0.5)
    assert scores["format_rate"] == pytest.approx(0.5)
    assert scores["n"] == 4 and scores["confidence"] == 0.95
    assert (scores["accuracy_count"], scores["last_number_accuracy_count"], scores["format_rate_count"]) == (1, 2, 2)
    assert "clipped" not in scores  # no generation flags given


def test_score_completions_placeholder_reasoning_rate():
    # the demo's reward hack: the prompt's template copied, then a number; it has the format and a numeric answer
    copied = "<reasoning>\n...\n</reasoning>\n<answer>\n2\n</answer>\n"
    empty = "<reasoning>\n\n</reasoning>\n<answer>\n12\n</answer>\n"
    prose = "<reasoning>\nI think about the apples carefully.\n</reasoning>\n<answer>\n12\n</answer>\n"
    scores = score_completions([copied, empty, prose, FORMATTED_RIGHT, PLAIN_RIGHT], ["12"] * 5)
    assert [p["placeholder_reasoning"] for p in scores["per_problem"]] == [True, True, True, False, False]
    assert scores["format_rate"] == pytest.approx(0.8)  # the layout alone cannot tell them apart
    assert scores["placeholder_reasoning_rate"] == pytest.approx(0.6)
    assert scores["placeholder_reasoning_rate_count"] == 3
    low, high = scores["placeholder_reasoning_rate_ci"]
    assert low < 0.6 < high
    assert "placeholder_reasoning_rate" in format_table({"after": scores})
    # the hash prompt asks for no reasoning block: no rate
    assert "placeholder_reasoning_rate" not in score_completions(["#### 12"], ["12"], prompt_format="hash")


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
    assert scores["n"] == 0 and scores["accuracy_ci"] is None  # no problems: no interval


def test_score_completions_intervals_and_clipped():
    # 8 right of 20: Wilson by hand, (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)
    completions = [FORMATTED_RIGHT] * 8 + [PLAIN_WRONG] * 12
    clipped = [False] * 15 + [True] * 5
    scores = score_completions(completions, ["12"] * 20, clipped=clipped)
    p, n = 0.4, 20
    centre, half = p + Z95 ** 2 / (2 * n), Z95 * math.sqrt(p * (1 - p) / n + Z95 ** 2 / (4 * n * n))
    expected = [(centre - half) / (1 + Z95 ** 2 / n), (centre + half) / (1 + Z95 ** 2 / n)]
    assert scores["accuracy_ci"] == pytest.approx(expected, abs=1e-12)
    assert scores["accuracy_ci"] == pytest.approx([0.21881, 0.61342], abs=5e-6)
    assert scores["format_rate_ci"] == scores["accuracy_ci"]  # the same 8 of 20
    # 5 of 20 clipped; per-problem flags carry it
    assert scores["clipped"] == 0.25 and scores["clipped_count"] == 5
    assert [p["clipped"] for p in scores["per_problem"]] == clipped
    low, high = scores["clipped_ci"]
    assert low < 0.25 < high
    # 0 of 32 and 32 of 32: the interval touches the boundary, [0, z²/(n + z²)] and its mirror
    none = score_completions([PLAIN_WRONG] * 32, ["12"] * 32)
    assert none["accuracy_ci"] == pytest.approx([0.0, Z95 ** 2 / (32 + Z95 ** 2)], abs=1e-12)
    every = score_completions([FORMATTED_RIGHT] * 32, ["12"] * 32)
    assert every["accuracy_ci"] == pytest.approx([32 / (32 + Z95 ** 2), 1.0], abs=1e-12)


REPORT_A = {"n": 4, "accuracy": 0.0625, "last_number_accuracy": 0.125, "format_rate": 0.0, "mean_completion_length": 151.25}
REPORT_B = {"n": 4, "accuracy": 0.5, "last_number_accuracy": 0.75, "format_rate": 1.0, "mean_completion_length": 80.0}


def test_format_table_terminal():
    # reports without intervals (written before they existed) show the bare rates
    table = format_table({"base": REPORT_A, "after GRPO": REPORT_B, "after warm-start": None})
    rows = [line.split() for line in table.splitlines()]
    assert rows[0] == ["metric", "(95%", "interval)", "base", "after", "GRPO", "after", "warm-start"]
    assert rows[1] == ["n", "4", "4", "-"]
    assert rows[2] == ["accuracy", "6.2%", "50.0%", "-"]
    assert rows[3] == ["last_number_accuracy", "12.5%", "75.0%", "-"]
    assert rows[4] == ["format_rate", "0.0%", "100.0%", "-"]
    assert rows[5] == ["mean_completion_length", "151.2", "80.0", "-"]
    widths = {len(line) for line in table.splitlines()}
    assert len(widths) == 1  # aligned columns


def test_format_table_shows_intervals_n_and_clipped():
    report = score_completions([FORMATTED_RIGHT] * 8 + [PLAIN_WRONG] * 12, ["12"] * 20, clipped=[True] + [False] * 19)
    report["mean_completion_length"] = 99.0
    lines = format_table({"base": report}).splitlines()
    assert lines[1].split() == ["n", "20"]
    assert lines[2].split() == ["accuracy", "40.0%", "[21.9,", "61.3]"]  # Wilson 8/20 = [0.21881, 0.61342]
    assert lines[4].split() == ["format_rate", "40.0%", "[21.9,", "61.3]"]
    assert lines[5].split()[:4] == ["numeric_answer_rate", "40.0%", "[21.9,", "61.3]"]
    assert lines[6].split()[:4] == ["placeholder_reasoning_rate", "0.0%", "[0.0,", "16.1]"]  # Wilson 0/20
    assert lines[7].split()[:2] == ["clipped", "5.0%"]
    assert len({len(line) for line in lines}) == 1


def test_format_table_markdown():
    table = format_table({"base": REPORT_A, "after": {"accuracy": 0.5, "accuracy_ci": [0.091, 0.17]}},
                         markdown=True).splitlines()
    assert table[0] == "| metric (95% interval) | base | after |"
    assert table[1] == "| --- | --- | --- |"
    assert table[2] == "| n | 4 | - |"
    assert table[3] == "| accuracy | 6.2% | 50.0% [9.1, 17.0] |"
    assert table[6] == "| mean_completion_length | 151.2 | - |"


# ---------------------------------------------------------------------------- paired comparison


def report_of(completions, questions=None):
    """An evaluate()-shaped report from hand-written completions (gold answer 12 everywhere)."""
    scores = score_completions(completions, ["12"] * len(completions))
    questions = questions or [f"problem {i}" for i in range(len(completions))]
    scores["samples"] = [{"question": q, **flags} for q, flags in zip(questions, scores.pop("per_problem"))]
    return scores


# problem by problem: 1 right in both, 1 lost (right -> wrong), 6 gained (wrong -> right)
BEFORE = report_of([FORMATTED_RIGHT, FORMATTED_RIGHT] + [PLAIN_WRONG] * 6)
AFTER = report_of([FORMATTED_RIGHT, FORMATTED_WRONG] + [FORMATTED_RIGHT] * 6)


def test_compare_counts_difference_and_mcnemar():
    from grpo.evaluation.statistics import newcombe_paired_interval

    result = compare(BEFORE, AFTER)
    assert result["n"] == 8
    acc = result["accuracy"]
    assert (acc["both"], acc["lost"], acc["gained"], acc["neither"]) == (1, 1, 6, 0)
    assert acc["before"] == 0.25 and acc["after"] == 0.875 and acc["difference"] == pytest.approx(0.625)
    assert acc["mcnemar_p"] == pytest.approx(2 * (1 + 7) / 2 ** 7)  # 0.125: exact binomial on 7 discordant pairs
    assert acc["difference_ci"] == pytest.approx(list(newcombe_paired_interval(1, 1, 6, 0)))
    fmt = result["format_rate"]  # format: 2 before, 8 after, none lost
    assert (fmt["lost"], fmt["gained"]) == (0, 6) and fmt["mcnemar_p"] == pytest.approx(2 / 2 ** 6)
    assert set(result) == {"n", "accuracy", "format_rate", "numeric_answer_rate", "placeholder_reasoning_rate",
                           "last_number_accuracy"}


def test_compare_same_report_is_no_change():
    result = compare(BEFORE, BEFORE)
    assert result["accuracy"]["difference"] == 0 and result["accuracy"]["mcnemar_p"] == 1.0


def test_compare_refuses_different_problems():
    other = report_of([FORMATTED_RIGHT] * 8, questions=[f"other {i}" for i in range(8)])
    with pytest.raises(UserError, match="different problems"):
        compare(BEFORE, other)
    with pytest.raises(UserError, match="8 and 3 problems"):
        compare(BEFORE, report_of([FORMATTED_RIGHT] * 3))
    with pytest.raises(UserError, match="no per-problem samples"):
        compare(REPORT_A, BEFORE)


def test_compare_columns_pairs():
    middle = report_of([FORMATTED_RIGHT] * 2 + [FORMATTED_WRONG] * 6)
    three = compare_columns({"base": BEFORE, "after warm-start": middle, "after GRPO": AFTER})
    assert [(c["before"], c["after"]) for c in three] == [
        ("base", "after warm-start"), ("after warm-start", "after GRPO"), ("base", "after GRPO")]
    assert three[2]["accuracy"] == compare(BEFORE, AFTER)["accuracy"]
    assert [(c["before"], c["after"]) for c in compare_columns({"base": BEFORE, "after": AFTER})] == [("base", "after")]
    assert compare_columns({"base": BEFORE}) == []
    broken = compare_columns({"base": BEFORE, "after": REPORT_B})
    assert "no per-problem samples" in broken[0]["error"]


def test_format_comparisons_text():
    text = format_comparisons(compare_columns({"base": BEFORE, "after GRPO": AFTER}))
    lines = text.splitlines()
    assert lines[0].startswith("Paired on the same 8 problems")
    assert lines[1].split()[:3] == ["pair", "metric", "change"]
    acc = compare(BEFORE, AFTER)["accuracy"]
    low, high = acc["difference_ci"]
    # accuracy: +62.5 points, p = 0.125 >= 0.05 -> said in words
    assert lines[2].split() == ["base", "->", "after", "GRPO", "accuracy", "+62.5", "pts",
                                f"[{100 * low:+.1f},", f"{100 * high:+.1f}]", "1/6", "0.125",
                                "no", "significant", "change"]
    # format: 6 gained, none lost, p = 2/64 = 0.031 < 0.05
    assert lines[3].split()[4:6] == ["format_rate", "+75.0"]
    assert lines[3].split()[-3:] == ["0/6", "0.031", "significant"]
    assert format_comparisons([]) == ""
    markdown = format_comparisons(compare_columns({"base": BEFORE, "after GRPO": AFTER}), markdown=True)
    assert "| base -> after GRPO | accuracy | +62.5 pts" in markdown and "| no significant change |" in markdown


def test_format_comparisons_names_a_pair_it_cannot_compare():
    text = format_comparisons(compare_columns({"base": BEFORE, "after": report_of([FORMATTED_RIGHT] * 3)}))
    assert "base -> after: not compared" in text and "different problems" in text


def test_closing_table_prints_paired_rows(capsys):
    from grpo.cli.commands import _print_closing_table

    _print_closing_table({"base": BEFORE, "after warm-start": None, "after GRPO": AFTER})
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[-5:] == ["base", "after", "warm-start", "after", "GRPO"]  # None: a "-" column
    assert "Paired on the same 8 problems" in out and "base -> after GRPO" in out
    assert "no significant change" in out and "after warm-start ->" not in out  # nothing to pair with


@pytest.fixture(scope="module")
def tiny_model_and_tokenizer():
    """A randomly initialised 2-layer Llama with the embedded SmolLM2 tokenizer (seconds, not minutes)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from grpo.modeling.models import EMBEDDED_SMOLLM2, load_tokenizer

    tokenizer = load_tokenizer(EMBEDDED_SMOLLM2)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    return LlamaForCausalLM(config), tokenizer


def test_evaluate_on_tiny_model(tiny_model_and_tokenizer):
    from grpo.data.loaders import load_gsm8k
    from grpo.evaluation.evaluate import evaluate

    model, tokenizer = tiny_model_and_tokenizer
    rows = load_gsm8k("synthetic:gsm8k:3", split="test")
    model.train()
    report = evaluate(model, tokenizer, rows, max_new_tokens=6, batch_size=2, progress=False)
    assert model.training  # train/eval mode restored
    assert report["n"] == 3 and len(report["samples"]) == 3
    assert set(report) >= {"accuracy", "last_number_accuracy", "format_rate", "mean_completion_length", "samples",
                           "accuracy_ci", "accuracy_count", "format_rate_ci", "clipped", "clipped_count", "clipped_ci"}
    assert 0 < report["mean_completion_length"] <= 6
    for sample, row in zip(report["samples"], rows):
        assert sample["question"] == row["question"] and sample["answer"] == row["answer"]
        assert 1 <= sample["tokens"] <= 6
        assert isinstance(sample["completion"], str)
        assert not sample["clipped"] or sample["tokens"] == 6  # clipped = used the whole budget without eos
    assert report["clipped_count"] == sum(s["clipped"] for s in report["samples"])
    assert report["clipped"] == report["clipped_count"] / 3
    assert compare(report, report)["n"] == 3  # a real report pairs with itself
    # the report's rates agree with re-scoring its own completions
    rescored = score_completions([s["completion"] for s in report["samples"]], list(rows["answer"]))
    assert report["accuracy"] == rescored["accuracy"] and report["format_rate"] == rescored["format_rate"]


def test_generate_greedy_is_deterministic_and_batch_independent(tiny_model_and_tokenizer):
    from grpo.data.loaders import make_prompt
    from grpo.evaluation.evaluate import generate_greedy

    model, tokenizer = tiny_model_and_tokenizer
    prompts = [make_prompt("What is 2 + 2?"), make_prompt("A much longer question about apples and pears?")]
    texts_a, lengths_a, clipped_a = generate_greedy(model, tokenizer, prompts, max_new_tokens=5, batch_size=2,
                                                    progress=False)
    texts_b, lengths_b, clipped_b = generate_greedy(model, tokenizer, prompts, max_new_tokens=5, batch_size=1,
                                                    progress=False)
    assert texts_a == texts_b and lengths_a == lengths_b  # left padding does not change greedy outputs
    assert clipped_a == clipped_b and len(clipped_a) == 2


def test_generate_greedy_reports_clipping(tiny_model_and_tokenizer):
    """A completion is clipped when it hits max_new_tokens without eos, not when it ends on eos."""
    import torch

    from grpo.data.loaders import make_prompt
    from grpo.evaluation.evaluate import generate_greedy

    model, tokenizer = tiny_model_and_tokenizer
    prompts = [make_prompt("What is 2 + 2?")]

    def greedy_with_favourite(token_id):
        # a large bias on the lm head makes token_id the argmax at every step
        bias = torch.zeros(model.config.vocab_size)
        bias[token_id] = 1e4
        original = model.lm_head.bias
        model.lm_head.bias = torch.nn.Parameter(bias)
        try:
            return generate_greedy(model, tokenizer, prompts, max_new_tokens=4, batch_size=1, progress=False)
        finally:
            model.lm_head.bias = original

    texts, lengths, clipped = greedy_with_favourite(tokenizer.convert_tokens_to_ids("a"))
    assert texts == ["aaaa"] and lengths == [4] and clipped == [True]
    _, lengths, clipped = greedy_with_favourite(tokenizer.eos_token_id)
    assert lengths == [1] and clipped == [False]


def test_numeric_answer_rate_sees_through_a_copied_template():
    """The format rewards are met by copying the system prompt's template; the answer slot then holds no number."""
    template = "<reasoning>\n...\n</reasoning>\n<answer>\n...\n</answer>\n"
    scores = score_completions([template, FORMATTED_WRONG], ["12", "12"])
    assert [p["format"] for p in scores["per_problem"]] == [True, True]
    assert [p["numeric_answer"] for p in scores["per_problem"]] == [False, True]
    assert scores["numeric_answer_rate"] == 0.5
