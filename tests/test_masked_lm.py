"""Tests for recipes/masked_lm.py: group_texts chunking, (whole-word) masking, perplexity; slow: a short run.

Run: pytest tests/test_masked_lm.py            (fast)
     pytest -m slow tests/test_masked_lm.py    (trains 3 steps, reloads, runs pipeline("fill-mask"))
"""

import json
import math
from pathlib import Path

import pytest

from grpo.common.errors import UserError
from recipes import _common
from recipes import masked_lm as mlm

FIXTURES = Path(__file__).parent / "fixtures" / "recipes"  # template rows written by scripts/make_*_data.py


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tokenizer():
    from grpo.modeling.models import load_tokenizer

    return load_tokenizer("embedded:minilm-l6")


def test_group_texts_concatenates_chunks_and_drops_tail():
    examples = {"input_ids": [[1, 2, 3], [4, 5, 6, 7], [8]], "attention_mask": [[1, 1, 1], [1, 1, 1, 1], [1]]}
    out = mlm.group_texts(examples, chunk_size=3)
    assert out["input_ids"] == [[1, 2, 3], [4, 5, 6]]  # 8 tokens -> two chunks of 3, tail [7, 8] dropped
    assert out["attention_mask"] == [[1, 1, 1], [1, 1, 1]]
    assert out["labels"] == out["input_ids"] and out["labels"] is not out["input_ids"]
    assert mlm.group_texts({"input_ids": [[1]]}, chunk_size=3) == {"input_ids": [], "labels": []}


def test_preprocess_then_group_keeps_special_tokens_between_texts(tokenizer):
    args = mlm.MaskedLMArgs(chunk_size=16)
    batch = {"text": ["A quiet film about a ferryman.", "The acting is wonderful and the music is moving."]}
    tokenized = mlm.preprocess(batch, tokenizer, args)
    assert "offset_mapping" not in tokenized
    out = mlm.group_texts(tokenized, args.chunk_size)
    flat = [t for chunk in out["input_ids"] for t in chunk]
    assert all(len(c) == 16 for c in out["input_ids"])
    assert tokenizer.sep_token_id in flat and flat.count(tokenizer.cls_token_id) >= 1
    with pytest.raises(UserError, match="'text'"):
        mlm.preprocess({"text": [None]}, tokenizer, args)


def _chunks(tokenizer, whole_word_mask):
    import datasets

    args = mlm.MaskedLMArgs(chunk_size=32, whole_word_mask=whole_word_mask)
    texts = ["Thornvale Nights is a beautifully shot film about a clockmaker in Kettleby."] * 6
    raw = datasets.Dataset.from_dict({"text": texts})
    tokenized = raw.map(lambda b: mlm.preprocess(b, tokenizer, args), batched=True, remove_columns=["text"])
    return tokenized.map(lambda b: mlm.group_texts(b, 32), batched=True)


def test_mask_once_is_deterministic_and_labels_only_masked(tokenizer):
    from transformers import DataCollatorForLanguageModeling

    chunks = _chunks(tokenizer, whole_word_mask=False)

    def masked():
        collator = DataCollatorForLanguageModeling(tokenizer=tokenizer, mlm_probability=0.3, seed=7)
        return mlm.mask_once(chunks, collator)

    a, b = masked(), masked()
    assert a["input_ids"] == b["input_ids"] and a["labels"] == b["labels"]
    for ids, labels, orig in zip(a["input_ids"], a["labels"], chunks["input_ids"]):
        assert any(t != -100 for t in labels)
        for i, t in enumerate(labels):
            if t == -100:
                assert ids[i] == orig[i]  # unmasked positions are untouched
            else:
                assert t == orig[i]


def test_whole_word_masking_masks_every_piece_of_a_word(tokenizer):
    from transformers import DataCollatorForLanguageModeling

    chunks = _chunks(tokenizer, whole_word_mask=True)
    assert "offset_mapping" in chunks.column_names
    collator = DataCollatorForLanguageModeling(tokenizer=tokenizer, mlm_probability=0.4, whole_word_mask=True,
                                               mask_replace_prob=1.0, random_replace_prob=0.0, seed=3)
    out = mlm.mask_once(chunks, collator)
    seen_multi_piece = False
    for labels, ids in zip(out["labels"], chunks["input_ids"]):
        tokens = tokenizer.convert_ids_to_tokens(ids)
        for i in range(1, len(tokens)):
            if tokens[i].startswith("##"):  # a continuation piece shares its word's masking decision
                assert (labels[i] == -100) == (labels[i - 1] == -100)
                seen_multi_piece = seen_multi_piece or labels[i] != -100
    assert seen_multi_piece


def test_perplexity_is_exp_loss():
    assert mlm.compute_metrics(0.0) == {"perplexity": 1.0, "loss": 0.0}
    assert mlm.compute_metrics(2.0)["perplexity"] == pytest.approx(math.e ** 2)
    assert mlm.compute_metrics(1000.0)["perplexity"] == float("inf")


def test_args_validation():
    with pytest.raises(ValueError, match="mlm_probability=1.5"):
        mlm.MaskedLMArgs(mlm_probability=1.5)


def test_shipped_data_schema():
    rows = [json.loads(line) for line in open(FIXTURES / "imdb_train.jsonl")]
    assert 100 <= len(rows) <= 500 and {r["label"] for r in rows} == {0, 1}
    assert all(isinstance(r["text"], str) and r["text"] for r in rows)


def test_unigram_baseline_counts_train_chunks_and_scores_masked_ids():
    from recipes.baselines import unigram_perplexity

    # train ids {5: 3, 6: 1}: p(5) = 4/7, p(6) = 2/7, unseen 1/7 (add-one over 2 ids + 1 unseen bucket)
    assert unigram_perplexity([[5, 5], [5, 6]], [5]) == pytest.approx(7 / 4)
    assert unigram_perplexity([[5, 5], [5, 6]], [9]) == pytest.approx(7.0)
    assert unigram_perplexity([[5, 5], [5, 6]], [5, 9]) == pytest.approx(math.sqrt(7 / 4 * 7))


def test_wrong_schema_file_is_a_user_error(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps({"review": "good film", "label": 1}) + "\n" for _ in range(4)))
    with pytest.raises(UserError, match="missing field.*text"):
        mlm.main(["--dataset", str(bad), "--eval_dataset", "", "--output_dir", str(tmp_path / "out")])


@pytest.mark.slow
def test_short_run_checkpoint_reloads_with_same_predictions_and_pipeline(tmp_path, monkeypatch):
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer, pipeline

    probe = "Firefighters said the [MASK] was burning out of control near the town."
    captured = {}
    real_save = _common.save_checkpoint

    def spy(model, tokenizer, output_dir, **kw):
        model.eval()
        with torch.no_grad():
            captured["logits"] = model(**tokenizer(probe, return_tensors="pt")).logits
        return real_save(model, tokenizer, output_dir, **kw)

    monkeypatch.setattr(_common, "save_checkpoint", spy)
    out = tmp_path / "mlm"
    code = mlm.main(["--config", "recipes/configs/masked_lm.yaml", "--output_dir", str(out), "--max_steps", "3",
                     "--max_train_samples", "24", "--max_eval_samples", "8", "--whole_word_mask", "true"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["after"]["perplexity"] == pytest.approx(math.exp(metrics["after"]["loss"]))
    assert metrics["baselines"]["unigram"]["perplexity"] > 1

    reloaded = AutoModelForMaskedLM.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    with torch.no_grad():
        logits = reloaded(**tok(probe, return_tensors="pt")).logits
    assert torch.allclose(logits, captured["logits"], atol=1e-4)
    assert torch.equal(logits.argmax(-1), captured["logits"].argmax(-1))

    fills = pipeline("fill-mask", model=str(out))(probe)
    assert len(fills) == 5 and all("[MASK]" not in f["sequence"] for f in fills)
