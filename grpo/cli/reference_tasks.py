"""``grpo train`` / ``grpo eval`` on a recipe's task (translation, summarization): its data, its checkpoint.

* :func:`load_reference_splits`: training and held-out rows from a recipe data spec (``pkg:po-en-fr``,
  ``pkg:lee-lead``, a local file or hub id in the recipe's schema) as prompt/source/reference rows
  (:func:`grpo.data.reference_rows.reference_rows`). A ``pkg:`` source's held-out rows are its
  ``validation`` split, the first ``eval_size`` of them: the rows the recipe itself evaluates on
  (``max_eval_samples``), so the SFT checkpoint's score and GRPO's are on the same strings.
* :func:`ensure_recipe_checkpoint`: a missing local ``model_name_or_path`` is made first by running the
  task's recipe with its default config into that path (logged, with the command); under a multi-process
  launch, or when the recipe fails, one line names the command to run instead.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from grpo.common.errors import UserError
from grpo.data.loaders import load_rows, split_holdout
from grpo.data.reference_rows import reference_rows

logger = logging.getLogger(__name__)

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


def missing_recipe_checkpoint(script_args) -> str | None:
    """The local ``model_name_or_path`` of a recipe task when it does not exist yet, else None.

    A spec that names a local path (starts with ``.``, ``~``, ``/`` or ``runs/``, or has more than one
    ``/``) is checked; ``embedded:`` specs and hub ids (``owner/name``) are left to the loader.
    """
    model = script_args.model_name_or_path
    if script_args.task not in RECIPE_CONFIGS or not isinstance(model, str) or model.startswith("embedded:"):
        return None
    local = model.startswith((".", "~", "/")) or (model.count("/") != 1 and "/" in model) or model.startswith("runs/")
    return model if local and not Path(model).expanduser().exists() else None


def recipe_command(task: str, output_dir: str) -> list[str]:
    """``grpo recipe`` arguments that make ``task``'s checkpoint in ``output_dir`` with the recipe's default config.

    The config is the repository's ``recipes/configs/<task>.yaml`` (found next to the ``recipes`` package,
    so the command works from any directory).
    """
    import recipes

    config = Path(recipes.__file__).parent / "configs" / Path(RECIPE_CONFIGS[task]).name
    return ["--config", str(config if config.exists() else RECIPE_CONFIGS[task]), "--output_dir", output_dir]


def ensure_recipe_checkpoint(script_args) -> bool:
    """Make a recipe task's missing checkpoint by running the recipe first; True when it ran.

    ``grpo train --config grpo/configs/translate_en_fr.yaml`` starts from ``runs/translation``: when that
    path does not exist, ``grpo recipe translation --config recipes/configs/translation.yaml --output_dir
    runs/translation`` runs first (one log line says so; it takes minutes on CPU), then GRPO starts from its
    checkpoint. Nothing runs for an existing path, a hub id, an ``embedded:`` model or a GSM8K run.

    Raises:
        UserError: under a multi-process launch (``WORLD_SIZE`` > 1: each process would run the recipe), or
            when the recipe fails; the line names the command that makes the checkpoint.
    """
    model = missing_recipe_checkpoint(script_args)
    if model is None:
        return False
    import recipes

    task = script_args.task
    argv = recipe_command(task, model)
    command = f"grpo recipe {task} --config {RECIPE_CONFIGS[task]} --output_dir {model}"
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError(f"model_name_or_path {model!r} does not exist; make the {task} recipe's checkpoint there "
                        f"first, in one process: {command}  (or point model_name_or_path at an existing checkpoint)")
    logger.warning("model_name_or_path %s does not exist: making it first with the %s recipe: %s", model, task, command)
    code = recipes.get(task).main(argv)
    if code or not Path(model).expanduser().is_dir():
        raise UserError(f"the {task} recipe did not make {model!r} (exit code {code}); run it alone to see why: "
                        f"{command}  (or point model_name_or_path at an existing checkpoint)")
    logger.info("recipe checkpoint ready: %s; GRPO starts from it", model)
    return True


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
