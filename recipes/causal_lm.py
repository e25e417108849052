"""Causal language modelling on Python code (course chapter 7, "Training a causal language model
from scratch", with chapter 6's "Training a new tokenizer from an old one"), from scratch or as a
fine-tune.

    python -m recipes.causal_lm --config recipes/configs/causal_lm.yaml            # from scratch
    python -m recipes.causal_lm --config recipes/configs/causal_lm_finetune.yaml   # fine-tune SmolLM2
    grpo recipe causal_lm --config recipes/configs/causal_lm.yaml --max_steps 20 --n_layer 1

From scratch (``from_scratch: true``), as the course does:

1. a new tokenizer is trained with ``train_new_from_iterator`` from an old one (``--model``'s
   tokenizer: embedded SmolLM2's byte-level BPE offline, ``gpt2`` as in the course online) on the
   training texts, fed in batches of 1,000 by a generator;
2. every text is cut into ``context_length``-token chunks with ``return_overflowing_tokens`` and
   only full chunks are kept (:func:`preprocess`);
3. a fresh GPT-2 model is built from a config (``n_layer``/``n_head``/``n_embd``; 12/12/768 is
   GPT-2 small) with the new vocabulary size and bos/eos ids;
4. ``DataCollatorForLanguageModeling(mlm=False)`` makes the labels and the ``Trainer`` trains;
   the metric is perplexity = exp(eval loss).

Fine-tune (``from_scratch: false``, default): the same chunks, tokenized with ``--model``'s own
tokenizer, train the pretrained model (embedded SmolLM2-135M-Instruct offline). Its checkpoint
keeps the chat template, so it is a valid ``--model`` for ``grpo train``.

Data: the course uses codeparrot-ds (a ``content`` column of Python files). The offline default
``dataset: stdlib`` reads the local Python standard library's top-level ``.py`` files
(``sysconfig.get_paths()["stdlib"]``, an evenly spaced, sorted subset of ``stdlib_files`` files,
each cut to ``max_chars_per_file``) into rows of the same schema. Any file or hub id with a text
column works with ``--dataset`` / ``--text_column``, e.g. English news: ``--dataset pkg:lee-news
--text_column text`` (recipes/sources/README.md). ``--eval_dataset my.jsonl`` scores your own texts.

Baseline: the perplexity of a unigram model of the training tokens on the same eval targets
(:func:`recipes.baselines.unigram_perplexity`), next to the model's before and after.
"""

from __future__ import annotations

import logging
import math
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

import embedded_models
from grpo.common.errors import UserError
from recipes import _common
from recipes._args import RecipeArgs
from recipes.baselines import unigram_perplexity

logger = logging.getLogger(__name__)

STDLIB = "stdlib"

USAGE = """
from transformers import pipeline
generator = pipeline("text-generation", model=CHECKPOINT)
print(generator("def read_config(path):", max_new_tokens=32)[0]["generated_text"])
"""


@dataclass
class CausalLMArgs(RecipeArgs):
    # Model
    model_name_or_path: str = field(default=embedded_models.SMOLLM2, metadata={
        "help": "Fine-tune: the model to train. From scratch: the model whose tokenizer is retrained."})
    from_scratch: bool = field(default=False, metadata={"help": "Train a new tokenizer and a fresh GPT-2 model."})
    vocab_size: int = field(default=8000, metadata={"help": "From scratch: vocabulary size of the new tokenizer."})
    n_layer: int = field(default=2, metadata={"help": "From scratch: transformer blocks (GPT-2 small: 12)."})
    n_head: int = field(default=4, metadata={"help": "From scratch: attention heads (GPT-2 small: 12)."})
    n_embd: int = field(default=128, metadata={"help": "From scratch: hidden size (GPT-2 small: 768)."})
    # Data
    dataset_name: str = field(default=STDLIB, metadata={"help": "'stdlib' (local Python standard library source), "
                                                                  "a local file or a hub id with a text column."})
    text_column: str = field(default="content", metadata={"help": "Column holding the text (codeparrot: content)."})
    stdlib_files: int = field(default=64, metadata={"help": "dataset=stdlib: number of .py files read."})
    max_chars_per_file: int = field(default=20000, metadata={"help": "dataset=stdlib: characters kept per file."})
    context_length: int = field(default=128, metadata={"help": "Tokens per training chunk; shorter tails dropped."})
    max_train_samples: int = field(default=0, metadata={"help": "Keep the first N train chunks (0 = all)."})
    max_eval_samples: int = field(default=0, metadata={"help": "Keep the first N eval chunks (0 = all)."})

    def __post_init__(self):
        super().__post_init__()
        for name in ("vocab_size", "n_layer", "n_head", "n_embd", "context_length", "stdlib_files", "max_chars_per_file"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}={getattr(self, name)}: must be positive")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}: pick sizes that divide")


# ---------------------------------------------------------------------------------------------
# Data


def stdlib_rows(num_files: int, max_chars: int) -> list[dict]:
    """Rows in codeparrot's schema from the local standard library's top-level ``.py`` files.

    The files are sorted by name and ``num_files`` of them are taken evenly spaced, so the same
    Python install always gives the same rows.

    Returns:
        ``[{"repo_name", "path", "content", "license"}]``, content cut to ``max_chars`` characters.

    Raises:
        UserError: when the install has no ``.py`` sources (e.g. a stripped runtime).
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.glob("*.py") if p.is_file())
    if not files:
        raise UserError(f"dataset {STDLIB!r}: no .py files under {root}; pass --dataset with a text file instead")
    step = max(len(files) / num_files, 1.0)
    picked = [files[int(i * step)] for i in range(min(num_files, len(files)))]
    rows = []
    for path in picked:
        text = path.read_text(encoding="utf-8", errors="replace")[:max_chars]
        if text.strip():
            rows.append({"repo_name": "python/cpython", "path": f"Lib/{path.name}", "content": text, "license": "psf-2.0"})
    return rows


def load_texts(args: CausalLMArgs, seed: int):
    """``(train, eval)`` raw datasets with ``args.text_column`` (UserError names a missing column)."""
    import datasets

    if args.dataset_name == STDLIB:
        if args.text_column != "content":
            raise UserError(f"dataset={STDLIB!r} has the column 'content', not text_column={args.text_column!r}")
        full = datasets.Dataset.from_list(stdlib_rows(args.stdlib_files, args.max_chars_per_file))
        if args.eval_dataset:
            from grpo.data.loaders import require_columns

            evaluation = _common.load_any(args.eval_dataset, "validation")
            require_columns(evaluation, [args.text_column], args.eval_dataset)
            return full, _common.drop_bookkeeping(evaluation)
        parts = full.train_test_split(test_size=args.eval_fraction, seed=seed)
        return parts["train"], parts["test"]
    return _common.load_splits(args.dataset_name, args.eval_dataset, columns=[args.text_column],
                               eval_fraction=args.eval_fraction, seed=seed)


def training_corpus(texts, batch_size: int = 1000):
    """Yield lists of ``batch_size`` texts: the generator ``train_new_from_iterator`` consumes."""
    for start in range(0, len(texts), batch_size):
        yield texts[start:start + batch_size]


def train_tokenizer(old_tokenizer, texts, vocab_size: int):
    """A tokenizer with the old one's algorithm and special tokens, its vocabulary learned on ``texts``."""
    tokenizer = old_tokenizer.train_new_from_iterator(training_corpus(texts), vocab_size)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # as the course does before the LM collator
    return tokenizer


def preprocess(batch: dict, tokenizer, args: CausalLMArgs) -> dict:
    """Cut each text into ``context_length``-token chunks, keeping only full ones (the course's ``tokenize``).

    Args:
        batch: ``{text_column: [str], ...}`` (a batched ``map`` input; other columns are dropped).
        tokenizer: a fast tokenizer (``return_overflowing_tokens`` splits long texts).
        args: recipe args (``text_column``, ``context_length``).

    Returns:
        ``{"input_ids": [[int] * context_length, ...]}``: more or fewer rows than the batch had.
    """
    outputs = tokenizer(batch[args.text_column], truncation=True, max_length=args.context_length,
                        return_overflowing_tokens=True, return_length=True)
    return {"input_ids": [ids for length, ids in zip(outputs["length"], outputs["input_ids"])
                          if length == args.context_length]}


def compute_metrics(eval_loss: float) -> dict:
    """Perplexity from the mean token cross-entropy (nats): ``exp(loss)``, ``inf`` on overflow.

    >>> compute_metrics(0.0)
    {'perplexity': 1.0, 'eval_loss': 0.0}
    """
    try:
        perplexity = math.exp(eval_loss)
    except OverflowError:
        perplexity = float("inf")
    return {"perplexity": perplexity, "eval_loss": eval_loss}


# ---------------------------------------------------------------------------------------------
# Model


def scratch_model(tokenizer, args: CausalLMArgs, seed: int):
    """A freshly initialised GPT-2 LM sized by args, with the tokenizer's vocabulary and bos/eos ids."""
    from transformers import GPT2Config, GPT2LMHeadModel, set_seed

    set_seed(seed)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=max(1024, args.context_length),
                        n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd,
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id)
    model = GPT2LMHeadModel(config)
    logger.info("new GPT-2: %.2fM parameters", sum(p.numel() for p in model.parameters()) / 1e6)
    return model


def main(argv=None) -> int:
    """Parse the config, build tokenizer/model/data, train, evaluate before/after, save. Returns the exit code."""
    from transformers import DataCollatorForLanguageModeling, Trainer

    from grpo.modeling.models import load_tokenizer

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args, training_args = _common.parse_args(CausalLMArgs, argv)
    train_raw, eval_raw = load_texts(args, training_args.seed)
    if args.from_scratch:
        old = load_tokenizer(args.model_name_or_path)
        if not getattr(old, "is_fast", False):
            raise UserError(f"model {args.model_name_or_path!r}: train_new_from_iterator needs a fast tokenizer")
        tokenizer = train_tokenizer(old, train_raw[args.text_column], args.vocab_size)
        model = scratch_model(tokenizer, args, training_args.seed)
    else:
        model, tokenizer = _common.load_model_and_tokenizer(args.model_name_or_path, "causal-lm", seed=training_args.seed,
                                                            require_fast=True)
    chunk = lambda batch: preprocess(batch, tokenizer, args)  # noqa: E731
    train_ds = train_raw.map(chunk, batched=True, remove_columns=train_raw.column_names)
    eval_ds = eval_raw.map(chunk, batched=True, remove_columns=eval_raw.column_names)
    if args.max_train_samples > 0:
        train_ds = train_ds.select(range(min(args.max_train_samples, len(train_ds))))
    if args.max_eval_samples > 0:
        eval_ds = eval_ds.select(range(min(args.max_eval_samples, len(eval_ds))))
    if len(train_ds) == 0 or len(eval_ds) == 0:
        raise UserError(f"no full {args.context_length}-token chunks in the {'train' if not len(train_ds) else 'eval'} "
                        f"texts: use longer texts or a smaller --context_length")
    logger.info("%d train / %d eval chunks of %d tokens", len(train_ds), len(eval_ds), args.context_length)

    trainer = Trainer(model=model, args=training_args, train_dataset=train_ds, eval_dataset=eval_ds,
                      data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False), processing_class=tokenizer)
    # The loss predicts every token of a chunk from the ones before it: targets are ids[1:].
    unigram = {"perplexity": unigram_perplexity(train_ds["input_ids"], [t for ids in eval_ds["input_ids"] for t in ids[1:]])}
    before, after, _ = _common.train_and_evaluate(trainer, lambda: compute_metrics(trainer.evaluate()["eval_loss"]))
    _common.finish(trainer, args, training_args, task="causal_lm", pipeline_tag="text-generation", before=before,
                   after=after, baselines={"unigram": unigram},
                   train_data={"spec": args.dataset_name, "texts": len(train_raw), "chunks": len(train_ds)},
                   eval_data={"spec": args.eval_dataset or f"{args.dataset_name} (held out)", "texts": len(eval_raw),
                              "chunks": len(eval_ds)}, argv=argv, usage=USAGE)
    return 0


if __name__ == "__main__":
    _common.cli(main)
