"""The GSM8K splits shipped in ``grpo/resources/gsm8k/`` and the ``gsm8k`` dataset spec.

Run: ``pytest -q tests/test_gsm8k_vendored.py``. The expected values (row counts, sha256 of the
first and last questions) were computed once from the published files in ``../shared/data/gsm8k``
so these tests need only the package; the last test also compares row by row with those files
when they are present.
"""

import fnmatch
import gzip
import hashlib
import json
import re
import tomllib
from pathlib import Path

import pytest

from grpo.common.errors import UserError
from grpo.data import loaders as data

ROOT = Path(__file__).parents[1]
RESOURCES = ROOT / "grpo" / "resources" / "gsm8k"
PUBLISHED = Path(__file__).parents[2] / "shared" / "data" / "gsm8k"
ROWS = {"train": 7473, "test": 1319}
# sha256 of the first and last question of each published split, and how each starts
FIRST_LAST = {
    "train": [("73429d562982300e6643d83a84428a22e0656773b67dad037d2de2f8bc0b45b9", "Natalia sold clips to 48"),
              ("b35fb988695127045be815ff2d52e36eb9b0a51707f697dd87cb8d1c44cd9a86", "At 30, Anika is 4/3 the age")],
    "test": [("2b2e3f9639f6fa282a0b0c1d622e0c75cc03797b43268945f32b134da4fee344", "Janet\u2019s ducks lay 16 eggs"),
             ("d633d02dadf2829335564843a2f90ffa1a3d70fcca7a137dda303792f4239633", "Henry and 3 of his friends")],
}


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@pytest.fixture(scope="module")
def gsm8k():
    """Both splits through the public loader, loaded once for the module (~0.5 s together)."""
    return {split: data.load_gsm8k("gsm8k", split=split) for split in ROWS}


@pytest.mark.parametrize("split", ["train", "test"])
def test_row_counts_and_columns(gsm8k, split):
    rows = gsm8k[split]
    assert len(rows) == ROWS[split]
    assert set(rows.column_names) == {"prompt", "answer", "question", "solution"}


@pytest.mark.parametrize("split", ["train", "test"])
def test_every_answer_is_a_final_integer(gsm8k, split):
    rows = gsm8k[split]
    assert all(s.count("####") == 1 for s in rows["solution"])
    bad = [a for a in rows["answer"] if not re.fullmatch(r"-?\d+", a)]
    assert bad == []


@pytest.mark.parametrize("split", ["train", "test"])
def test_first_and_last_questions_are_the_published_ones(gsm8k, split):
    questions = gsm8k[split]["question"]
    for question, (digest, prefix) in zip((questions[0], questions[-1]), FIRST_LAST[split]):
        assert question.startswith(prefix)
        assert sha256(question) == digest


def test_known_test_problem_becomes_a_prompt_and_answer(gsm8k):
    row = gsm8k["test"][0]
    assert [m["role"] for m in row["prompt"]] == ["system", "user"]
    assert row["prompt"][0]["content"] == data.SYSTEM_PROMPT
    assert row["prompt"][1]["content"] == row["question"]
    assert row["answer"] == "18"  # Janet's ducks: (16 - 3 - 4) * $2
    assert row["solution"].endswith("#### 18")


def test_default_split_is_train_and_limit_applies():
    assert len(data.load_rows("gsm8k")) == ROWS["train"]
    rows = data.load_gsm8k("gsm8k", split="test", limit=5)
    assert len(rows) == 5 and rows[0]["answer"] == "18"


def test_readme_sha256_and_counts_match_the_vendored_files():
    readme = (RESOURCES / "README.md").read_text()
    table = dict((name, (int(count), digest)) for name, count, digest in
                 re.findall(r"^\| (\w+)\.jsonl\.gz \| (\d+) \| ([0-9a-f]{64}) \|$", readme, flags=re.M))
    assert set(table) == set(ROWS)
    for split, (count, digest) in table.items():
        raw = gzip.decompress((RESOURCES / f"{split}.jsonl.gz").read_bytes())
        assert hashlib.sha256(raw).hexdigest() == digest
        assert count == ROWS[split] == sum(1 for line in raw.splitlines() if line.strip())


def test_gzip_headers_are_reproducible():
    for split in ROWS:
        header = (RESOURCES / f"{split}.jsonl.gz").read_bytes()[:10]
        assert header[:3] == b"\x1f\x8b\x08"  # gzip, deflate
        assert header[3] == 0  # no flags: no stored file name or comment
        assert header[4:8] == b"\x00\x00\x00\x00"  # mtime 0


def test_licence_ships_and_package_data_covers_the_files():
    assert "MIT License" in (RESOURCES / "LICENSE").read_text()
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["grpo"]
    for path in RESOURCES.iterdir():
        relative = path.relative_to(ROOT / "grpo").as_posix()
        assert any(fnmatch.fnmatch(relative, p) for p in patterns), f"{relative} is not package data"


@pytest.mark.parametrize("split", ["validation", "Train", ""])
def test_unknown_split_names_it_and_the_valid_ones(split):
    with pytest.raises(UserError) as err:
        data.load_gsm8k("gsm8k", split=split)
    msg = str(err.value)
    assert repr(split) in msg and "'train'" in msg and "'test'" in msg


def test_split_in_the_spec_is_refused_with_the_fix():
    with pytest.raises(UserError) as err:
        data.load_rows("gsm8k:test")
    assert "'gsm8k:test'" in str(err.value) and "dataset_train_split" in str(err.value)


def test_openai_gsm8k_still_goes_to_the_hub_with_config_main(monkeypatch):
    import datasets

    import grpo.modeling.hub

    calls = []
    monkeypatch.setattr(grpo.modeling.hub, "require_hub", lambda *args: None)
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kw: calls.append((args, kw)) or "hub rows")
    assert data.load_rows("openai/gsm8k", "test") == "hub rows"
    assert calls == [(("openai/gsm8k", "main"), {"split": "test"})]


def test_openai_gsm8k_offline_suggests_the_vendored_copy(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError) as err:
        data.load_rows("openai/gsm8k")
    assert "'openai/gsm8k'" in str(err.value) and "gsm8k (GSM8K shipped with the package)" in str(err.value)


@pytest.mark.skipif(not PUBLISHED.is_dir(), reason=f"published GSM8K not at {PUBLISHED}")
@pytest.mark.parametrize("split", ["train", "test"])
def test_same_rows_as_the_published_files(gsm8k, split):
    published = [json.loads(line) for line in (PUBLISHED / f"{split}.jsonl").open(encoding="utf-8") if line.strip()]
    rows = gsm8k[split]
    assert list(rows["question"]) == [r["question"] for r in published]
    assert list(rows["solution"]) == [r["answer"] for r in published]
    assert (RESOURCES / "LICENSE").read_bytes() == (PUBLISHED / "LICENSE").read_bytes()
