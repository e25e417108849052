"""Translation (course chapter 7, "Translation"): fine-tune a model to translate English to French.

    python -m recipes.translation --config recipes/configs/translation.yaml
    grpo recipe translation --config recipes/configs/translation.yaml --max_steps 10

Two model families, picked from the checkpoint's ``config.is_encoder_decoder``:

* **encoder-decoder** (Marian ``Helsinki-NLP/opus-mt-en-fr`` as in the course, t5, mt5, bart):
  sources and targets are tokenized together with ``text_target``; ``DataCollatorForSeq2Seq``
  pads labels with -100 so padding is ignored by the loss; ``Seq2SeqTrainer`` evaluates with
  ``predict_with_generate`` and sacreBLEU on the decoded generations.
* **decoder-only** (the offline default, embedded SmolLM2-135M-Instruct): prompt/response SFT
  with the loss on the response only (:mod:`recipes.decoder_sft`); evaluation generates
  greedily with :func:`recipes.decoder_sft.generate_responses` and scores with sacreBLEU.

Data: KDE4 rows ``{"translation": {"en": ..., "fr": ...}}`` (language keys set by
``source_lang``/``target_lang``). The offline default ``pkg:po-en-fr`` holds real software-UI
strings, KDE4's genre: Django's and JupyterLab's French catalogs for training, Sphinx's whole
catalog held out for eval (recipes/sources/README.md). Any file in the schema works with
``--dataset`` / ``--eval_dataset path.jsonl``; a local train file with no ``--eval_dataset`` has a
fraction held out, as the course splits KDE4's single split.

Baselines on the same eval rows (:mod:`recipes.baselines`): *copy source* (the English string
unchanged -- UI strings share names, placeholders and code with their translations) and *copy
nearest* (the French of the most similar training source).

Deviations from the course: sacreBLEU comes from the ``sacrebleu`` package, because
``evaluate.load("sacrebleu")`` fetches its metric script from the hub and fails offline; an eos
token is appended to targets when the tokenizer does not add one (Marian/T5 tokenizers do), so a
model built around a decoder tokenizer still learns to stop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import embedded_models
from recipes import _common, decoder_sft
from recipes.baselines import copy_nearest

logger = logging.getLogger(__name__)

USAGE = """
# decoder-only checkpoint (default):
from transformers import AutoModelForCausalLM, AutoTokenizer
from recipes.decoder_sft import build_prompt, generate_responses
model = AutoModelForCausalLM.from_pretrained(CHECKPOINT)
tokenizer = AutoTokenizer.from_pretrained(CHECKPOINT)
prompt = build_prompt(tokenizer, "Translate this English text to French.", "Open the file")
print(generate_responses(model, tokenizer, [prompt]))
# encoder-decoder checkpoint (transformers 5 dropped the translation pipeline): load it with
# AutoModelForSeq2SeqLM and call generate_responses(model, tokenizer, [SOURCE_PREFIX + "Open the file"])
"""


@dataclass
class TranslationArgs:
    # Model
    model: str = field(default=embedded_models.SMOLLM2, metadata={
        "help": "Model spec: encoder-decoder (marian/t5/mt5/bart) or decoder-only; hub id, local dir or embedded:*."})
    # Data
    dataset: str = field(default="pkg:po-en-fr", metadata={
        "help": "KDE4-schema rows {'translation': {src: ..., tgt: ...}}: pkg:po-en-fr, a local file or a hub id."})
    eval_dataset: str = field(default="", metadata={"help": "Eval rows (same schema); empty = a pkg: source's validation "
                                                             "split, or eval_fraction held out of a local dataset."})
    source_lang: str = field(default="en", metadata={"help": "Key of the source text inside 'translation'."})
    target_lang: str = field(default="fr", metadata={"help": "Key of the target text inside 'translation'."})
    eval_fraction: float = field(default=0.1, metadata={"help": "Share of a local dataset held out for eval."})
    max_train_samples: int = field(default=0, metadata={"help": "Keep the first N train rows (0 = all)."})
    max_eval_samples: int = field(default=0, metadata={"help": "Keep the first N eval rows (0 = all)."})
    max_source_length: int = field(default=128, metadata={"help": "Source tokens kept (truncation)."})
    max_target_length: int = field(default=128, metadata={"help": "Target tokens kept (truncation)."})
    source_prefix: str = field(default="", metadata={"help": "Encoder-decoder only: text put before each source, "
                                                               "e.g. 'translate English to French: ' for t5."})
    instruction: str = field(default="Translate this English text to French.",
                             metadata={"help": "Decoder-only only: instruction before the source in the prompt."})
    system_prompt: str = field(default="", metadata={"help": "Decoder-only only: system message ('' = template default)."})
    encoder_decoder: bool = field(default=False, init=False,
                                  metadata={"help": "Filled in at runtime from the model's config."})

    def __post_init__(self):
        if self.source_lang == self.target_lang:
            raise ValueError(f"source_lang == target_lang == {self.source_lang!r}: set two different language keys")
        for name in ("max_source_length", "max_target_length"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}={getattr(self, name)}: must be a positive number of tokens")


# ---------------------------------------------------------------------------------------------
# Data


def preprocess(batch: dict, tokenizer, args: TranslationArgs) -> dict:
    """Tokenize a batch of KDE4 rows for training.

    Args:
        batch: ``{"translation": [{source_lang: str, target_lang: str}, ...]}`` (a ``map`` batch).
        tokenizer: the model's tokenizer.
        args: recipe args; ``args.encoder_decoder`` selects the format.

    Returns:
        encoder-decoder: ``input_ids``/``attention_mask`` of the (prefixed) sources and ``labels``
        = the targets tokenized with ``text_target`` (eos-terminated, not padded).
        decoder-only: :func:`recipes.decoder_sft.tokenize_pairs` rows (labels -100 on the prompt).
    """
    sources = [pair[args.source_lang] for pair in batch["translation"]]
    targets = [pair[args.target_lang] for pair in batch["translation"]]
    if args.encoder_decoder:
        inputs = tokenizer([args.source_prefix + s for s in sources], max_length=args.max_source_length, truncation=True)
        labels = tokenizer(text_target=targets, max_length=args.max_target_length, truncation=True)["input_ids"]
        inputs["labels"] = [decoder_sft.append_eos(ids, tokenizer.eos_token_id, args.max_target_length) for ids in labels]
        return dict(inputs)
    prompts = decoder_prompts(sources, tokenizer, args)
    return decoder_sft.tokenize_pairs(tokenizer, prompts, targets, args.max_target_length)


def decoder_prompts(sources: list[str], tokenizer, args: TranslationArgs) -> list[str]:
    """Prompts for a decoder-only model: the instruction plus the source cut to max_source_length."""
    return [decoder_sft.build_prompt(tokenizer, args.instruction,
                                     decoder_sft.truncate_text(tokenizer, s, args.max_source_length),
                                     args.system_prompt) for s in sources]


def check_rows(ds, args: TranslationArgs, source: str, limit: int = 1000) -> None:
    """UserError naming ``translation.<lang>`` when one of the first ``limit`` rows lacks it."""
    fields = [f"translation.{args.source_lang}", f"translation.{args.target_lang}"]
    for index, row in enumerate(ds.select(range(min(limit, len(ds))))):
        _common.check_row_fields(row, fields, source, index)


# ---------------------------------------------------------------------------------------------
# Metric


def compute_metrics(predictions: list[str], references: list[str]) -> dict:
    """Corpus sacreBLEU (0-100, higher is better) of predictions against one reference each.

    >>> compute_metrics(["Impossible d'ouvrir le fichier %1."], ["Impossible d'ouvrir le fichier %1."])["bleu"]
    100.0
    >>> compute_metrics(["Ouvrir le fichier"], ["Ouvrir le fichier"])["bleu"]  # no 4-gram: BLEU is 0
    0.0
    """
    import sacrebleu

    result = sacrebleu.corpus_bleu([p.strip() for p in predictions], [[r.strip() for r in references]])
    return {"bleu": round(float(result.score), 4)}


# ---------------------------------------------------------------------------------------------
# Main


def build_trainer(model, tokenizer, args: TranslationArgs, training_args, train_ds, eval_ds, eval_raw):
    """``(trainer, evaluate_fn)`` for the model family; ``evaluate_fn() -> {"bleu", "eval_loss"}``."""
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Trainer

    if args.encoder_decoder:
        training_args.predict_with_generate = True
        trainer = Seq2SeqTrainer(model=model, args=training_args, train_dataset=train_ds, eval_dataset=eval_ds,
                                 data_collator=DataCollatorForSeq2Seq(tokenizer, model=model),
                                 processing_class=tokenizer,
                                 compute_metrics=lambda p: compute_metrics(*decoder_sft.decode_predictions(p, tokenizer)))

        def evaluate_fn():
            metrics = trainer.evaluate()
            return {"bleu": metrics["eval_bleu"], "eval_loss": metrics["eval_loss"]}
        return trainer, evaluate_fn

    # Decoder-only: Seq2SeqTrainer would generate from prompt+response, so train with Trainer and
    # generate from the prompts ourselves.
    training_args.predict_with_generate = False
    trainer = Trainer(model=model, args=training_args, train_dataset=train_ds, eval_dataset=eval_ds,
                      data_collator=decoder_sft.collator(tokenizer), processing_class=tokenizer)
    prompts = decoder_prompts([p[args.source_lang] for p in eval_raw["translation"]], tokenizer, args)
    references = [p[args.target_lang] for p in eval_raw["translation"]]

    def evaluate_fn():
        loss = trainer.evaluate()["eval_loss"]
        predictions = decoder_sft.generate_responses(trainer.model, tokenizer, prompts,
                                                     max_new_tokens=training_args.generation_max_length,
                                                     batch_size=training_args.per_device_eval_batch_size)
        for prediction, reference in list(zip(predictions, references))[:3]:
            logger.info("prediction %r | reference %r", prediction, reference)
        return {**compute_metrics(predictions, references), "eval_loss": loss}
    return trainer, evaluate_fn


def baselines(train_raw, eval_raw, args: TranslationArgs) -> dict:
    """sacreBLEU of copying the source, and of copying the target of the nearest training source."""
    train_pairs, eval_pairs = train_raw["translation"], eval_raw["translation"]
    sources = [p[args.source_lang] for p in eval_pairs]
    references = [p[args.target_lang] for p in eval_pairs]
    nearest = copy_nearest([p[args.source_lang] for p in train_pairs], [p[args.target_lang] for p in train_pairs], sources)
    return {"copy source": compute_metrics(sources, references), "copy nearest": compute_metrics(nearest, references)}


def main(argv=None) -> int:
    """Parse the config, train, evaluate before/after, save the checkpoint. Returns the exit code."""
    from transformers import Seq2SeqTrainingArguments

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args, training_args = _common.parse_args(TranslationArgs, argv, Seq2SeqTrainingArguments)
    if training_args.generation_max_length is None:  # not configured: up to the longest target trained on
        training_args.generation_max_length = args.max_target_length
    train_raw, eval_raw = _common.load_splits(
        args.dataset, args.eval_dataset, columns=["translation"], eval_fraction=args.eval_fraction,
        max_train_samples=args.max_train_samples, max_eval_samples=args.max_eval_samples, seed=training_args.seed)
    check_rows(train_raw, args, args.dataset)
    check_rows(eval_raw, args, args.eval_dataset or args.dataset)
    args.encoder_decoder = decoder_sft.is_encoder_decoder(args.model)
    task = "seq2seq-lm" if args.encoder_decoder else "causal-lm"
    model, tokenizer = _common.load_model_and_tokenizer(args.model, task, seed=training_args.seed)
    tokenize = lambda batch: preprocess(batch, tokenizer, args)  # noqa: E731
    train_ds = train_raw.map(tokenize, batched=True, remove_columns=train_raw.column_names)
    eval_ds = eval_raw.map(tokenize, batched=True, remove_columns=eval_raw.column_names)
    logger.info("%s model, %d train / %d eval pairs", task, len(train_ds), len(eval_ds))

    trainer, evaluate_fn = build_trainer(model, tokenizer, args, training_args, train_ds, eval_ds, eval_raw)
    before, after, _ = _common.train_and_evaluate(trainer, evaluate_fn)
    _common.finish(trainer, args, training_args, task="translation",
                   pipeline_tag="translation" if args.encoder_decoder else "text-generation",
                   before=before, after=after, baselines=baselines(train_raw, eval_raw, args),
                   train_data={"spec": args.dataset, "rows": len(train_raw)},
                   eval_data={"spec": args.eval_dataset or f"{args.dataset} (held out)", "rows": len(eval_raw)},
                   argv=argv, usage=USAGE)
    return 0


if __name__ == "__main__":
    _common.cli(main)
