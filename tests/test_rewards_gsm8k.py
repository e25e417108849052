"""The course's rewards on the real GSM8K train split: every gold solution, rewritten into the
exercise's format, gets full reward (skipped when ../shared/data/gsm8k/train.jsonl is absent).

Run: pytest tests/test_rewards_gsm8k.py -q   (all 7,473 rows; about 2 s)
"""

import json
import re
from pathlib import Path

import pytest

import rewards

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k" / "train.jsonl"
pytestmark = pytest.mark.skipif(not DATA.is_file(), reason=f"{DATA} not present")
CALC = re.compile(r"<<[^<>]*>>")


def load_rows():
    with DATA.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def rewrite(solution: str, written: str | None = None) -> tuple[str, str]:
    """(completion in the exercise's format, gold number as the GSM8K loader gives it)."""
    body, _, final = solution.partition("####")
    gold = final.strip().replace(",", "")
    answer = gold if written is None else written
    return f"<reasoning>\n{CALC.sub('', body).strip()}\n</reasoning>\n<answer>\n{answer}\n</answer>", gold


@pytest.fixture(scope="module")
def rows():
    return load_rows()


def test_every_gold_solution_gets_full_reward(rows):
    completions, golds = zip(*(rewrite(r["answer"]) for r in rows))
    assert len(completions) == 7473
    expected = {"correctness": 2.0, "strict_format": 0.5, "soft_format": 0.5, "xml_count": 0.5, "integer_answer": 0.5}
    for name, full in expected.items():
        scores = rewards.call_reward(rewards.get(name), list(completions), answer=list(golds))
        misses = [i for i, s in enumerate(scores) if s != full]
        assert not misses, f"{name}: {len(misses)} rows below {full}, first {misses[:5]}: {completions[misses[0]]!r}"


def test_raw_solution_as_gold_and_person_like_answers(rows):
    """Gold given as the raw solution (``... #### 1,200``), answers written as ``$1,200.00``, ``\\boxed{1200}``..."""
    sample = rows[::15]
    completions, raw_golds = [], []
    for i, r in enumerate(sample):
        gold = r["answer"].partition("####")[2].strip().replace(",", "")
        forms = [f"${int(gold):,}.00" if gold.lstrip("-").isdigit() else gold,  # fast path
                 f"{gold} in total", f"\\boxed{{{gold}}}", f"$ {gold} $"]      # math-verify
        written = forms[i % len(forms)]
        completions.append(rewrite(r["answer"], written)[0])
        raw_golds.append(r["answer"])
    scores = rewards.get("correctness")(completions, answer=raw_golds)
    assert scores == [2.0] * len(sample)


def test_off_by_one_is_never_rewarded(rows):
    """The other direction: the same solutions with the final number changed score 0 on every row."""
    completions, golds = [], []
    for r in rows:
        gold = rewrite(r["answer"])[1]
        wrong = str(float(gold) + 1) if "." in gold else str(int(gold) + 1)
        completions.append(rewrite(r["answer"], wrong)[0])
        golds.append(gold)
    scores = rewards.get("correctness")(completions, answer=golds)
    assert scores == [0.0] * len(rows)
