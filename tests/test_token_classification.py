"""Tests for recipes/token_classification.py: label alignment, seqeval metrics, schema errors; slow: a short run.

Run: pytest tests/test_token_classification.py            (fast)
     pytest -m slow tests/test_token_classification.py    (trains 3 steps, reloads, runs pipeline("ner"))
"""

import json
from pathlib import Path

import numpy as np
import pytest

from grpo.common.errors import UserError
from recipes import _common
from recipes import token_classification as tc

FIXTURES = Path(__file__).parent / "fixtures" / "recipes"  # template rows written by scripts/make_*_data.py

LABELS = tc.CONLL2003_LABELS


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tokenizer():
    from grpo.modeling.models import load_tokenizer

    return load_tokenizer("embedded:minilm-l6")


def test_alignment_matches_the_chapter_example():
    # conll2003 train[0]: "EU rejects German call to boycott British la ##mb ."
    labels = [3, 0, 7, 0, 0, 0, 7, 0, 0]
    word_ids = [None, 0, 1, 2, 3, 4, 5, 6, 7, 7, 8, None]
    inside = tc.continuation_label_ids(LABELS)
    assert tc.align_labels_with_tokens(labels, word_ids, inside) == [-100, 3, 0, 7, 0, 0, 0, 7, 0, 0, 0, -100]


def test_continuation_pieces_turn_b_into_i_or_are_ignored():
    inside = tc.continuation_label_ids(LABELS)
    assert inside == [0, 2, 2, 4, 4, 6, 6, 8, 8]
    word_ids = [None, 0, 0, 0, 1, 1, None]  # "Varnholt" in 3 pieces, then a 2-piece LOC word
    assert tc.align_labels_with_tokens([1, 5], word_ids, inside) == [-100, 1, 2, 2, 5, 6, -100]
    assert tc.align_labels_with_tokens([1, 5], word_ids, inside, label_all_tokens=False) == \
        [-100, 1, -100, -100, 5, -100, -100]


def test_preprocess_aligns_word_pieces(tokenizer):
    args = tc.TokenClassificationArgs(tag_names=LABELS)
    batch = {"tokens": [["Talia", "Varnholt", "visited", "Kilvarra", "."]], "ner_tags": [[1, 2, 0, 5, 0]]}
    out = tc.preprocess(batch, tokenizer, args)
    word_ids = out.word_ids(0)
    labels = out["labels"][0]
    assert labels[0] == -100 and labels[-1] == -100 and len(labels) == len(out["input_ids"][0])
    first_piece = {w: i for i, w in reversed(list(enumerate(word_ids))) if w is not None}
    assert [labels[first_piece[w]] for w in range(5)] == [1, 2, 0, 5, 0]
    # Every continuation piece of "Kilvarra" (B-LOC) is I-LOC.
    pieces = [i for i, w in enumerate(word_ids) if w == 3]
    assert len(pieces) > 1 and [labels[i] for i in pieces] == [5] + [6] * (len(pieces) - 1)


def test_preprocess_accepts_string_tags_and_rejects_bad_rows(tokenizer):
    args = tc.TokenClassificationArgs(tag_names=LABELS)
    out = tc.preprocess({"tokens": [["Oren", "ran"]], "ner_tags": [["B-PER", "O"]]}, tokenizer, args)
    assert out["labels"][0][1] == 1
    with pytest.raises(UserError, match="'B-FOO' is not in label_names"):
        tc.preprocess({"tokens": [["Oren"]], "ner_tags": [["B-FOO"]]}, tokenizer, args)
    with pytest.raises(UserError, match="not a label id"):
        tc.preprocess({"tokens": [["Oren"]], "ner_tags": [[9]]}, tokenizer, args)
    with pytest.raises(UserError, match="2 tokens but 1 ner_tags"):
        tc.preprocess({"tokens": [["Oren", "ran"]], "ner_tags": [[1]]}, tokenizer, args)


def test_tag_set_is_read_from_string_tags():
    rows = [["O", "B-geo-loc", "I-geo-loc"], ["B-person", "O"], ["I-product"]]
    assert tc.tag_set_from_data(rows, "x") == ["O", "B-geo-loc", "I-geo-loc", "B-person", "I-person",
                                               "B-product", "I-product"]
    assert tc.tag_set_from_data([[0, 3, 4]], "x") is None  # ids: names come from elsewhere
    with pytest.raises(UserError, match="'PER' is not BIO"):
        tc.tag_set_from_data([["O", "PER"]], "x")
    with pytest.raises(UserError, match="mix names and ids"):
        tc.tag_set_from_data([["O", 1]], "x")


def test_resolve_tag_names_prefers_classlabel_then_data_then_ids():
    import datasets

    strings = datasets.Dataset.from_dict({"tokens": [["Oslo"]], "ner_tags": [["B-city"]]})
    ids = datasets.Dataset.from_dict({"tokens": [["Oslo"]], "ner_tags": [[5]]})
    args = tc.TokenClassificationArgs()
    assert tc.resolve_tag_names(args, strings, strings) == ["O", "B-city", "I-city"]
    args.tag_names = ["O", "I-city", "B-city", "B-town", "I-town"]  # covers the data: its order is kept
    assert tc.resolve_tag_names(args, strings, strings) == args.tag_names
    assert tc.resolve_tag_names(tc.TokenClassificationArgs(), ids, ids) == LABELS  # ids without names: conll2003
    labelled = ids.cast_column("ner_tags", datasets.Sequence(datasets.ClassLabel(names=[f"T{i}" for i in range(6)])))
    assert tc.resolve_tag_names(args, labelled, labelled)[5] == "T5"


def test_entity_lookup_baseline_on_wnut16_is_weak_but_not_zero():
    from recipes import baselines, sources

    train, validation = sources.rows("pkg:wnut16", "train"), sources.rows("pkg:wnut16", "validation")
    predicted = baselines.entity_lookup([r["tokens"] for r in train], [r["ner_tags"] for r in train],
                                        [r["tokens"] for r in validation])
    scores = tc.seqeval_scores([r["ner_tags"] for r in validation], predicted)
    assert scores["f1"] == pytest.approx(0.3422, abs=1e-4)  # the README's baseline figure
    assert scores["precision"] > 0.7 and scores["recall"] < 0.25  # precise, but most entities are new


def test_any_bio_tag_set_trains_and_own_eval_file_is_scored(tmp_path, one_torch_thread):
    rows = [{"tokens": ["I", "flew", "to", "Oslo", "with", "Norwind", "Air"],
             "ner_tags": ["O", "O", "O", "B-city", "O", "B-airline", "I-airline"]}] * 8
    train, evaluation = tmp_path / "train.jsonl", tmp_path / "eval.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    evaluation.write_text(json.dumps({"tokens": ["Oslo", "rocks"], "ner_tags": ["B-city", "O"]}) + "\n")
    out = tmp_path / "run"
    assert tc.main(["--dataset", str(train), "--eval_dataset", str(evaluation), "--output_dir", str(out),
                    "--max_steps", "2", "--per_device_train_batch_size", "4", "--logging_steps", "1"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["baselines"]["entity lookup"]["f1"] == 1.0  # "Oslo" was a city in train
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "O", "1": "B-airline", "2": "I-airline", "3": "B-city", "4": "I-city"}


def test_seqeval_on_the_chapter_example():
    ref = ["B-ORG", "O", "B-MISC", "O", "O", "O", "B-MISC", "O", "O"]
    pred = list(ref)
    pred[2] = "O"
    scores = tc.seqeval_scores([ref], [pred])
    assert scores["precision"] == 1.0
    assert scores["recall"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx(0.8)
    assert scores["accuracy"] == pytest.approx(8 / 9)


def test_seqeval_hand_made_spans():
    ref = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG", "I-ORG"]]
    # PER span cut short (wrong), LOC right, ORG right; one extra false MISC entity.
    pred = [["B-PER", "O", "O", "B-LOC"], ["B-MISC", "B-ORG", "I-ORG"]]
    scores = tc.seqeval_scores(ref, pred)
    assert scores["precision"] == pytest.approx(2 / 4)  # predicted: PER, LOC, MISC, ORG
    assert scores["recall"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert scores["accuracy"] == pytest.approx(5 / 7)
    assert tc.seqeval_scores([["O", "O"]], [["O", "O"]])["f1"] == 0.0  # no entities: 0, not an error


def test_compute_metrics_skips_ignored_positions():
    labels = np.array([[-100, 1, 2, 0, -100]])
    logits = np.full((1, 5, len(LABELS)), -5.0)
    for pos, lab in enumerate([3, 1, 2, 0, 3]):  # the -100 positions predict junk that must not count
        logits[0, pos, lab] = 5.0
    scores = tc.compute_metrics((logits, labels), LABELS)
    assert scores == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "accuracy": 1.0}


def test_shipped_data_schema():
    rows = [json.loads(line) for line in open(FIXTURES / "ner_train.jsonl")]
    assert 100 <= len(rows) <= 500
    for row in rows:
        assert len(row["tokens"]) == len(row["ner_tags"]) and all(0 <= t < len(LABELS) for t in row["ner_tags"])
    assert any(t in (2, 4, 6, 8) for row in rows for t in row["ner_tags"])  # multi-word entities exist


def test_wrong_schema_file_is_a_user_error(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"tokens": ["a", "b"], "tags": [0, 0]}) + "\n" + json.dumps({"tokens": ["c"], "tags": [0]}) + "\n")
    with pytest.raises(UserError, match="missing field.*ner_tags"):
        tc.main(["--dataset", str(bad), "--eval_dataset", "", "--output_dir", str(tmp_path / "out")])


@pytest.mark.slow
def test_short_run_checkpoint_reloads_with_same_predictions_and_pipeline(tmp_path, monkeypatch):
    import torch
    from transformers import AutoModelForTokenClassification, pipeline

    probe = "Talia Varnholt joined Kestrel Labs in Port Calloway ."
    captured = {}
    real_save = _common.save_checkpoint

    def spy(model, tokenizer, output_dir, **kw):
        model.eval()
        with torch.no_grad():
            captured["logits"] = model(**tokenizer(probe, return_tensors="pt")).logits
        return real_save(model, tokenizer, output_dir, **kw)

    monkeypatch.setattr(_common, "save_checkpoint", spy)
    out = tmp_path / "ner"
    code = tc.main(["--config", "recipes/configs/token_classification.yaml", "--output_dir", str(out),
                    "--max_steps", "3", "--max_train_samples", "48", "--max_eval_samples", "16"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["after"]) == {"precision", "recall", "f1", "accuracy", "loss"}
    assert metrics["after"]["loss"] != metrics["before"]["loss"]
    assert "token-classification" in (out / "README.md").read_text()

    reloaded = AutoModelForTokenClassification.from_pretrained(out).eval()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)
    with torch.no_grad():
        logits = reloaded(**tok(probe, return_tensors="pt")).logits
    assert torch.allclose(logits, captured["logits"], atol=1e-5)
    assert torch.equal(logits.argmax(-1), captured["logits"].argmax(-1))
    assert "B-person" in reloaded.config.id2label.values()  # the tag set of pkg:wnut16

    ner = pipeline("ner", model=str(out), aggregation_strategy="simple")
    result = ner("Talia Varnholt joined Kestrel Labs in Port Calloway.")
    assert isinstance(result, list)
    assert all(r["entity_group"] in {t[2:] for t in reloaded.config.id2label.values() if t != "O"} for r in result)
