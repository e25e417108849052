"""Summarization (course chapter 7, "Summarization"): fine-tune a model to write one-line summaries.

    python -m recipes.summarization --config recipes/configs/summarization.yaml
    grpo recipe summarization --config recipes/configs/summarization.yaml --max_steps 10

Two model families, picked from the checkpoint's ``config.is_encoder_decoder``:

* **encoder-decoder** (the course's ``google/mt5-small``; also ``t5-small`` on XSum, bart):
  documents and summaries are tokenized with ``text_target`` and their own length caps;
  ``DataCollatorForSeq2Seq`` pads labels with -100 (ignored by the loss); ``Seq2SeqTrainer``
  evaluates with ``predict_with_generate`` and ROUGE on the decoded generations.
* **decoder-only** (the offline default, embedded SmolLM2-135M-Instruct): prompt/response SFT
  with the loss on the summary only (:mod:`recipes.decoder_sft`); evaluation generates greedily
  with :func:`recipes.decoder_sft.generate_responses`.

Data: XSum rows ``{"document": ..., "summary": ...}`` (column names set by ``text_column`` /
``summary_column``, e.g. ``review_body``/``review_title`` for the course's Amazon reviews). The
offline default ``pkg:lee-lead`` is real news built the way XSum was: each ABC story's lead
sentence is the summary, the rest of the story the document (recipes/sources/README.md).
``--eval_dataset my.jsonl`` scores on your own rows. The lead-1 baseline (the document's first
sentence, :func:`recipes.baselines.lead_sentences`) is reported next to the model, as the course does.

Metric: ROUGE-1/2/L/Lsum F1 x 100 (mean over examples) from the ``rouge_score`` package, because
``evaluate.load("rouge")`` fetches its script from the hub and fails offline. ROUGE-Lsum needs
one sentence per line; nltk's punkt model is a download too, so sentences are split on end
punctuation followed by whitespace (:func:`split_sentences`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

import embedded_models
from recipes import _common, decoder_sft
from recipes.baselines import lead_sentences

logger = logging.getLogger(__name__)

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")

USAGE = """
# decoder-only checkpoint (default):
from transformers import AutoModelForCausalLM, AutoTokenizer
from recipes.decoder_sft import build_prompt, generate_responses
model = AutoModelForCausalLM.from_pretrained(CHECKPOINT)
tokenizer = AutoTokenizer.from_pretrained(CHECKPOINT)
prompt = build_prompt(tokenizer, "Summarize this article in one sentence.", DOCUMENT)
print(generate_responses(model, tokenizer, [prompt]))
# encoder-decoder checkpoint (transformers 5 dropped the summarization pipeline): load it with
# AutoModelForSeq2SeqLM and call generate_responses(model, tokenizer, [SOURCE_PREFIX + DOCUMENT])
"""


@dataclass
class SummarizationArgs:
    # Model
    model: str = field(default=embedded_models.SMOLLM2, metadata={
        "help": "Model spec: encoder-decoder (t5/mt5/bart) or decoder-only; hub id, local dir or embedded:*."})
    # Data
    dataset: str = field(default="pkg:lee-lead", metadata={
        "help": "Rows with a document and a summary column: pkg:lee-lead, a local file or a hub id."})
    eval_dataset: str = field(default="", metadata={"help": "Eval rows (same columns); empty = a pkg: source's or the "
                                                             "hub's validation split, or eval_fraction of a local file."})
    text_column: str = field(default="document", metadata={"help": "Column holding the text to summarize."})
    summary_column: str = field(default="summary", metadata={"help": "Column holding the reference summary."})
    eval_fraction: float = field(default=0.1, metadata={"help": "Share of a local dataset held out for eval."})
    max_train_samples: int = field(default=0, metadata={"help": "Keep the first N train rows (0 = all)."})
    max_eval_samples: int = field(default=0, metadata={"help": "Keep the first N eval rows (0 = all)."})
    max_source_length: int = field(default=512, metadata={"help": "Document tokens kept (truncation)."})
    max_target_length: int = field(default=64, metadata={"help": "Summary tokens kept (truncation)."})
    source_prefix: str = field(default="", metadata={"help": "Encoder-decoder only: text put before each document, "
                                                               "e.g. 'summarize: ' for t5."})
    instruction: str = field(default="Summarize this article in one sentence.",
                             metadata={"help": "Decoder-only only: instruction before the document in the prompt."})
    system_prompt: str = field(default="", metadata={"help": "Decoder-only only: system message ('' = template default)."})
    encoder_decoder: bool = field(default=False, init=False,
                                  metadata={"help": "Filled in at runtime from the model's config."})

    def __post_init__(self):
        if self.text_column == self.summary_column:
            raise ValueError(f"text_column == summary_column == {self.text_column!r}: name two different columns")
        for name in ("max_source_length", "max_target_length"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}={getattr(self, name)}: must be a positive number of tokens")


# ---------------------------------------------------------------------------------------------
# Data


def preprocess(batch: dict, tokenizer, args: SummarizationArgs) -> dict:
    """Tokenize a batch of document/summary rows for training.

    Args:
        batch: ``{text_column: [str], summary_column: [str], ...}`` (a ``map`` batch).
        tokenizer: the model's tokenizer.
        args: recipe args; ``args.encoder_decoder`` selects the format.

    Returns:
        encoder-decoder: ``input_ids``/``attention_mask`` of the (prefixed) documents, cut to
        ``max_source_length``, and ``labels`` = summaries tokenized with ``text_target``, cut to
        ``max_target_length`` and eos-terminated.
        decoder-only: :func:`recipes.decoder_sft.tokenize_pairs` rows (labels -100 on the prompt).
    """
    documents, summaries = batch[args.text_column], batch[args.summary_column]
    if args.encoder_decoder:
        inputs = tokenizer([args.source_prefix + d for d in documents], max_length=args.max_source_length,
                           truncation=True)
        labels = tokenizer(text_target=summaries, max_length=args.max_target_length, truncation=True)["input_ids"]
        inputs["labels"] = [decoder_sft.append_eos(ids, tokenizer.eos_token_id, args.max_target_length) for ids in labels]
        return dict(inputs)
    prompts = decoder_prompts(documents, tokenizer, args)
    return decoder_sft.tokenize_pairs(tokenizer, prompts, summaries, args.max_target_length)


def decoder_prompts(documents: list[str], tokenizer, args: SummarizationArgs) -> list[str]:
    """Prompts for a decoder-only model: the instruction plus the document cut to max_source_length."""
    return [decoder_sft.build_prompt(tokenizer, args.instruction,
                                     decoder_sft.truncate_text(tokenizer, d, args.max_source_length),
                                     args.system_prompt) for d in documents]


def check_rows(ds, args: SummarizationArgs, source: str, limit: int = 1000) -> None:
    """UserError naming the text/summary column when one of the first ``limit`` rows has none."""
    for index, row in enumerate(ds.select(range(min(limit, len(ds))))):
        _common.check_row_fields(row, [args.text_column, args.summary_column], source, index)


# ---------------------------------------------------------------------------------------------
# Metric

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_sentences(text: str) -> str:
    """One sentence per line, as ROUGE-Lsum expects (a punctuation split instead of nltk punkt).

    >>> split_sentences("It rained. Roads shut! Why?")
    'It rained.\\nRoads shut!\\nWhy?'
    """
    return "\n".join(s for s in _SENTENCE_END.split(text.strip()) if s)


def compute_metrics(predictions: list[str], references: list[str]) -> dict:
    """ROUGE-1/2/L/Lsum F1 x 100, averaged over examples (stemming on, as the course's metric).

    >>> compute_metrics(["the cat sat"], ["the cat sat"])["rouge1"]
    100.0
    """
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for prediction, reference in zip(predictions, references):
        scores = scorer.score(split_sentences(reference), split_sentences(prediction))
        for key in ROUGE_TYPES:
            totals[key] += scores[key].fmeasure
    count = max(len(predictions), 1)
    return {key: round(100 * value / count, 4) for key, value in totals.items()}


# ---------------------------------------------------------------------------------------------
# Main


def build_trainer(model, tokenizer, args: SummarizationArgs, training_args, train_ds, eval_ds, eval_raw):
    """``(trainer, evaluate_fn)`` for the model family; ``evaluate_fn() -> {rouge*, "eval_loss"}``."""
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Trainer

    if args.encoder_decoder:
        training_args.predict_with_generate = True
        trainer = Seq2SeqTrainer(model=model, args=training_args, train_dataset=train_ds, eval_dataset=eval_ds,
                                 data_collator=DataCollatorForSeq2Seq(tokenizer, model=model),
                                 processing_class=tokenizer,
                                 compute_metrics=lambda p: compute_metrics(*decoder_sft.decode_predictions(p, tokenizer)))

        def evaluate_fn():
            metrics = trainer.evaluate()
            return {**{k: metrics[f"eval_{k}"] for k in ROUGE_TYPES}, "eval_loss": metrics["eval_loss"]}
        return trainer, evaluate_fn

    # Decoder-only: Seq2SeqTrainer would generate from prompt+summary, so train with Trainer and
    # generate from the prompts ourselves.
    training_args.predict_with_generate = False
    trainer = Trainer(model=model, args=training_args, train_dataset=train_ds, eval_dataset=eval_ds,
                      data_collator=decoder_sft.collator(tokenizer), processing_class=tokenizer)
    prompts = decoder_prompts(eval_raw[args.text_column], tokenizer, args)
    references = list(eval_raw[args.summary_column])

    def evaluate_fn():
        loss = trainer.evaluate()["eval_loss"]
        predictions = decoder_sft.generate_responses(trainer.model, tokenizer, prompts,
                                                     max_new_tokens=training_args.generation_max_length,
                                                     batch_size=training_args.per_device_eval_batch_size)
        for prediction, reference in list(zip(predictions, references))[:3]:
            logger.info("prediction %r | reference %r", prediction, reference)
        return {**compute_metrics(predictions, references), "eval_loss": loss}
    return trainer, evaluate_fn


def main(argv=None) -> int:
    """Parse the config, train, evaluate before/after, save the checkpoint. Returns the exit code."""
    from transformers import Seq2SeqTrainingArguments

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args, training_args = _common.parse_args(SummarizationArgs, argv, Seq2SeqTrainingArguments)
    if training_args.generation_max_length is None:  # not configured: up to the longest target trained on
        training_args.generation_max_length = args.max_target_length
    train_raw, eval_raw = _common.load_splits(
        args.dataset, args.eval_dataset, columns=[args.text_column, args.summary_column],
        eval_fraction=args.eval_fraction, max_train_samples=args.max_train_samples,
        max_eval_samples=args.max_eval_samples, seed=training_args.seed)
    check_rows(train_raw, args, args.dataset)
    check_rows(eval_raw, args, args.eval_dataset or args.dataset)
    args.encoder_decoder = decoder_sft.is_encoder_decoder(args.model)
    task = "seq2seq-lm" if args.encoder_decoder else "causal-lm"
    model, tokenizer = _common.load_model_and_tokenizer(args.model, task, seed=training_args.seed)
    tokenize = lambda batch: preprocess(batch, tokenizer, args)  # noqa: E731
    train_ds = train_raw.map(tokenize, batched=True, remove_columns=train_raw.column_names)
    eval_ds = eval_raw.map(tokenize, batched=True, remove_columns=eval_raw.column_names)
    logger.info("%s model, %d train / %d eval documents", task, len(train_ds), len(eval_ds))

    trainer, evaluate_fn = build_trainer(model, tokenizer, args, training_args, train_ds, eval_ds, eval_raw)
    lead_1 = compute_metrics([lead_sentences(d) for d in eval_raw[args.text_column]], list(eval_raw[args.summary_column]))
    before, after, _ = _common.train_and_evaluate(trainer, evaluate_fn)
    _common.finish(trainer, args, training_args, task="summarization",
                   pipeline_tag="summarization" if args.encoder_decoder else "text-generation",
                   before=before, after=after, baselines={"lead-1": lead_1},
                   train_data={"spec": args.dataset, "rows": len(train_raw)},
                   eval_data={"spec": args.eval_dataset or f"{args.dataset} (held out)", "rows": len(eval_raw)},
                   argv=argv, usage=USAGE)
    return 0


if __name__ == "__main__":
    _common.cli(main)
