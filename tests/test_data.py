"""grpo.data.loaders: GSM8K loading from hand-written fixture files, error locations, prompt format, splits.

Run: ``pytest -q tests/test_data.py``. Fixtures: ``tests/fixtures/gsm8k/`` (written by hand for
these tests; ``good.jsonl`` has a blank line 3 on purpose, so rows sit on lines 1, 2, 4, 5).
"""

from pathlib import Path

import pytest

from grpo.common.errors import UserError
from grpo.data import loaders as data

FIXTURES = Path(__file__).parent / "fixtures" / "gsm8k"
GOOD = str(FIXTURES / "good.jsonl")


def test_good_jsonl_columns_and_answers():
    rows = data.load_gsm8k(GOOD)
    assert len(rows) == 4
    assert set(rows.column_names) == {"prompt", "answer", "question", "solution"}
    # "#### 1,200" -> "1200": commas removed; answers are strings
    assert list(rows["answer"]) == ["12", "1200", "6", "6"]
    assert rows[1]["solution"].endswith("#### 1,200")
    assert rows[0]["question"].startswith("Mia has 3 bags")


def test_prompt_is_system_then_user_question():
    rows = data.load_gsm8k(GOOD)
    prompt = rows[2]["prompt"]
    assert [m["role"] for m in prompt] == ["system", "user"]
    assert prompt[0]["content"] == data.SYSTEM_PROMPT
    assert "<reasoning>" in prompt[0]["content"] and "<answer>" in prompt[0]["content"]
    assert prompt[1]["content"] == "Tom had 10 marbles and lost 4. How many are left?"


def test_custom_system_prompt_and_limit():
    rows = data.load_gsm8k(GOOD, limit=2, system_prompt="Be brief.")
    assert len(rows) == 2
    assert rows[0]["prompt"][0] == {"role": "system", "content": "Be brief."}


def test_jsonl_rows_carry_their_line_numbers():
    raw = data.load_rows(GOOD)
    assert list(raw["_line"]) == [1, 2, 4, 5]  # the blank line 3 is skipped but still counted


def test_broken_json_line_names_file_and_line():
    with pytest.raises(UserError) as err:
        data.load_gsm8k(str(FIXTURES / "broken_json.jsonl"))
    assert "broken_json.jsonl:3" in str(err.value)
    assert "JSON" in str(err.value)


def test_row_without_hashes_names_file_and_line():
    with pytest.raises(UserError) as err:
        data.load_gsm8k(str(FIXTURES / "no_hash.jsonl"))
    msg = str(err.value)
    assert "no_hash.jsonl:2" in msg
    assert "####" in msg


def test_row_missing_question_names_file_line_and_field():
    with pytest.raises(UserError) as err:
        data.load_gsm8k(str(FIXTURES / "missing_question.jsonl"))
    msg = str(err.value)
    assert "missing_question.jsonl:3" in msg
    assert "'question'" in msg


def test_empty_file_is_an_error():
    with pytest.raises(UserError) as err:
        data.load_gsm8k(str(FIXTURES / "empty.jsonl"))
    assert "empty.jsonl" in str(err.value) and "no rows" in str(err.value)


def test_missing_file_and_unsupported_suffix(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        data.load_rows(str(tmp_path / "nope.jsonl"))
    txt = tmp_path / "rows.txt"
    txt.write_text("hello\n")
    with pytest.raises(UserError, match="unsupported type"):
        data.load_rows(str(txt))


def test_non_object_json_line(tmp_path):
    path = tmp_path / "list.jsonl"
    path.write_text('{"question": "q", "answer": "#### 1"}\n[1, 2]\n')
    with pytest.raises(UserError, match=r"list\.jsonl:2: expected a JSON object"):
        data.load_rows(str(path))


def test_csv_rows():
    raw = data.load_rows(str(FIXTURES / "good.csv"))
    assert len(raw) == 2
    assert {"question", "answer"} <= set(raw.column_names)
    rows = data.load_gsm8k(str(FIXTURES / "good.csv"))
    assert list(rows["answer"]) == ["12", "1200"]


def test_csv_missing_field_names_row_index(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text('question,solution\n"What is 1+1?","1+1=2\n#### 2"\n')
    with pytest.raises(UserError, match=r"row 0: missing or empty field 'answer'"):
        data.load_gsm8k(str(path))


def test_require_columns_names_missing_field():
    rows = data.load_rows(GOOD)
    data.require_columns(rows, ["question", "answer"], "good.jsonl")
    with pytest.raises(UserError, match=r"good\.jsonl: missing field\(s\) label"):
        data.require_columns(rows, ["question", "label"], "good.jsonl")


def test_synthetic_spec_sizes_and_splits():
    rows = data.load_rows("synthetic:gsm8k:7")
    assert len(rows) == 7
    gsm = data.load_gsm8k("synthetic:gsm8k:5")
    assert len(gsm) == 5 and all(a.isdigit() for a in gsm["answer"])
    # train and test splits use different seeds, so different problems
    train = data.load_rows("synthetic:gsm8k:5", split="train")
    test = data.load_rows("synthetic:gsm8k:5", split="test")
    assert list(train["question"]) != list(test["question"])
    assert list(train["question"]) == list(data.load_rows("synthetic:gsm8k:5", split="train")["question"])


def test_unknown_synthetic_dataset():
    with pytest.raises(UserError, match="unknown synthetic dataset"):
        data.load_rows("synthetic:mnist")


def test_hub_dataset_offline_is_user_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError) as err:
        data.load_rows("openai/gsm8k")
    assert "openai/gsm8k" in str(err.value) and "HF_HUB_OFFLINE" in str(err.value)


def test_extract_hash_answer():
    assert data.extract_hash_answer("a\n#### 1,234,567") == "1234567"
    assert data.extract_hash_answer("a\n####  -3 ") == "-3"
    assert data.extract_hash_answer("no final line") is None


def test_to_reasoning_format_removes_calculator_marks():
    solution = "She has 3 * 4 = <<3*4=12>>12 apples.\nThen 12 + 1,188 = <<12+1188=1200>>1200.\n#### 1,200"
    out = data.to_reasoning_format(solution)
    assert "<<" not in out and ">>" not in out and "####" not in out
    assert out == ("<reasoning>\nShe has 3 * 4 = 12 apples.\nThen 12 + 1,188 = 1200.\n</reasoning>\n"
                   "<answer>\n1200\n</answer>\n")


def test_split_holdout_is_deterministic_and_disjoint():
    rows = data.load_gsm8k("synthetic:gsm8k:20")
    train_a, held_a = data.split_holdout(rows, 5, seed=3)
    train_b, held_b = data.split_holdout(rows, 5, seed=3)
    assert len(train_a) == 15 and len(held_a) == 5
    assert list(held_a["question"]) == list(held_b["question"])
    assert list(train_a["question"]) == list(train_b["question"])
    assert not set(held_a["question"]) & set(train_a["question"])
    _, held_c = data.split_holdout(rows, 5, seed=4)
    assert list(held_c["question"]) != list(held_a["question"])


def test_split_holdout_edges():
    rows = data.load_gsm8k(GOOD)
    train, held = data.split_holdout(rows, 0)
    assert held is None and len(train) == 4
    with pytest.raises(UserError, match="eval_size=4"):
        data.split_holdout(rows, 4)


@pytest.mark.parametrize("spec", ["synthetic:gsm8k:abc", "synthetic:gsm8k:5:6", "synthetic:gsm8k:0"])
def test_bad_synthetic_size_is_user_error(spec):
    with pytest.raises(UserError, match="synthetic:gsm8k"):
        data.load_rows(spec)


def test_non_utf8_line_names_file_and_line(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"question": "q?", "answer": "#### 1"}\n{"question": "caf\xe9?", "answer": "#### 2"}\n')
    with pytest.raises(UserError, match=r"latin1\.jsonl:2"):
        data.load_rows(str(path))


def test_utf8_bom_is_accepted(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"question": "What is 1 + 1?", "answer": "1 + 1 = 2\\n#### 2"}\n')
    assert list(data.load_gsm8k(str(path))["answer"]) == ["2"]
