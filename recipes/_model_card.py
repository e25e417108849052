"""Recipe checkpoint cards: the model card and metric table of a supervised recipe's checkpoint.

``model_card(*, task, base_model, pipeline_tag, metrics_before, metrics_after, train_data, eval_data,
args, training_args, command, usage="", baselines=None) -> str`` and
``format_metric_table(before, after, baselines=None)``. The card follows the shared layout of
:mod:`grpo.runs.model_card`; the checkpoint itself is written by :func:`grpo.common.checkpoint_io.save_checkpoint`.
Re-exported by :mod:`recipes._common`, which the recipes use.
"""

from __future__ import annotations

import dataclasses
import json
import math

from grpo.runs.model_card import front_matter, render_card

# Training settings reported in the model card (when present on the TrainingArguments object).
_CARD_TRAINING_FIELDS = ("learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size",
                         "gradient_accumulation_steps", "weight_decay", "warmup_steps", "lr_scheduler_type",
                         "seed", "bf16", "fp16")


def _fmt(value) -> str:
    return ("nan" if math.isnan(value) else f"{value:.4f}") if isinstance(value, float) else str(value)


def format_metric_table(before: dict, after: dict, baselines: dict | None = None) -> str:
    """A Markdown table ``| metric | [baseline: <name> |...] before | after |`` over the union of keys.

    ``baselines`` maps a baseline's name to its metric dict (:mod:`recipes.baselines`); their
    columns come first, so a row reads "what a trivial method gets, the model before, after".
    """
    baselines = baselines or {}
    keys = list(dict.fromkeys([*before, *after]))
    head = ["metric", *(f"baseline: {name}" for name in baselines), "before", "after"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for k in keys:
        cells = [k, *(_fmt(b.get(k, "-")) for b in baselines.values()), _fmt(before.get(k, "-")), _fmt(after.get(k, "-"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def model_card(*, task: str, base_model: str, pipeline_tag: str, metrics_before: dict, metrics_after: dict,
               train_data: dict, eval_data: dict, args, training_args, command: str, usage: str = "",
               baselines: dict | None = None) -> str:
    """A recipe checkpoint's ``README.md``: metadata header, metrics before/after, data, settings, command.

    Args:
        task: the recipe module name (a card tag and the title).
        base_model: the model spec training started from (in the front matter when it is a hub id).
        pipeline_tag: the ``transformers.pipeline`` task that uses the checkpoint.
        metrics_before, metrics_after: the recipe's metric dicts.
        train_data, eval_data: each split's description (``{"spec": ..., "rows": ...}``).
        args, training_args: the parsed dataclasses.
        command: the command line that reproduces the run.
        usage: an optional Python snippet.
        baselines: ``{name: metrics}`` of trivial methods, columns of the metric table.

    Returns:
        The card text.
    """
    settings = {k: getattr(training_args, k) for k in _CARD_TRAINING_FIELDS if hasattr(training_args, k)}
    settings = {k: getattr(v, "value", v) for k, v in settings.items()}  # enums -> their plain value
    recipe_args = json.dumps(dataclasses.asdict(args), indent=2, default=str)
    sections = [
        ("Evaluation", format_metric_table(metrics_before, metrics_after, baselines)),
        ("Data", f"- train: {json.dumps(train_data)}\n- eval: {json.dumps(eval_data)}"),
        ("Training settings", "\n".join(f"- {k}: {v}" for k, v in settings.items())
         + f"\n\nRecipe arguments:\n\n```json\n{recipe_args}\n```"),
        ("Reproduce", f"```bash\n{command}\n```"),
    ]
    if usage:
        sections.append(("Use", f"```python\n{usage.strip()}\n```"))
    front = front_matter(tags=["grpo-toolkit", task], base_model=base_model, pipeline_tag=pipeline_tag)
    return render_card(front, f"{task} checkpoint", f"Trained by the grpo-toolkit `{task}` recipe from `{base_model}`.",
                       sections)
