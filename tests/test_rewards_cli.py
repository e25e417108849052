"""``grpo rewards list`` / ``grpo rewards try`` through ``grpo.cli.rewards_cmd.main`` on fixture files.

Run: pytest tests/test_rewards_cli.py -q
"""

import json
from pathlib import Path

import pytest

from grpo.cli.rewards_cmd import main

FIXTURES = Path(__file__).parent / "fixtures" / "rewards"
COMPLETIONS = str(FIXTURES / "completions.jsonl")


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_list_shows_every_reward_with_params(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0
    for name in ("accuracy_reward", "xmlcount_reward", "strict_format_reward", "soft_format_reward", "int_reward",
                 "length_reward", "len_reward", "code_format_reward", "code_reward", "repetition_penalty_reward",
                 "soft_overlong_punishment"):
        assert f"\n{name} " in "\n" + out
    assert "ideal=None" in out and "file.py:function" in out
    assert "aliases: accuracy, correctness" in out and "aliases: group_length" in out and "aliases: overlong" in out


def test_list_json(capsys):
    code, out, _ = run(capsys, "list", "--json")
    entries = {e["name"]: e for e in json.loads(out)}
    assert code == 0 and entries["accuracy_reward"]["params"]["correct"] == 2.0
    assert entries["accuracy_reward"]["aliases"] == ["accuracy", "correctness"]


def test_try_course_five_table(capsys):
    code, out, _ = run(capsys, "try", "--completions", COMPLETIONS, "--reward", "correctness",
                       "--reward", "xml_count", "--reward", "integer_answer")
    assert code == 0
    assert "accuracy_reward: n=5  mean 1.2" in out
    assert "xmlcount_reward" in out and "int_reward" in out and "completions/s" in out


def test_try_json_scores(capsys):
    code, out, _ = run(capsys, "try", "--completions", COMPLETIONS, "--reward", "correctness", "--json")
    data = json.loads(out)
    assert code == 0
    assert [r["accuracy_reward"] for r in data["rows"]] == [2.0, 2.0, 0.0, 0.0, 2.0]
    assert data["summary"]["accuracy_reward"]["n"] == 5


def test_try_with_params_and_limit(capsys):
    code, out, _ = run(capsys, "try", "--completions", COMPLETIONS, "--reward", "length", "--param", "ideal=0",
                       "--param", "unit=words", "--limit", "2", "--json")
    rows = json.loads(out)["rows"]
    assert code == 0 and len(rows) == 2 and all(r["length_reward"] < 0 for r in rows)


def test_try_with_dataset_columns(capsys):
    code, out, _ = run(capsys, "try", "--completions", str(FIXTURES / "completions_nogold.jsonl"),
                       "--dataset", str(FIXTURES / "gsm8k_mini.jsonl"), "--reward", "correctness", "--json")
    assert code == 0
    # line 3 has "row": 0 -> gold 72, answered 7
    assert [r["accuracy_reward"] for r in json.loads(out)["rows"]] == [2.0, 2.0, 0.0]


def test_try_user_file_reward(capsys):
    code, out, _ = run(capsys, "try", "--completions", COMPLETIONS, "--reward",
                       f"{FIXTURES / 'user_rewards.py'}:brevity", "--json")
    assert code == 0 and [r["brevity"] for r in json.loads(out)["rows"]] == [0.0, 0.0, 0.0, 1.0, 0.0]


@pytest.mark.parametrize("argv, message", [
    (["--reward", "correctnes"], "unknown reward 'correctnes' (did you mean 'correctness'?)"),
    (["--reward", "USER:explodes_on_empty"], "raised ZeroDivisionError: float division by zero on completion #3"),
    (["--reward", "USER:wrong_count"], "returned 4 values for 5 completions"),
    (["--reward", "length", "--param", "idael=3"], "bad parameters ['idael']"),
    (["--reward", "length", "--param", "oops"], "expected key=value"),
    (["--reward", "length", "--reward", "xml_count", "--param", "ideal=3"], "single --reward"),
    (["--reward", "correctness", "--dataset", "nope.jsonl"], "does not exist"),
])
def test_try_errors_are_one_line(capsys, argv, message):
    argv = [a.replace("USER", str(FIXTURES / "user_rewards.py")) for a in argv]
    code, out, err = run(capsys, "try", "--completions", COMPLETIONS, *argv)
    assert code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1, err


@pytest.mark.parametrize("name, message", [("broken.jsonl", "broken.jsonl:2: not valid JSON"),
                                           ("missing.jsonl", "does not exist"),
                                           ("gsm8k_mini.jsonl", "gsm8k_mini.jsonl:1: expected an object with a 'completion'")])
def test_try_bad_completions_file(capsys, name, message):
    code, _, err = run(capsys, "try", "--completions", str(FIXTURES / name), "--reward", "xml_count")
    assert code == 2 and message in err


def test_missing_gold_column_is_reported(capsys, tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"completion": "<answer>1</answer>", "question": "q"}\n')
    code, _, err = run(capsys, "try", "--completions", str(path), "--reward", "correctness")
    assert code == 2 and "needs the gold answer column" in err and "columns passed: question" in err


def test_usage_error_exits_2():
    with pytest.raises(SystemExit) as info:
        main(["try", "--completions", COMPLETIONS])
    assert info.value.code == 2


def _mini_questions():
    return [json.loads(line)["question"] for line in (FIXTURES / "gsm8k_mini.jsonl").read_text().splitlines()]


def test_try_matches_dataset_rows_by_prompt_not_line_number(capsys, tmp_path):
    # samples.jsonl-shaped lines in the reverse order of the dataset: line 1 answers row 1 (10), line 2 row 0 (72)
    q0, q1 = _mini_questions()
    path = tmp_path / "samples.jsonl"
    path.write_text(json.dumps({"prompt": q1, "completion": "<answer>\n10\n</answer>"}) + "\n"
                    + json.dumps({"prompt": q0 + "\nLet's think step by step.", "completion": "<answer>\n72\n</answer>"})
                    + "\n")
    code, out, err = run(capsys, "try", "--completions", str(path), "--dataset", str(FIXTURES / "gsm8k_mini.jsonl"),
                         "--reward", "correctness", "--json")
    assert code == 0, err
    assert [r["accuracy_reward"] for r in json.loads(out)["rows"]] == [2.0, 2.0]


@pytest.mark.parametrize("line, message", [
    ({"completion": "x"}, "names no dataset row"),
    ({"completion": "x", "question": "How many apples?"}, "no row of"),
    ({"completion": "x", "prompt": "How many apples?"}, "no row of"),
    ({"completion": "x", "row": 5}, "dataset row 5 does not exist"),
    ({"completion": "x", "row": 1, "question": "QUESTION0"}, "has another question"),
])
def test_try_row_mismatch_is_an_error(capsys, tmp_path, line, message):
    line = {k: (_mini_questions()[0] if v == "QUESTION0" else v) for k, v in line.items()}
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps(line) + "\n")
    code, _, err = run(capsys, "try", "--completions", str(path), "--dataset", str(FIXTURES / "gsm8k_mini.jsonl"),
                       "--reward", "correctness")
    assert code == 2 and "c.jsonl:1:" in err and message in err, err


def test_samples_jsonl_scores_as_training_scored(capsys, tmp_path):
    """A run's samples.jsonl carries each row's gold columns: `rewards try` needs no --dataset and agrees with training."""
    import rewards
    from grpo.runs.run_dir import MetricsLogger, SampleRecorder

    recorder = SampleRecorder(MetricsLogger(tmp_path))
    wrapped = recorder.wrap(rewards.resolve("correctness"))
    completions = [[{"role": "assistant", "content": "<answer>\n72\n</answer>"}],
                   [{"role": "assistant", "content": "<answer>\n9\n</answer>"}]]
    prompts = [[{"role": "user", "content": q}] for q in _mini_questions()]
    trained = wrapped(completions, prompts=prompts, answer=["72", "10"], question=_mini_questions(),
                      completion_ids=[[1], [2]], trainer_state=object())
    recorder.flush(1)
    lines = [json.loads(ln) for ln in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert [ln["answer"] for ln in lines] == ["72", "10"] and "completion_ids" not in lines[0]
    code, out, err = run(capsys, "try", "--completions", str(tmp_path / "samples.jsonl"), "--reward", "correctness",
                         "--json")
    assert code == 0, err
    assert [r["accuracy_reward"] for r in json.loads(out)["rows"]] == trained == [2.0, 0.0]
