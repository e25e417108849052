"""Masked language modelling for domain adaptation, as in the course's chapter 7.3.

Run:
    python -m recipes.masked_lm --config recipes/configs/masked_lm.yaml
    grpo recipe masked_lm --config recipes/configs/masked_lm.yaml --whole_word_mask true

Data: imdb's schema -- a ``text`` column (``label`` is ignored). The offline default
``pkg:lee-news`` is 300 real ABC news stories from gensim's test corpus, 240 train / 60 eval
(recipes/sources/README.md); ``--eval_dataset my.jsonl`` scores your own texts. Texts are tokenized without
truncation, concatenated and cut into ``chunk_size``-token chunks (the last partial chunk is
dropped: ``group_texts``). ``DataCollatorForLanguageModeling`` masks ``mlm_probability`` of the
tokens on the fly (80% [MASK], 10% random, 10% kept); with ``--whole_word_mask true`` all pieces of
a chosen word are replaced by [MASK] together (transformers' own whole-word option, which finds words from
the offset mapping; the chapter writes this collator by hand from ``word_ids``).

Metric: perplexity = exp(mean masked-token cross-entropy) on the eval chunks. As in the chapter's
custom loop, the eval set is masked once with a fixed seed, so before/after numbers are comparable.
The embedded MiniLM ships without its MLM head, so "before" is a random head; the unigram baseline
(token frequencies of the train chunks, :func:`recipes.baselines.unigram_perplexity`, scored on the
same masked positions) says what "after" is worth.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from functools import partial

import embedded_models
from grpo.common.errors import UserError
from recipes import _common
from recipes._args import RecipeArgs
from recipes.baselines import unigram_perplexity

logger = logging.getLogger(__name__)

USAGE = """from transformers import pipeline
fill = pipeline("fill-mask", model="OUTPUT_DIR")
fill("This movie was a complete [MASK].")"""


@dataclass
class MaskedLMArgs(RecipeArgs):
    # Model
    model_name_or_path: str = field(default=embedded_models.MINILM, metadata={
        "help": "Model spec: embedded:minilm-l6, a local checkpoint dir or a hub id (course: distilbert-base-uncased)."})
    # Data
    dataset_name: str = field(default="pkg:lee-news", metadata={
        "help": "Train data: pkg:lee-news (real news), a local .jsonl/.json/.csv/.parquet with a text column, "
                "or a hub id (imdb)."})
    train_split: str = field(default="train", metadata={"help": "Hub split to train on."})
    eval_split: str = field(default="test", metadata={"help": "Hub split to evaluate on (imdb has train/test)."})
    text_column: str = field(default="text", metadata={"help": "Column holding the raw text."})
    chunk_size: int = field(default=128, metadata={"help": "Tokens per training chunk after concatenation."})
    mlm_probability: float = field(default=0.15, metadata={"help": "Share of tokens (or words) to mask."})
    whole_word_mask: bool = field(default=False, metadata={"help": "Mask every piece of a chosen word together."})

    def __post_init__(self):
        super().__post_init__()
        if not 0 < self.mlm_probability < 1:
            raise ValueError(f"mlm_probability={self.mlm_probability}: must be in (0, 1); BERT uses 0.15")
        if self.chunk_size < 8:
            raise ValueError(f"chunk_size={self.chunk_size}: use at least 8 tokens (course: 128)")


# ---------------------------------------------------------------------------------------------
# Preprocessing


def preprocess(batch: dict, tokenizer, args: MaskedLMArgs) -> dict:
    """Tokenize whole texts, no truncation (``group_texts`` cuts them); offsets for whole-word masking.

    Returns:
        ``input_ids``, ``attention_mask`` (+ ``token_type_ids``), and ``offset_mapping`` when
        ``args.whole_word_mask`` (transformers' collator finds word boundaries from it).

    Raises:
        UserError: a row whose text is not a string.
    """
    texts = batch[args.text_column]
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise UserError(f"row {i} of this batch: field {args.text_column!r} is {type(text).__name__}, not text")
    encoded = tokenizer(texts, return_offsets_mapping=args.whole_word_mask)
    return dict(encoded)


def group_texts(examples: dict, chunk_size: int) -> dict:
    """Concatenate every column and cut it into ``chunk_size`` pieces; drop the short tail.

    Returns:
        The same columns as chunks, plus ``labels`` (a copy of ``input_ids``; the collator masks).

    >>> group_texts({"input_ids": [[1, 2, 3], [4, 5]]}, chunk_size=2)
    {'input_ids': [[1, 2], [3, 4]], 'labels': [[1, 2], [3, 4]]}
    """
    concatenated = {k: [x for row in rows for x in row] for k, rows in examples.items()}
    total = len(concatenated["input_ids"]) // chunk_size * chunk_size
    result = {k: [v[i: i + chunk_size] for i in range(0, total, chunk_size)] for k, v in concatenated.items()}
    result["labels"] = [list(chunk) for chunk in result["input_ids"]]
    return result


def mask_once(chunks, collator):
    """Apply the masking collator once (seeded) so every evaluation sees the same masked tokens.

    Returns:
        A dataset with ``input_ids`` (masked), ``labels`` (-100 except at masked positions) and the
        other model inputs, ready for ``default_data_collator``.
    """
    def apply(batch: dict) -> dict:
        features = [dict(zip(batch, values)) for values in zip(*batch.values())]
        return {k: v.tolist() for k, v in collator(features).items()}

    return chunks.map(apply, batched=True, remove_columns=chunks.column_names)


# ---------------------------------------------------------------------------------------------
# Metrics


def compute_metrics(eval_loss: float) -> dict:
    """Perplexity from the mean masked-token cross-entropy (nats).

    >>> round(compute_metrics(math.log(20.0))["perplexity"], 6)
    20.0
    """
    return {"perplexity": math.exp(eval_loss) if eval_loss < 700 else float("inf"), "loss": float(eval_loss)}


# ---------------------------------------------------------------------------------------------
# Main


def main(argv=None) -> int:
    import transformers

    args, training_args = _common.parse_args(MaskedLMArgs, argv)
    train_raw, eval_raw = _common.load_splits(
        args.dataset_name, args.eval_dataset, columns=[args.text_column], train_split=args.train_split,
        eval_split=args.eval_split, eval_fraction=args.eval_fraction, max_train_samples=args.max_train_samples,
        max_eval_samples=args.max_eval_samples, seed=training_args.seed)
    model, tokenizer = _common.load_model_and_tokenizer(
        args.model_name_or_path, "masked-lm", seed=training_args.seed, require_fast=args.whole_word_mask)
    if tokenizer.mask_token is None:
        raise UserError(f"model {args.model_name_or_path!r} has no mask token; masked LM needs an encoder such as BERT")

    def chunk(raw):
        tokenized = raw.map(partial(preprocess, tokenizer=tokenizer, args=args), batched=True,
                            remove_columns=raw.column_names)
        grouped = tokenized.map(partial(group_texts, chunk_size=args.chunk_size), batched=True)
        if len(grouped) == 0:
            raise UserError(f"{len(raw)} texts give fewer than chunk_size={args.chunk_size} tokens; "
                            "use more data or a smaller --chunk_size")
        return grouped

    train_ds, eval_chunks = chunk(train_raw), chunk(eval_raw)
    # Whole-word masking always uses [MASK] (transformers forces it, and warns unless we ask for it).
    replace = {"mask_replace_prob": 1.0, "random_replace_prob": 0.0} if args.whole_word_mask else {}
    collator = transformers.DataCollatorForLanguageModeling(
        tokenizer=tokenizer, mlm_probability=args.mlm_probability, whole_word_mask=args.whole_word_mask, **replace)
    eval_collator = transformers.DataCollatorForLanguageModeling(
        tokenizer=tokenizer, mlm_probability=args.mlm_probability, whole_word_mask=args.whole_word_mask,
        seed=training_args.seed, **replace)
    eval_ds = mask_once(eval_chunks, eval_collator)
    if args.whole_word_mask:
        # The collator needs the offset_mapping column, which the Trainer would drop as "unused".
        training_args.remove_unused_columns = False
    logger.info("%d train texts -> %d chunks of %d tokens; %d eval chunks", len(train_raw), len(train_ds),
                args.chunk_size, len(eval_ds))
    trainer = transformers.Trainer(model=model, args=training_args, train_dataset=train_ds,
                                   data_collator=collator, processing_class=tokenizer)
    # Evaluation reuses the trained model with a plain collator: the eval set is already masked.
    evaluator = transformers.Trainer(model=model, args=training_args,
                                     data_collator=transformers.default_data_collator)

    def evaluate() -> dict:
        return compute_metrics(evaluator.evaluate(eval_ds)["eval_loss"])

    masked = [t for row in eval_ds["labels"] for t in row if t != -100]  # the ids the model must recover
    unigram = {"perplexity": unigram_perplexity(train_ds["input_ids"], masked)}
    before, after, _ = _common.train_and_evaluate(trainer, evaluate)
    _common.finish(trainer, args, training_args, task="masked_lm", pipeline_tag="fill-mask",
                   before=before, after=after, argv=argv, baselines={"unigram": unigram},
                   train_data={"spec": args.dataset_name, "rows": len(train_raw), "chunks": len(train_ds)},
                   eval_data={"spec": args.eval_dataset or f"{args.dataset_name} ({args.eval_split})", "rows": len(eval_raw),
                              "chunks": len(eval_ds)},
                   usage=USAGE.replace("OUTPUT_DIR", str(training_args.output_dir)))
    return 0


if __name__ == "__main__":
    _common.cli(main)
