"""Glue shared by the supervised recipes: config parsing, model/data loading, eval table, checkpoint + card.

Task logic (preprocessing, metrics, post-processing) stays in each recipe file. Stable API:

``parse_args(args_cls, argv=None, training_args_cls=None, training_defaults=None) -> (args, training_args)``
    :func:`grpo.config.parser.parse_dataclasses` over ``(args_cls, training_args_cls or TrainingArguments)``:
    ``--config file.yaml`` then ``--key value`` overrides; unknown/abbreviated keys -> :class:`UserError` (with a did-you-mean).
    Defaults: :data:`CPU_TRAINING_DEFAULTS`, then ``training_defaults``, then YAML, then the CLI.
    ``report_to`` (default none) is prepared by :func:`grpo.runs.tracking.configure` (offline wandb).
``load_model_and_tokenizer(spec, task, *, seed=42, require_fast=False, **kwargs) -> (model, tokenizer)``
    :func:`grpo.modeling.models.load_model` after ``set_seed(seed)``; ``require_fast`` refuses slow tokenizers.
``load_splits(dataset, eval_dataset, *, columns, train_split="train", eval_split="validation",
              eval_fraction=0.1, max_train_samples=None, max_eval_samples=None, seed=42,
              keep_line=False) -> (train, eval)``
    Rows via :func:`grpo.data.loaders.load_rows`, ``columns`` checked by :func:`grpo.data.loaders.require_columns`.
    No ``eval_dataset``: a ``pkg:<name>`` source (:mod:`recipes.sources`) uses its validation split, a hub id
    its ``eval_split``, a local file a held-out ``eval_fraction``.
``load_any(spec, split)``: one split of any spec (``pkg:<name>``, local file, hub id) as a ``Dataset``.
    ``keep_line=True`` keeps local JSONL's ``_line`` column for row-level errors.
``drop_bookkeeping(ds)`` removes ``_line``; ``check_row_fields(row, fields, source, index)`` raises
    :class:`UserError` naming a missing (dotted, e.g. ``answers.text``) field.
``train_and_evaluate(trainer, evaluate_fn) -> (before, after, train_metrics)``: evaluate, train, evaluate.
``format_metric_table(before, after, baselines=None) -> str`` / ``print_metric_table(...)``.
``model_card(...) -> str``: from :mod:`recipes._model_card`; ``save_checkpoint(...)``:
:func:`grpo.common.checkpoint_io.save_checkpoint`.
``finish(trainer, args, training_args, *, task, pipeline_tag, before, after, train_data, eval_data,
         argv, usage="", baselines=None) -> Path``: print the table, save checkpoint + card + ``metrics.json``.
``cli(main)``: ``if __name__ == "__main__": _common.cli(main)`` (``UserError`` -> ``error: ...``, exit 2).
"""

from __future__ import annotations

import dataclasses
import logging
import shlex
import sys
from pathlib import Path

from grpo.common.checkpoint_io import save_checkpoint
from grpo.common.errors import UserError
from grpo.config.parser import parse_dataclasses
from recipes import sources
from recipes._model_card import format_metric_table, model_card

logger = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent

# TrainingArguments defaults that suit a 2-core CPU box and our own saving: no intermediate
# Trainer checkpoints (the recipe saves the final one atomically), frequent logging, no pinning
# (pin_memory warns without CUDA). Any of them can be set in the YAML or on the command line.
CPU_TRAINING_DEFAULTS = {
    "save_strategy": "no", "eval_strategy": "no", "logging_steps": 10, "report_to": "none",
    "dataloader_pin_memory": False, "per_device_train_batch_size": 8, "per_device_eval_batch_size": 16,
}



# ---------------------------------------------------------------------------------------------
# Config


def parse_args(args_cls, argv=None, training_args_cls=None, training_defaults=None):
    """Parse ``--config file.yaml`` and ``--key value`` flags into ``(args, training_args)``.

    :func:`grpo.config.parser.parse_dataclasses` does the parsing (the one YAML + CLI parser). ``argv``
    excludes the program name (None = ``sys.argv[1:]``); a relative ``--config`` path that does not
    exist from the CWD is looked up next to the ``recipes`` package. ``training_defaults`` (e.g.
    ``{"output_dir": "runs/ner"}``) apply on top of :data:`CPU_TRAINING_DEFAULTS`.

    Raises:
        UserError: unknown keys in the YAML or on the command line, a missing config file, or a
            ``ValueError`` from a dataclass ``__post_init__`` (its message names the field).
    """
    import transformers

    training_args_cls = training_args_cls or transformers.TrainingArguments
    words = sys.argv[1:] if argv is None else argv
    if {"-h", "--help", "--help-all"} & set(words):  # grouped, one line per option (not HfArgumentParser's ~650 lines)
        from grpo.config.help import format_recipe_help

        name = args_cls.__module__.rsplit(".", 1)[-1]
        print(format_recipe_help(name, args_cls, training_args_cls, full="--help-all" in words))
        raise SystemExit(0)
    known = {f.name for f in dataclasses.fields(training_args_cls)}
    defaults = {k: v for k, v in {**CPU_TRAINING_DEFAULTS, **(training_defaults or {})}.items() if k in known}
    args, training_args = parse_dataclasses(argv, (args_cls, training_args_cls), defaults=defaults,
                                            search_dir=PACKAGE_DIR.parent)
    from grpo.runs.tracking import configure, trainer_args

    # report_to spelled out (offline wandb unless asked, logs under output_dir: grpo.runs.tracking), on a copy
    return args, trainer_args(training_args, configure(training_args))


# ---------------------------------------------------------------------------------------------
# Model and data


def load_model_and_tokenizer(spec: str, task: str, *, seed: int = 42, require_fast: bool = False, **kwargs):
    """Model + tokenizer for a model spec via :func:`grpo.modeling.models.load_model` (``**kwargs`` go to
    ``from_pretrained``: ``id2label``...). ``seed`` seeds the fresh head; ``require_fast`` refuses
    slow tokenizers (word ids / offset mappings need a fast one).

    Raises:
        UserError: whatever ``load_model`` raises, or a slow tokenizer with ``require_fast``.
    """
    import transformers

    from grpo.modeling.models import load_model

    transformers.set_seed(seed)
    model, tokenizer = load_model(spec, task=task, **kwargs)
    if require_fast and not getattr(tokenizer, "is_fast", False):
        raise UserError(f"model {spec!r}: the {task} recipe needs a fast tokenizer (word ids / offset "
                        f"mappings); {type(tokenizer).__name__} is a slow one")
    return model, tokenizer


def _is_local(spec: str) -> bool:
    return Path(spec).expanduser().exists() or Path(spec).suffix.lower() in {".jsonl", ".json", ".csv", ".parquet"}


def load_any(spec: str, split: str):
    """Raw rows of a spec: ``pkg:<name>`` (:mod:`recipes.sources`) or whatever :func:`grpo.data.loaders.load_rows` reads."""
    from grpo.data.loaders import load_rows

    return sources.load(spec, split) if sources.is_source(spec) else load_rows(spec, split)


def drop_bookkeeping(ds):
    """Remove the ``_line`` column :func:`grpo.data.loaders.load_rows` adds to local JSONL rows."""
    return ds.remove_columns("_line") if ds is not None and "_line" in ds.column_names else ds


def load_splits(dataset: str, eval_dataset: str | None, *, columns, train_split: str = "train",
                eval_split: str = "validation", eval_fraction: float = 0.1, max_train_samples: int | None = None,
                max_eval_samples: int | None = None, seed: int = 42, keep_line: bool = False):
    """Train and eval splits of raw rows, schema-checked (see the module docstring for the rules).

    ``dataset`` / ``eval_dataset`` are specs (``pkg:<name>``, hub id, ``hub_id:config``, local file);
    ``columns`` are the top-level fields every row needs;
    ``max_*_samples`` keep the first N rows (None or <= 0 = all); ``seed`` shuffles the hold-out.

    Returns:
        ``(train, eval)`` ``datasets.Dataset`` objects (without ``_line`` unless ``keep_line``).

    Raises:
        UserError: unreadable spec, missing columns (named), too few rows to hold out.
    """
    from grpo.data.loaders import require_columns

    train = load_any(dataset, train_split)
    require_columns(train, columns, dataset)
    if eval_dataset:
        evaluation = load_any(eval_dataset, eval_split)
        require_columns(evaluation, columns, eval_dataset)
    elif sources.is_source(dataset):
        evaluation = sources.load(dataset, "validation")
    elif _is_local(dataset):
        if not 0 < eval_fraction < 1:
            raise UserError(f"eval_fraction={eval_fraction}: must be in (0, 1) to hold out eval rows from {dataset}")
        if len(train) < 2:
            raise UserError(f"{dataset}: {len(train)} row(s), too few to hold out eval rows; pass --eval_dataset")
        parts = train.train_test_split(test_size=eval_fraction, seed=seed)
        train, evaluation = parts["train"], parts["test"]
    else:
        evaluation = load_any(dataset, eval_split)
    if max_train_samples and max_train_samples > 0:
        train = train.select(range(min(max_train_samples, len(train))))
    if max_eval_samples and max_eval_samples > 0:
        evaluation = evaluation.select(range(min(max_eval_samples, len(evaluation))))
    if keep_line:
        return train, evaluation
    return drop_bookkeeping(train), drop_bookkeeping(evaluation)


def check_row_fields(row: dict, fields, source: str, index: int) -> None:
    """Raise :class:`UserError` if a (possibly dotted, e.g. ``answers.text``) field is missing in ``row``."""
    for field in fields:
        value = row
        for part in field.split("."):
            if not isinstance(value, dict) or part not in value or value[part] is None:
                where = f"{source}:{row['_line']}" if row.get("_line") is not None else f"{source} row {index}"
                raise UserError(f"{where}: missing field {field!r}")
            value = value[part]


# ---------------------------------------------------------------------------------------------
# Evaluation and reporting


def train_and_evaluate(trainer, evaluate_fn):
    """``evaluate_fn()`` (the recipe's metric dict), ``trainer.train()``, ``evaluate_fn()`` again.

    Returns ``(before, after, train_metrics)``, the last being ``TrainOutput.metrics``. The Trainer's own
    progress output (unlabelled evaluation bars, raw metric dicts) is replaced by the ``grpo`` console's
    (:func:`grpo.common.console.quiet_progress`: one labelled bar, a compact row per log).
    """
    from grpo.common.console import quiet_progress

    quiet_progress(trainer, "train")
    before = evaluate_fn()
    logger.info("before training: %s", before)
    _allow_distributed_wrap(trainer)
    output = trainer.train()
    after = evaluate_fn()
    logger.info("after training: %s", after)
    return before, after, dict(output.metrics)


def _allow_distributed_wrap(trainer) -> None:
    """transformers 5.23: ``evaluate()`` before ``train()`` flags the model accelerate-prepared without a DDP wrap,
    so ``train()`` would not wrap it and several processes would drift apart (tests/test_accelerate_launch.py)."""
    model = trainer.model
    if trainer.args.world_size > 1 and trainer.model_wrapped is model and getattr(model, "_is_accelerate_prepared", False):
        del model._is_accelerate_prepared
        trainer.accelerator._models[:] = [m for m in trainer.accelerator._models if m is not model]


def print_metric_table(before: dict, after: dict, baselines: dict | None = None) -> None:
    """Print the (baselines,) before/after table to stdout (recipes are CLI entry points)."""
    print(format_metric_table(before, after, baselines), flush=True)


def finish(trainer, args, training_args, *, task: str, pipeline_tag: str, before: dict, after: dict,
           train_data: dict, eval_data: dict, argv, usage: str = "", baselines: dict | None = None) -> Path:
    """Print the metric table; save ``trainer.model`` + ``trainer.processing_class`` to ``output_dir``.

    ``baselines`` (``{name: metrics}``, :mod:`recipes.baselines`) are scores of trivial methods on
    the same eval rows, shown beside before/after in the table, the card and ``metrics.json``.
    The checkpoint also holds ``metrics.json`` (before/after), ``recipe_args.json`` and the model
    card. ``task`` is the recipe module name (for the reproduce command built from ``argv``),
    ``pipeline_tag`` the ``transformers.pipeline`` task that uses the checkpoint. Only the main
    process saves when several run. Returns the checkpoint directory.
    """
    print_metric_table(before, after, baselines)
    argv = sys.argv[1:] if argv is None else argv
    command = " ".join(["python", "-m", f"recipes.{task}", *map(shlex.quote, argv)])
    card = dict(task=task, base_model=args.model_name_or_path, pipeline_tag=pipeline_tag, metrics_before=before,
                metrics_after=after, train_data=train_data, eval_data=eval_data, args=args,
                training_args=training_args, command=command, usage=usage, baselines=baselines)
    extra = {
        "README.md": model_card(**card),
        "metrics.json": {"before": before, "after": after, **({"baselines": baselines} if baselines else {})},
        "recipe_args.json": {"task": task, "args": dataclasses.asdict(args), "command": command},
    }
    if not trainer.is_world_process_zero():
        return Path(training_args.output_dir)
    dest = save_checkpoint(trainer.model, trainer.processing_class, training_args.output_dir, extra_files=extra)
    print(f"checkpoint: {dest}", flush=True)
    return dest


def cli(main) -> None:
    """Run a recipe's ``main()`` as a program: INFO logging, ``UserError`` -> ``error: msg``, exit 2."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        code = main()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        code = 2
    sys.exit(code)
