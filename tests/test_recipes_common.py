"""Tests for recipes/_common.py and the recipe registry (fast; no training).

Run: pytest tests/test_recipes_common.py
"""

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import recipes
from grpo.common.errors import UserError
from recipes import _common, sources

FIXTURES = Path(__file__).parent / "fixtures" / "recipes"  # template rows written by scripts/make_*_data.py

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@dataclass
class ToyArgs:
    model: str = field(default="embedded:minilm-l6", metadata={"help": "model spec"})
    steps_per_thing: int = field(default=3, metadata={"help": "a number"})


def test_parse_args_yaml_then_cli_override(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: some/dir\nsteps_per_thing: 5\nlearning_rate: 1.0e-4\noutput_dir: out\n")
    args, targs = _common.parse_args(ToyArgs, ["--config", str(cfg), "--steps_per_thing", "7"])
    assert (args.model, args.steps_per_thing) == ("some/dir", 7)
    assert targs.learning_rate == pytest.approx(1e-4) and targs.output_dir == "out"


def test_parse_args_cpu_defaults_and_recipe_defaults():
    _, targs = _common.parse_args(ToyArgs, [], training_defaults={"output_dir": "runs/toy", "learning_rate": 3e-5})
    assert targs.output_dir == "runs/toy" and targs.learning_rate == pytest.approx(3e-5)
    assert targs.save_strategy == "no" and targs.report_to in ([], "none", ["none"])
    _, targs = _common.parse_args(ToyArgs, ["--learning_rate", "0.5"], training_defaults={"learning_rate": 3e-5})
    assert targs.learning_rate == 0.5  # the command line beats the recipe default


@pytest.mark.parametrize("argv_kind", ["yaml", "cli"])
def test_parse_args_unknown_key_is_user_error(tmp_path, argv_kind):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("stesp_per_thing: 5\n")
    argv = ["--config", str(cfg)] if argv_kind == "yaml" else ["--stesp_per_thing", "5"]
    with pytest.raises(UserError, match="stesp_per_thing"):
        _common.parse_args(ToyArgs, argv)


def test_parse_args_rejects_abbreviations_and_suggests_the_key():
    with pytest.raises(UserError, match=r"steps_per_thin.*did you mean 'steps_per_thing'"):
        _common.parse_args(ToyArgs, ["--steps_per_thin", "5"])


def test_parse_args_bad_value_is_user_error():
    with pytest.raises(UserError, match="steps_per_thing"):
        _common.parse_args(ToyArgs, ["--steps_per_thing", "many"])


def test_parse_args_missing_config_file():
    with pytest.raises(UserError, match="does not exist"):
        _common.parse_args(ToyArgs, ["--config", "nope/nothing.yaml"])


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_load_splits_local_holdout_and_limits(tmp_path):
    spec = _write_jsonl(tmp_path / "t.jsonl", [{"text": f"row {i}", "label": i % 2} for i in range(20)])
    train, evaluation = _common.load_splits(spec, "", columns=["text"], eval_fraction=0.25, max_train_samples=10)
    assert len(train) == 10 and len(evaluation) == 5
    assert "_line" not in train.column_names
    train, _ = _common.load_splits(spec, spec, columns=["text"], keep_line=True)
    assert train[0]["_line"] == 1


def test_load_splits_eval_defaults(tmp_path):
    train, evaluation = _common.load_splits(str(FIXTURES / "ner_train.jsonl"), str(FIXTURES / "ner_validation.jsonl"),
                                            columns=["tokens"])
    assert (len(train), len(evaluation)) == (300, 80)  # the eval file given
    spec = _write_jsonl(tmp_path / "mine_train.jsonl", [{"tokens": ["a"]} for _ in range(10)])
    _write_jsonl(tmp_path / "mine_validation.jsonl", [{"tokens": ["b"]} for _ in range(3)])
    train, evaluation = _common.load_splits(spec, "", columns=["tokens"], eval_fraction=0.2)
    assert (len(train), len(evaluation)) == (8, 2)  # no eval file given: held out, never guessed from the name


def test_load_splits_wrong_schema_names_the_field(tmp_path):
    spec = _write_jsonl(tmp_path / "bad.jsonl", [{"txt": "a"}, {"txt": "b"}])
    with pytest.raises(UserError, match="missing field.*text"):
        _common.load_splits(spec, spec, columns=["text"])


def test_check_row_fields_names_nested_field():
    row = {"answers": {"text": ["x"]}, "_line": 7}
    _common.check_row_fields(row, ["answers.text"], "f.jsonl", 0)
    with pytest.raises(UserError, match=r"f.jsonl:7: missing field 'answers.answer_start'"):
        _common.check_row_fields(row, ["answers.answer_start"], "f.jsonl", 0)


def test_metric_table():
    table = _common.format_metric_table({"f1": 0.1, "loss": 2.0}, {"f1": 0.75, "loss": 0.5})
    assert table.splitlines()[0] == "| metric | before | after |"
    assert "| f1 | 0.1000 | 0.7500 |" in table
    table = _common.format_metric_table({"f1": 0.1, "loss": 2.0}, {"f1": 0.75, "loss": 0.5}, {"lookup": {"f1": 0.3}})
    assert table.splitlines()[0] == "| metric | baseline: lookup | before | after |"
    assert "| f1 | 0.3000 | 0.1000 | 0.7500 |" in table and "| loss | - | 2.0000 | 0.5000 |" in table


def test_save_checkpoint_atomic_reloadable_and_keeps_trainer_dirs(tmp_path):
    import torch
    from transformers import AutoModelForMaskedLM, BertConfig, BertForMaskedLM

    from grpo.modeling.models import load_tokenizer

    tokenizer = load_tokenizer("embedded:minilm-l6")
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32)
    model = BertForMaskedLM(config).eval()
    dest = tmp_path / "run"
    (dest / "checkpoint-2").mkdir(parents=True)
    (dest / "stale.txt").write_text("old")

    @dataclass
    class A:
        model: str = "embedded:minilm-l6"

    card = dict(task="masked_lm", base_model="embedded:minilm-l6", pipeline_tag="fill-mask",
                metrics_before={"perplexity": 90.0}, metrics_after={"perplexity": 12.0},
                train_data={"spec": "t.jsonl", "rows": 3}, eval_data={"spec": "e.jsonl", "rows": 1},
                args=A(), training_args=type("T", (), {"learning_rate": 1e-4, "seed": 1})(), command="python -m x")
    _common.save_checkpoint(model, tokenizer, dest,
                            extra_files={"README.md": _common.model_card(**card), "metrics.json": {"after": 1}})
    assert (dest / "checkpoint-2").is_dir() and (dest / "stale.txt").exists()
    assert json.loads((dest / "metrics.json").read_text()) == {"after": 1}
    readme = (dest / "README.md").read_text()
    assert "pipeline_tag: fill-mask" in readme and "| perplexity | 90.0000 | 12.0000 |" in readme
    assert "learning_rate: 0.0001" in readme
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run")]  # no temp dirs left
    reloaded = AutoModelForMaskedLM.from_pretrained(dest).eval()
    ids = torch.tensor([[101, 2023, 2003, 102]])
    assert torch.equal(model(ids).logits, reloaded(ids).logits)


def test_registry_lists_six_recipes_and_rejects_unknown():
    assert set(recipes.RECIPES) == {"token_classification", "question_answering", "masked_lm", "causal_lm",
                                    "translation", "summarization"}
    assert recipes.get("masked_lm").main
    with pytest.raises(UserError, match="unknown recipe 'ner'"):
        recipes.get("ner")


@pytest.mark.parametrize("name", ["token_classification", "question_answering", "masked_lm"])
def test_shipped_config_parses_with_its_recipe(name, tmp_path, monkeypatch):
    module = recipes.get(name)
    args_cls = next(v for k, v in vars(module).items()
                    if k.endswith("Args") and isinstance(v, type) and v.__module__ == module.__name__)
    monkeypatch.chdir(tmp_path)  # packaged config and data paths must not depend on the CWD
    args, targs = _common.parse_args(args_cls, ["--config", f"recipes/configs/{name}.yaml"])
    # RecipeArgs' names; question_answering keeps an argument class of its own (model / dataset) for now
    model, dataset = (getattr(args, "model_name_or_path", None) or args.model,
                      getattr(args, "dataset_name", None) or args.dataset)
    assert model == "embedded:minilm-l6"
    assert args.eval_dataset == ""  # so that --dataset_name other.jsonl is evaluated on other.jsonl
    assert sources.is_source(dataset)  # real data from an installed package, with its validation split
    assert dataset[len(sources.PREFIX):] in sources.names()
    header = (REPO / "recipes" / "configs" / f"{name}.yaml").read_text().splitlines()
    assert any(f"python -m recipes.{name} --config recipes/configs/{name}.yaml" in line for line in header)


@pytest.mark.parametrize("name", ["recipes", "recipes._common", "recipes.token_classification",
                                  "recipes.question_answering", "recipes.masked_lm"])
def test_docstring_examples(name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0


# Each recipe scores a user's own JSONL (--eval_dataset) in its documented schema; a row missing a
# field of that schema is a UserError naming the eval file, before any model is loaded.
EVAL_SCHEMAS = {
    "token_classification": ({"tokens": ["Oslo"], "ner_tags": ["B-city"]}, "ner_tags"),
    "question_answering": ({"id": "1", "context": "Oslo is big.", "question": "What is big?",
                            "answers": {"text": ["Oslo"], "answer_start": [0]}}, "answers"),
    "masked_lm": ({"text": "Oslo is big."}, "text"),
    "causal_lm": ({"content": "def f():\n    return 1\n"}, "content"),
    "translation": ({"translation": {"en": "Open", "fr": "Ouvrir"}}, "translation"),
    "summarization": ({"document": "Oslo is big. It grows.", "summary": "Oslo is big."}, "summary"),
}


@pytest.mark.parametrize("name", sorted(EVAL_SCHEMAS))
def test_eval_dataset_file_in_the_documented_schema_is_read_and_checked(name, tmp_path):
    row, required = EVAL_SCHEMAS[name]
    bad = tmp_path / "eval.jsonl"
    bad.write_text(json.dumps({k: v for k, v in row.items() if k != required}) + "\n")
    with pytest.raises(UserError, match=rf"{re.escape(str(bad))}.*{required}"):
        recipes.get(name).main(["--eval_dataset", str(bad), "--output_dir", str(tmp_path / "out")])


def test_recipe_args_take_the_hf_names_and_the_old_ones_as_aliases(tmp_path):
    from recipes._args import RecipeArgs
    from recipes.translation import TranslationArgs

    fields = {f.name for f in dataclasses.fields(TranslationArgs)}
    assert {"model_name_or_path", "dataset_name", "eval_dataset", "max_train_samples", "max_eval_samples"} <= fields
    assert issubclass(TranslationArgs, RecipeArgs)
    old = tmp_path / "old.yaml"
    old.write_text("model: some/dir\ndataset: rows.jsonl\n")
    args, _ = _common.parse_args(TranslationArgs, ["--config", str(old)])
    assert (args.model_name_or_path, args.dataset_name, args.model, args.dataset) == ("some/dir", "rows.jsonl", None, None)
    args, _ = _common.parse_args(TranslationArgs, ["--model_name_or_path", "a/b", "--dataset", "x.jsonl"])
    assert (args.model_name_or_path, args.dataset_name) == ("a/b", "x.jsonl")
    with pytest.raises(UserError, match="model='c/d' and model_name_or_path='a/b' disagree"):
        _common.parse_args(TranslationArgs, ["--model_name_or_path", "a/b", "--model", "c/d"])
