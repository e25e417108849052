"""Causal LM recipe: stdlib data, tokenizer training, full-chunk chunking, perplexity, and short
offline runs from scratch (fast: a tiny GPT-2) and as a SmolLM2 fine-tune (slow).

    pytest -q tests/test_causal_lm.py            # fast tier
    pytest -q -m slow tests/test_causal_lm.py    # + the SmolLM2 fine-tune run
"""

import json
import math

import pytest
from recipe_args import with_fields

from grpo.common.errors import UserError
from recipes import _common, causal_lm


def _args(**kw):
    return with_fields(causal_lm.CausalLMArgs, **kw)


def test_stdlib_rows_are_deterministic_codeparrot_rows():
    rows = causal_lm.stdlib_rows(5, 300)
    assert rows == causal_lm.stdlib_rows(5, 300)
    assert len(rows) == 5 and len({r["path"] for r in rows}) == 5
    assert all(set(r) == {"repo_name", "path", "content", "license"} and 0 < len(r["content"]) <= 300 for r in rows)


def test_preprocess_keeps_only_full_chunks(tokenizer):
    args = _args(context_length=16)
    texts = ["x = 1\n" * 30, "short = True\n"]
    out = causal_lm.preprocess({"content": texts}, tokenizer, args)
    total = len(tokenizer(texts[0])["input_ids"])
    assert total > 32 and total % 16  # a partial tail exists and must be dropped
    assert len(out["input_ids"]) == total // 16  # the short text gives no full chunk
    assert all(len(ids) == 16 for ids in out["input_ids"])
    assert sum(out["input_ids"], []) == tokenizer(texts[0])["input_ids"][:16 * (total // 16)]


def test_train_new_tokenizer_from_the_old_one(tokenizer):
    texts = [r["content"] for r in causal_lm.stdlib_rows(8, 4000)]
    new = causal_lm.train_tokenizer(tokenizer, texts, vocab_size=400)
    assert len(new) <= 400 + len(tokenizer.all_special_tokens) and new.eos_token == tokenizer.eos_token
    assert new.pad_token is not None
    sample = "def __init__(self, name):\n        return self.name\n"
    assert new.decode(new(sample)["input_ids"]) == sample  # byte-level BPE round-trips
    # Learned on code, the new vocabulary is far smaller yet still encodes code compactly.
    assert len(new(sample)["input_ids"]) < 3 * len(tokenizer(sample)["input_ids"])


def test_perplexity_is_exp_loss():
    assert causal_lm.compute_metrics(math.log(50.0))["perplexity"] == pytest.approx(50.0)
    assert causal_lm.compute_metrics(1e6)["perplexity"] == float("inf")


def test_wrong_column_names_it(tmp_path):
    bad = tmp_path / "code.jsonl"
    bad.write_text('{"text": "print(1)"}\n' * 4)
    with pytest.raises(UserError, match="content"):
        causal_lm.main(["--dataset", str(bad), "--output_dir", str(tmp_path / "out")])
    with pytest.raises(UserError, match="n_head"):
        _common.parse_args(causal_lm.CausalLMArgs, ["--n_embd", "30", "--n_head", "4"])


def _capture_finish(monkeypatch):
    seen = {}
    original = _common.finish

    def finish(trainer, *a, **kw):
        seen["trainer"] = trainer
        return original(trainer, *a, **kw)
    monkeypatch.setattr(_common, "finish", finish)
    return seen


def test_from_scratch_trains_and_reloads(tmp_path, monkeypatch):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    seen = _capture_finish(monkeypatch)
    out = tmp_path / "run"
    assert causal_lm.main(["--config", "recipes/configs/causal_lm.yaml", "--output_dir", str(out),
                           "--stdlib_files", "6", "--max_chars_per_file", "3000", "--vocab_size", "300",
                           "--n_layer", "1", "--n_head", "2", "--n_embd", "32", "--context_length", "32",
                           "--max_steps", "3", "--warmup_steps", "0", "--per_device_train_batch_size", "4",
                           "--eval_fraction", "0.34"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["after"]["perplexity"] < metrics["before"]["perplexity"]
    # a random GPT-2 starts near uniform over the vocabulary, far worse than token frequencies
    assert 1 < metrics["baselines"]["unigram"]["perplexity"] < metrics["before"]["perplexity"]
    trainer = seen["trainer"]
    reloaded, tok = AutoModelForCausalLM.from_pretrained(out).eval(), AutoTokenizer.from_pretrained(out)
    assert len(tok) == trainer.processing_class.__len__() <= 300 + len(tok.all_special_tokens)
    ids = tok("def main():\n    return", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(reloaded(ids).logits, trainer.model.eval()(ids).logits)
    generated = pipeline("text-generation", model=str(out))("import os", max_new_tokens=4, do_sample=False)
    assert generated[0]["generated_text"].startswith("import os")


@pytest.mark.slow
def test_finetune_smollm2_trains_and_reloads(tmp_path, monkeypatch):
    import torch
    from transformers import AutoModelForCausalLM

    seen = _capture_finish(monkeypatch)
    out = tmp_path / "run"
    assert causal_lm.main(["--config", "recipes/configs/causal_lm_finetune.yaml", "--output_dir", str(out),
                           "--stdlib_files", "6", "--max_chars_per_file", "4000", "--eval_fraction", "0.34",
                           "--max_steps", "2", "--max_train_samples", "8", "--max_eval_samples", "4"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["after"]["perplexity"] < metrics["before"]["perplexity"]
    reloaded = AutoModelForCausalLM.from_pretrained(out).eval()
    ids = seen["trainer"].processing_class("def main():\n    return", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(reloaded(ids).logits, seen["trainer"].model.eval()(ids).logits, atol=1e-5)
