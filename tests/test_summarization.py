"""Summarization recipe: preprocessing (text_target + length caps, prompt masking), ROUGE, schema
errors, and short offline runs (a tiny random BART and embedded SmolLM2).

    pytest -q tests/test_summarization.py            # fast tier
    pytest -q -m slow tests/test_summarization.py    # + the training runs
"""

import json
from pathlib import Path

import pytest
from recipe_args import with_fields

from grpo.common.errors import UserError
from recipes import _common, decoder_sft, summarization

FIXTURES = Path(__file__).parent / "fixtures" / "recipes"  # template rows written by scripts/make_*_data.py


def _args(**kw):
    return with_fields(summarization.SummarizationArgs, **kw)


DOC = ("Heavy snow hit Quenby on Monday, and schools were closed. Several roads around the town were closed "
       "for most of the day. Forecasters said conditions should improve by the end of the week.")
SUMMARY = "Heavy snow has caused disruption in Quenby, where schools were closed."
BATCH = {"document": [DOC, "Short one."], "summary": [SUMMARY, "Short."], "id": ["0", "1"]}


def test_encoder_decoder_preprocess_caps_both_lengths(tokenizer):
    args = _args(max_source_length=12, max_target_length=5, source_prefix="summarize: ")
    args.encoder_decoder = True
    out = summarization.preprocess(BATCH, tokenizer, args)
    assert out["input_ids"][0] == tokenizer("summarize: " + DOC)["input_ids"][:12]
    full_target = tokenizer(text_target=SUMMARY)["input_ids"]
    assert out["labels"][0] == full_target[:4] + [tokenizer.eos_token_id]
    assert out["labels"][1] == tokenizer(text_target="Short.")["input_ids"] + [tokenizer.eos_token_id]


def test_decoder_only_preprocess_masks_the_prompt_and_truncates_the_document(tokenizer):
    args = _args(max_source_length=10)
    out = summarization.preprocess(BATCH, tokenizer, args)
    ids, labels = out["input_ids"][0], out["labels"][0]
    n_prompt = labels.count(-100)
    assert labels[:n_prompt] == [-100] * n_prompt and -100 not in labels[n_prompt:]
    assert tokenizer.decode(ids[n_prompt:], skip_special_tokens=True) == SUMMARY
    prompt_text = tokenizer.decode(ids[:n_prompt])
    assert "Heavy snow hit Quenby" in prompt_text and "Forecasters" not in prompt_text  # document cut to 10 tokens


def test_rouge_known_cases():
    perfect = summarization.compute_metrics([SUMMARY], [SUMMARY])
    assert perfect == {k: 100.0 for k in summarization.ROUGE_TYPES}
    assert summarization.compute_metrics(["zebra"], [SUMMARY])["rouge1"] == 0.0
    # "the cat sat" vs "the cat sat down": P=1, R=3/4 -> F1 = 6/7 for ROUGE-1 and L; ROUGE-2: P=1, R=2/3 -> 0.8
    scores = summarization.compute_metrics(["the cat sat"], ["the cat sat down"])
    assert scores["rouge1"] == pytest.approx(100 * 6 / 7, abs=1e-3)
    assert scores["rouge2"] == pytest.approx(80.0, abs=1e-3)
    assert scores["rougeL"] == pytest.approx(100 * 6 / 7, abs=1e-3)


def test_rouge_lsum_uses_sentence_lines():
    # Two sentences in swapped order: ROUGE-L (one sequence) drops, ROUGE-Lsum (per-sentence LCS) does not.
    reference, prediction = "A cat sat. A dog ran.", "A dog ran. A cat sat."
    scores = summarization.compute_metrics([prediction], [reference])
    assert scores["rougeLsum"] == pytest.approx(100.0) and scores["rougeL"] < 100.0
    assert summarization.split_sentences(" One. Two?  Three! ") == "One.\nTwo?\nThree!"


def test_default_data_has_the_xsum_schema():
    rows = [json.loads(line) for line in open(FIXTURES / "summarization.jsonl")]
    assert 100 <= len(rows) <= 500
    assert all(r["document"] and r["summary"] and len(r["summary"]) < len(r["document"]) for r in rows)


def test_wrong_schema_names_the_missing_field(tmp_path):
    wrong = tmp_path / "cnn.jsonl"
    wrong.write_text('{"article": "Text.", "highlights": "T."}\n' * 4)
    with pytest.raises(UserError, match="document"):
        summarization.main(["--dataset", str(wrong), "--output_dir", str(tmp_path / "out")])
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"document": "Text.", "summary": "T."}\n' * 3 + '{"document": "Text.", "summary": null}\n')
    with pytest.raises(UserError, match="summary"):
        summarization.main(["--dataset", str(empty), "--eval_fraction", "0.5", "--output_dir", str(tmp_path / "o")])


def test_same_column_twice_is_a_config_error():
    with pytest.raises(UserError, match="text_column"):
        _common.parse_args(summarization.SummarizationArgs, ["--summary_column", "document"])


def _capture_finish(monkeypatch):
    seen = {}
    original = _common.finish

    def finish(trainer, *a, **kw):
        seen["trainer"] = trainer
        return original(trainer, *a, **kw)
    monkeypatch.setattr(_common, "finish", finish)
    return seen


def test_tiny_t5_trains_reloads_and_generates(tmp_path, tokenizer, monkeypatch, one_torch_thread):
    from transformers import AutoModelForSeq2SeqLM, Seq2SeqTrainer, T5Config, T5ForConditionalGeneration, set_seed

    set_seed(0)
    config = T5Config(vocab_size=len(tokenizer), d_model=32, d_ff=64, d_kv=8, num_layers=1, num_decoder_layers=1,
                      num_heads=2, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                      decoder_start_token_id=tokenizer.pad_token_id)
    T5ForConditionalGeneration(config).save_pretrained(tmp_path / "t5")
    tokenizer.save_pretrained(tmp_path / "t5")
    seen = _capture_finish(monkeypatch)
    out = tmp_path / "run"
    assert summarization.main(["--model", str(tmp_path / "t5"), "--output_dir", str(out), "--max_steps", "2",
                               "--max_train_samples", "8", "--max_eval_samples", "4", "--max_source_length", "64",
                               "--source_prefix", "summarize: ", "--generation_max_length", "8",
                               "--per_device_train_batch_size", "4"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["after"]) == {*summarization.ROUGE_TYPES, "eval_loss"}
    assert metrics["baselines"]["lead-1"]["rouge1"] > 0  # lead-1 of the same 4 held-out stories
    trainer = seen["trainer"]
    assert isinstance(trainer, Seq2SeqTrainer) and trainer.args.predict_with_generate
    assert trainer.state.global_step == 2
    reloaded = AutoModelForSeq2SeqLM.from_pretrained(out)
    kw = dict(max_new_tokens=6, batch_size=2)
    docs = ["summarize: " + DOC, "summarize: Short one."]
    assert decoder_sft.generate_responses(reloaded, tokenizer, docs, **kw) == \
        decoder_sft.generate_responses(trainer.model, tokenizer, docs, **kw)


def test_lead_1_baseline_on_real_news():
    from recipes import baselines, sources

    rows = sources.rows("pkg:lee-lead", "validation")
    scores = summarization.compute_metrics([baselines.lead_sentences(r["document"]) for r in rows],
                                           [r["summary"] for r in rows])
    assert scores["rouge1"] == pytest.approx(22.7582, abs=1e-3) and scores["rouge2"] == pytest.approx(4.7104, abs=1e-3)


@pytest.mark.slow
def test_tiny_bart_trains_and_reloads(tmp_path, tokenizer, monkeypatch):
    from transformers import AutoModelForSeq2SeqLM, BartConfig, BartForConditionalGeneration, set_seed

    set_seed(0)
    config = BartConfig(vocab_size=len(tokenizer), d_model=32, encoder_layers=1, decoder_layers=1,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                        decoder_ffn_dim=64, max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id,
                        eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
                        decoder_start_token_id=tokenizer.eos_token_id, forced_eos_token_id=None)
    BartForConditionalGeneration(config).save_pretrained(tmp_path / "bart")
    tokenizer.save_pretrained(tmp_path / "bart")
    seen = _capture_finish(monkeypatch)
    out = tmp_path / "run"
    assert summarization.main(["--model", str(tmp_path / "bart"), "--output_dir", str(out), "--max_steps", "2",
                               "--max_train_samples", "8", "--max_eval_samples", "4", "--max_source_length", "128",
                               "--generation_max_length", "8", "--per_device_train_batch_size", "4"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["after"]) == {*summarization.ROUGE_TYPES, "eval_loss"}
    trained = seen["trainer"].model
    reloaded = AutoModelForSeq2SeqLM.from_pretrained(out)
    kw = dict(max_new_tokens=6, batch_size=2)
    assert decoder_sft.generate_responses(reloaded, tokenizer, [DOC, "Short one."], **kw) == \
        decoder_sft.generate_responses(trained, tokenizer, [DOC, "Short one."], **kw)


@pytest.mark.slow
def test_decoder_only_default_trains_and_reloads(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    seen = _capture_finish(monkeypatch)
    out = tmp_path / "run"
    assert summarization.main(["--config", "recipes/configs/summarization.yaml", "--output_dir", str(out),
                               "--max_steps", "2", "--max_train_samples", "8", "--max_eval_samples", "2",
                               "--generation_max_length", "16"]) == 0
    card = (out / "README.md").read_text()
    assert "rougeLsum" in card and "pipeline_tag: text-generation" in card
    prompt = decoder_sft.build_prompt(seen["trainer"].processing_class, summarization.SummarizationArgs().instruction, DOC)
    before_save = decoder_sft.generate_responses(seen["trainer"].model, seen["trainer"].processing_class, [prompt],
                                                 max_new_tokens=16)
    reloaded = decoder_sft.generate_responses(AutoModelForCausalLM.from_pretrained(out),
                                              AutoTokenizer.from_pretrained(out), [prompt], max_new_tokens=16)
    assert reloaded == before_save
