"""Sequence-to-sequence fine-tuning (course chapter 7), one task for translation and summarization.

A source text in, a target text out: :mod:`recipes.translation` and :mod:`recipes.summarization` are this task
with their own rows, metric and baselines (a :class:`Seq2SeqTask` each) and a config each
(``recipes/configs/translation.yaml``, ``summarization.yaml``). Two model families, picked from the checkpoint's
``config.is_encoder_decoder``:

* **encoder-decoder** (Marian, t5, mt5, bart): sources and targets are tokenized with ``text_target`` and their
  own length caps; ``DataCollatorForSeq2Seq`` pads labels with -100 (ignored by the loss); ``Seq2SeqTrainer``
  evaluates with ``predict_with_generate`` and the task's metric on the decoded generations.
* **decoder-only** (the offline default, embedded SmolLM2-135M-Instruct): prompt/response SFT with the loss on
  the response only (:mod:`recipes.decoder_sft`); evaluation generates greedily with
  :func:`recipes.decoder_sft.generate_responses`.

An eos token is appended to targets when the tokenizer does not add one (Marian/T5 tokenizers do), so a model
built around a decoder tokenizer still learns to stop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from recipes import _common, decoder_sft
from recipes._args import RecipeArgs

logger = logging.getLogger(__name__)


@dataclass
class Seq2SeqArgs(RecipeArgs):
    max_source_length: int = field(default=128, metadata={"help": "Source tokens kept (truncation)."})
    max_target_length: int = field(default=128, metadata={"help": "Target tokens kept (truncation)."})
    source_prefix: str = field(default="", metadata={"help": "Encoder-decoder only: text put before each source, "
                                                               "e.g. 'summarize: ' for t5."})
    instruction: str = field(default="", metadata={
        "help": "Decoder-only only: instruction before the source in the prompt."})
    system_prompt: str = field(default="", metadata={"help": "Decoder-only only: system message ('' = template default)."})
    encoder_decoder: bool = field(default=False, init=False,
                                  metadata={"help": "Filled in at runtime from the model's config."})
    # the two fields that name where a row's source and target are (a subclass sets them; they must differ)
    SOURCE_AND_TARGET = ()

    def __post_init__(self):
        super().__post_init__()
        for name in ("max_source_length", "max_target_length"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}={getattr(self, name)}: must be a positive number of tokens")
        if self.SOURCE_AND_TARGET:
            source, target = self.SOURCE_AND_TARGET
            if getattr(self, source) == getattr(self, target):
                raise ValueError(f"{source} == {target} == {getattr(self, source)!r}: the source and the target "
                                 f"must be two different {source.rpartition('_')[2]}s")


@dataclass(frozen=True)
class Seq2SeqTask:
    """What differs between two sequence-to-sequence recipes.

    Attributes:
        name: the recipe (``grpo recipe NAME``, the checkpoint card). pipeline_tag: the encoder-decoder
            checkpoint's ``transformers.pipeline`` task. args_cls: its :class:`Seq2SeqArgs` subclass.
        columns: ``args -> top-level columns`` every row needs; fields: ``args -> (dotted) fields`` checked per row.
        pairs: ``(rows as columns, args) -> (sources, targets)``.
        compute_metrics: ``(predictions, references) -> {metric: value}``; metric_keys: its keys.
        baselines: ``(train_raw, eval_raw, args) -> {name: metrics}`` (:mod:`recipes.baselines`).
        unit: what a row is called in the log line. usage: the card's usage snippet.
    """

    name: str
    pipeline_tag: str
    args_cls: type
    columns: Callable
    fields: Callable
    pairs: Callable
    compute_metrics: Callable
    metric_keys: tuple
    baselines: Callable
    unit: str = "rows"
    usage: str = ""


def usage(instruction: str, source: str, pipeline: str) -> str:
    """The model card's usage snippet of a recipe checkpoint: ``source`` is a Python expression for one input."""
    return f"""
# decoder-only checkpoint (default):
from transformers import AutoModelForCausalLM, AutoTokenizer
from recipes.decoder_sft import build_prompt, generate_responses
model = AutoModelForCausalLM.from_pretrained(CHECKPOINT)
tokenizer = AutoTokenizer.from_pretrained(CHECKPOINT)
prompt = build_prompt(tokenizer, "{instruction}", {source})
print(generate_responses(model, tokenizer, [prompt]))
# encoder-decoder checkpoint (transformers 5 dropped the {pipeline} pipeline): load it with
# AutoModelForSeq2SeqLM and call generate_responses(model, tokenizer, [SOURCE_PREFIX + {source}])
"""


# ---------------------------------------------------------------------------------------------
# Data


def tokenize(sources: list[str], targets: list[str], tokenizer, args: Seq2SeqArgs) -> dict:
    """Training features of source/target pairs.

    Returns:
        encoder-decoder: ``input_ids``/``attention_mask`` of the (prefixed) sources, cut to ``max_source_length``,
        and ``labels`` = the targets tokenized with ``text_target``, cut to ``max_target_length`` and
        eos-terminated (not padded).
        decoder-only: :func:`recipes.decoder_sft.tokenize_pairs` rows (labels -100 on the prompt).
    """
    if args.encoder_decoder:
        inputs = tokenizer([args.source_prefix + s for s in sources], max_length=args.max_source_length, truncation=True)
        labels = tokenizer(text_target=targets, max_length=args.max_target_length, truncation=True)["input_ids"]
        inputs["labels"] = [decoder_sft.append_eos(ids, tokenizer.eos_token_id, args.max_target_length) for ids in labels]
        return dict(inputs)
    return decoder_sft.tokenize_pairs(tokenizer, decoder_prompts(sources, tokenizer, args), targets,
                                      args.max_target_length)


def decoder_prompts(sources: list[str], tokenizer, args: Seq2SeqArgs) -> list[str]:
    """Prompts for a decoder-only model: the instruction plus the source cut to max_source_length."""
    return [decoder_sft.build_prompt(tokenizer, args.instruction,
                                     decoder_sft.truncate_text(tokenizer, s, args.max_source_length),
                                     args.system_prompt) for s in sources]


def check_rows(ds, fields: list[str], source: str, limit: int = 1000) -> None:
    """UserError naming the (dotted) field when one of the first ``limit`` rows lacks it."""
    for index, row in enumerate(ds.select(range(min(limit, len(ds))))):
        _common.check_row_fields(row, fields, source, index)


# ---------------------------------------------------------------------------------------------
# Training and evaluation


def build_trainer(task: Seq2SeqTask, model, tokenizer, args: Seq2SeqArgs, training_args, train_ds, eval_ds, eval_raw):
    """``(trainer, evaluate_fn)`` for the model family; ``evaluate_fn() -> {metric..., "eval_loss"}``."""
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Trainer

    if args.encoder_decoder:
        training_args.predict_with_generate = True
        trainer = Seq2SeqTrainer(
            model=model, args=training_args, train_dataset=train_ds, eval_dataset=eval_ds,
            data_collator=DataCollatorForSeq2Seq(tokenizer, model=model), processing_class=tokenizer,
            compute_metrics=lambda p: task.compute_metrics(*decoder_sft.decode_predictions(p, tokenizer)))

        def evaluate_fn():
            metrics = trainer.evaluate()
            return {**{k: metrics[f"eval_{k}"] for k in task.metric_keys}, "eval_loss": metrics["eval_loss"]}
        return trainer, evaluate_fn

    # Decoder-only: Seq2SeqTrainer would generate from prompt+response, so train with Trainer and
    # generate from the prompts ourselves.
    training_args.predict_with_generate = False
    trainer = Trainer(model=model, args=training_args, train_dataset=train_ds, eval_dataset=eval_ds,
                      data_collator=decoder_sft.collator(tokenizer), processing_class=tokenizer)
    sources, references = task.pairs(eval_raw[:], args)
    prompts = decoder_prompts(sources, tokenizer, args)

    def evaluate_fn():
        loss = trainer.evaluate()["eval_loss"]
        predictions = decoder_sft.generate_responses(trainer.model, tokenizer, prompts,
                                                     max_new_tokens=training_args.generation_max_length,
                                                     batch_size=training_args.per_device_eval_batch_size)
        for prediction, reference in list(zip(predictions, references))[:3]:
            logger.info("prediction %r | reference %r", prediction, reference)
        return {**task.compute_metrics(predictions, references), "eval_loss": loss}
    return trainer, evaluate_fn


def main(task: Seq2SeqTask, argv=None) -> int:
    """Parse the config, train, evaluate before/after, save the checkpoint. Returns the exit code."""
    from transformers import Seq2SeqTrainingArguments

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args, training_args = _common.parse_args(task.args_cls, argv, Seq2SeqTrainingArguments)
    if training_args.generation_max_length is None:  # not configured: up to the longest target trained on
        training_args.generation_max_length = args.max_target_length
    train_raw, eval_raw = _common.load_splits(
        args.dataset_name, args.eval_dataset, columns=task.columns(args), eval_fraction=args.eval_fraction,
        max_train_samples=args.max_train_samples, max_eval_samples=args.max_eval_samples, seed=training_args.seed)
    check_rows(train_raw, task.fields(args), args.dataset_name)
    check_rows(eval_raw, task.fields(args), args.eval_dataset or args.dataset_name)
    args.encoder_decoder = decoder_sft.is_encoder_decoder(args.model_name_or_path)
    kind = "seq2seq-lm" if args.encoder_decoder else "causal-lm"
    model, tokenizer = _common.load_model_and_tokenizer(args.model_name_or_path, kind, seed=training_args.seed)

    def features(batch):
        return tokenize(*task.pairs(batch, args), tokenizer, args)

    train_ds = train_raw.map(features, batched=True, remove_columns=train_raw.column_names)
    eval_ds = eval_raw.map(features, batched=True, remove_columns=eval_raw.column_names)
    logger.info("%s model, %d train / %d eval %s", kind, len(train_ds), len(eval_ds), task.unit)

    trainer, evaluate_fn = build_trainer(task, model, tokenizer, args, training_args, train_ds, eval_ds, eval_raw)
    baselines = task.baselines(train_raw, eval_raw, args)
    before, after, _ = _common.train_and_evaluate(trainer, evaluate_fn)
    _common.finish(trainer, args, training_args, task=task.name,
                   pipeline_tag=task.pipeline_tag if args.encoder_decoder else "text-generation",
                   before=before, after=after, baselines=baselines,
                   train_data={"spec": args.dataset_name, "rows": len(train_raw)},
                   eval_data={"spec": args.eval_dataset or f"{args.dataset_name} (held out)", "rows": len(eval_raw)},
                   argv=argv, usage=task.usage)
    return 0
