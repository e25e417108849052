"""``grpo train`` / ``grpo eval`` on a recipe's task (translation, summarization): its data, its checkpoint.

* :func:`load_reference_splits`: training and held-out rows from a recipe data spec (``pkg:po-en-fr``,
  ``pkg:lee-lead``, a local file or hub id in the recipe's schema) as prompt/source/reference rows
  (:func:`grpo.data.reference_rows.reference_rows`). A ``pkg:`` source's held-out rows are its
  ``validation`` split, the first ``eval_size`` of them: the rows the recipe itself evaluates on
  (``max_eval_samples``), so the SFT checkpoint's score and GRPO's are on the same strings.
* :func:`check_recipe_checkpoint`: a missing local ``model_name_or_path`` is reported with the
  command that makes the recipe's checkpoint there.
"""

from __future__ import annotations

from pathlib import Path

from grpo.common.errors import UserError
from grpo.data.loaders import load_rows, split_holdout
from grpo.data.reference_rows import reference_rows

RECIPE_CONFIGS = {"translation": "recipes/configs/translation.yaml",
                  "summarization": "recipes/configs/summarization.yaml"}


def raw_rows(spec: str, split: str):
    """Raw rows of a recipe data spec: ``pkg:<name>`` (:mod:`recipes.sources`) or what :func:`load_rows` reads."""
    from recipes import sources

    return sources.load(spec, split) if sources.is_source(spec) else load_rows(spec, split)


def load_reference_splits(script_args, seed: int):
    """``(train, heldout)`` prompt/source/reference rows for ``script_args.task``.

    Raises:
        UserError: unreadable spec, rows without source/reference, too few rows to hold out.
    """
    from recipes import sources

    task, spec = script_args.task, script_args.dataset_spec
    train = reference_rows(raw_rows(spec, script_args.dataset_train_split or "train"), task, where=spec)
    if script_args.eval_size == 0:
        heldout = None
    elif script_args.eval_dataset or sources.is_source(spec):
        eval_spec = script_args.eval_dataset or spec
        heldout = reference_rows(raw_rows(eval_spec, "validation"), task, limit=script_args.eval_size, where=eval_spec)
    else:
        train, heldout = split_holdout(train, script_args.eval_size, seed=seed)
    if script_args.train_limit is not None:
        train = train.select(range(min(script_args.train_limit, len(train))))
    return train, heldout


def check_recipe_checkpoint(script_args) -> None:
    """Raise a :class:`UserError` with the recipe command when a local checkpoint path does not exist.

    A spec that names a local path (contains ``/`` or starts with ``.`` or ``~``, and is not
    ``embedded:``) is checked; hub ids are left to the loader.
    """
    model = script_args.model_name_or_path
    if script_args.task not in RECIPE_CONFIGS or not isinstance(model, str) or model.startswith("embedded:"):
        return
    local = model.startswith((".", "~", "/")) or (model.count("/") != 1 and "/" in model) or model.startswith("runs/")
    if local and not Path(model).expanduser().exists():
        raise UserError(f"model_name_or_path {model!r} does not exist; make the {script_args.task} recipe's checkpoint "
                        f"there first: grpo recipe {script_args.task} --config {RECIPE_CONFIGS[script_args.task]} "
                        f"--output_dir {model}  (or point model_name_or_path at an existing checkpoint)")


def eval_task_rows(spec: str, split: str, limit: int | None, task: str | None):
    """``(task, rows)`` for ``grpo eval``: the task given, or inferred from the data's columns.

    ``gsm8k`` and ``synthetic:gsm8k`` specs are GSM8K; other data is read once and its columns
    decide (:func:`grpo.evaluation.text_metrics.infer_task`): ``translation`` for KDE4 rows,
    ``summarization`` for ``document`` + ``summary``, GSM8K otherwise. For GSM8K ``rows`` is None
    (the caller loads it with its prompt format).
    """
    from grpo.data.loaders import SYNTHETIC_GSM8K, VENDORED_GSM8K
    from grpo.evaluation.text_metrics import infer_task

    if task == "gsm8k" or (task is None and (spec == VENDORED_GSM8K or spec.startswith(SYNTHETIC_GSM8K))):
        return "gsm8k", None
    raw = raw_rows(spec, split)
    task = task or infer_task(raw.column_names) or "gsm8k"
    return task, (None if task == "gsm8k" else reference_rows(raw, task, limit=limit, where=spec))
