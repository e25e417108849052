"""Translation recipe: preprocessing (text_target, prompt masking), sacreBLEU, schema errors, and
short offline runs of both model families: a tiny random T5 (fast tier, a few seconds) and the
embedded SmolLM2 as decoder-only SFT (slow).

    pytest -q tests/test_translation.py            # fast tier
    pytest -q -m slow tests/test_translation.py    # the SmolLM2 run
"""

import json
from pathlib import Path

import pytest
from recipe_args import with_fields

from grpo.common.errors import UserError
from recipes import _common, decoder_sft, translation

FIXTURES = Path(__file__).parent / "fixtures" / "recipes"  # template rows written by scripts/make_*_data.py


def _args(**kw):
    return with_fields(translation.TranslationArgs, **kw)


BATCH = {"translation": [{"en": "Open the file", "fr": "Ouvrir le fichier"},
                         {"en": "The folder has been copied.", "fr": "Le dossier a été copié."}]}


def test_encoder_decoder_preprocess_tokenizes_targets_with_text_target(tokenizer):
    args = _args(max_source_length=16, max_target_length=16, source_prefix="translate English to French: ")
    args.encoder_decoder = True
    out = translation.preprocess(BATCH, tokenizer, args)
    eos = tokenizer.eos_token_id
    for i, pair in enumerate(BATCH["translation"]):
        assert out["input_ids"][i] == tokenizer(args.source_prefix + pair["en"])["input_ids"][:16]
        assert out["labels"][i] == tokenizer(text_target=pair["fr"])["input_ids"] + [eos]
    args.max_target_length = 3  # truncation keeps eos as the last label
    out = translation.preprocess(BATCH, tokenizer, args)
    assert all(len(ids) == 3 and ids[-1] == eos for ids in out["labels"])


def test_decoder_only_preprocess_masks_the_prompt(tokenizer):
    args = _args()
    out = translation.preprocess(BATCH, tokenizer, args)
    for i, pair in enumerate(BATCH["translation"]):
        ids, labels = out["input_ids"][i], out["labels"][i]
        prompt = decoder_sft.build_prompt(tokenizer, args.instruction, pair["en"])
        n_prompt = len(decoder_sft.prompt_token_ids(tokenizer, [prompt])[0])
        assert labels[:n_prompt] == [-100] * n_prompt
        assert labels[n_prompt:] == ids[n_prompt:]
        assert ids[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(ids[n_prompt:], skip_special_tokens=True) == pair["fr"]
        assert pair["en"] in tokenizer.decode(ids[:n_prompt])


def test_collator_pads_labels_with_minus_100(tokenizer):
    out = translation.preprocess(BATCH, tokenizer, _args())
    rows = [{k: out[k][i] for k in out} for i in range(2)]
    batch = decoder_sft.collator(tokenizer)(rows)
    short = min(range(2), key=lambda i: len(rows[i]["input_ids"]))
    n = len(rows[short]["input_ids"])
    assert batch["input_ids"].shape == batch["labels"].shape
    assert (batch["labels"][short, n:] == -100).all()
    assert (batch["attention_mask"][short, n:] == 0).all()


def test_sacrebleu_matches_the_course_example():
    predictions = ["This plugin lets you translate web pages between several languages automatically."]
    references = ["This plugin allows you to automatically translate web pages between several languages."]
    assert translation.compute_metrics(predictions, references)["bleu"] == pytest.approx(46.7505, abs=1e-4)
    assert translation.compute_metrics(["This plugin"], references)["bleu"] == 0.0


def test_default_data_has_the_kde4_schema():
    rows = [json.loads(line) for line in open(FIXTURES / "translation.jsonl")]
    assert 100 <= len(rows) <= 500
    assert all(set(r["translation"]) == {"en", "fr"} and r["translation"]["fr"] for r in rows)


def test_wrong_schema_names_the_missing_field(tmp_path):
    flat = tmp_path / "flat.jsonl"
    flat.write_text('{"en": "Open", "fr": "Ouvrir"}\n' * 4)
    with pytest.raises(UserError, match="translation"):
        translation.main(["--dataset", str(flat), "--output_dir", str(tmp_path / "out")])
    german = tmp_path / "de.jsonl"
    german.write_text('{"translation": {"en": "Open", "de": "Öffnen"}}\n' * 4)
    with pytest.raises(UserError, match="translation.fr"):
        translation.main(["--dataset", str(german), "--output_dir", str(tmp_path / "out")])


def test_config_parses_with_overrides():
    from transformers import Seq2SeqTrainingArguments

    args, targs = _common.parse_args(translation.TranslationArgs,
                                     ["--config", "recipes/configs/translation.yaml", "--max_steps", "3"],
                                     Seq2SeqTrainingArguments)
    assert args.source_lang == "en" and targs.max_steps == 3 and targs.generation_max_length == 48
    # the YAML alone carries the training settings (no table of recipe defaults under it)
    assert (targs.output_dir, targs.learning_rate, targs.warmup_steps, targs.weight_decay) == \
        ("runs/translation", 1e-4, 6, 0.01)
    assert args.dataset_name == "pkg:po-en-fr" and args.max_eval_samples == 200


def _capture_finish(monkeypatch):
    """Record the trainer handed to ``_common.finish`` so a test can compare it with the saved copy."""
    seen = {}
    original = _common.finish

    def finish(trainer, *a, **kw):
        seen["trainer"] = trainer
        return original(trainer, *a, **kw)
    monkeypatch.setattr(_common, "finish", finish)
    return seen


def tiny_t5(path, tokenizer):
    """A randomly initialised 1-layer T5 around the SmolLM2 tokenizer, saved as a checkpoint dir."""
    from transformers import T5Config, T5ForConditionalGeneration, set_seed

    set_seed(0)
    config = T5Config(vocab_size=len(tokenizer), d_model=32, d_ff=64, d_kv=8, num_layers=1, num_decoder_layers=1,
                      num_heads=2, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                      decoder_start_token_id=tokenizer.pad_token_id)
    T5ForConditionalGeneration(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def tiny_marian(path, tokenizer):
    """A randomly initialised 1-layer Marian (the course's opus-mt architecture) around the SmolLM2 tokenizer."""
    from transformers import MarianConfig, MarianMTModel, set_seed

    set_seed(0)
    config = MarianConfig(vocab_size=len(tokenizer), d_model=32, encoder_layers=1, decoder_layers=1,
                          encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                          max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id,
                          eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id,
                          forced_eos_token_id=None)
    MarianMTModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def test_seq2seq_collator_makes_decoder_inputs_from_text_target_labels(tmp_path, tokenizer):
    from transformers import AutoModelForSeq2SeqLM, DataCollatorForSeq2Seq

    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_t5(tmp_path / "t5", tokenizer))
    args = _args(max_source_length=16, max_target_length=16)
    args.encoder_decoder = True
    out = translation.preprocess(BATCH, tokenizer, args)
    batch = DataCollatorForSeq2Seq(tokenizer, model=model)([{k: out[k][i] for k in out} for i in range(2)])
    labels, decoder_inputs = batch["labels"], batch["decoder_input_ids"]
    short = min(range(2), key=lambda i: len(out["labels"][i]))
    assert (labels[short, len(out["labels"][short]):] == -100).all()  # label padding is ignored by the loss
    assert (decoder_inputs[:, 0] == model.config.decoder_start_token_id).all()  # labels shifted right
    assert decoder_inputs[0, 1:].tolist() == [t if t != -100 else tokenizer.pad_token_id for t in labels[0, :-1].tolist()]


@pytest.mark.parametrize("build", [tiny_t5, tiny_marian], ids=["t5", "marian"])
def test_encoder_decoder_path_trains_and_reloads(build, tmp_path, tokenizer, monkeypatch, one_torch_thread):
    from transformers import AutoModelForSeq2SeqLM, Seq2SeqTrainer

    seen = _capture_finish(monkeypatch)
    out = tmp_path / "run"
    model_dir = build(tmp_path / "model", tokenizer)
    assert translation.main(["--model", model_dir, "--output_dir", str(out), "--max_steps", "2",
                             "--max_train_samples", "16", "--max_eval_samples", "4", "--learning_rate", "1e-3",
                             "--generation_max_length", "8", "--per_device_train_batch_size", "4"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["before"]) == {"bleu", "eval_loss"}
    assert set(metrics["baselines"]) == {"copy source", "copy nearest"}
    assert (out / "README.md").exists() and "pipeline_tag: translation" in (out / "README.md").read_text()
    trainer = seen["trainer"]
    assert isinstance(trainer, Seq2SeqTrainer) and trainer.args.predict_with_generate  # BLEU of generations
    assert trainer.state.global_step == 2
    trained = trainer.model.eval()
    reloaded = AutoModelForSeq2SeqLM.from_pretrained(out).eval()
    batch = tokenizer(["Open the file", "Save the selected image"], return_tensors="pt", padding=True)
    kw = dict(max_new_tokens=6, do_sample=False)
    assert reloaded.generate(**batch, **kw).tolist() == trained.generate(**batch, **kw).tolist()
    texts = decoder_sft.generate_responses(reloaded, tokenizer, ["Open the file"], max_new_tokens=4)
    assert len(texts) == 1 and isinstance(texts[0], str)


@pytest.mark.slow
def test_decoder_only_default_trains_and_reloads(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    seen = _capture_finish(monkeypatch)
    out = tmp_path / "run"
    assert translation.main(["--config", "recipes/configs/translation.yaml", "--output_dir", str(out),
                             "--max_steps", "2", "--max_train_samples", "8", "--max_eval_samples", "4",
                             "--per_device_train_batch_size", "4", "--generation_max_length", "12"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["after"]["eval_loss"] < metrics["before"]["eval_loss"]
    args = translation.TranslationArgs()
    prompts = [decoder_sft.build_prompt(seen["trainer"].processing_class, args.instruction, s)
               for s in ("Open the file", "The folder has been copied.")]
    before_save = decoder_sft.generate_responses(seen["trainer"].model, seen["trainer"].processing_class, prompts,
                                                 max_new_tokens=12)
    reloaded = decoder_sft.generate_responses(AutoModelForCausalLM.from_pretrained(out),
                                              AutoTokenizer.from_pretrained(out), prompts, max_new_tokens=12)
    assert reloaded == before_save
