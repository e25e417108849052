"""Recipe checkpoints: an atomic ``save_pretrained`` with a model card and extra files.

``save_checkpoint(model, tokenizer, output_dir, *, card=None, extra_files=None) -> Path``: everything
is written into a temp dir next to ``output_dir``, then swapped in by rename; ``card`` holds the
keyword arguments of :func:`write_model_card`; ``extra_files`` maps name -> str/bytes/JSON-able.
``write_model_card(path, *, task, base_model, pipeline_tag, metrics_before, metrics_after, train_data,
eval_data, args, training_args, command, usage="", baselines=None)`` and
``format_metric_table(before, after, baselines=None)``.
Re-exported by :mod:`recipes._common`, which the recipes use.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

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


def write_model_card(path, *, task: str, base_model: str, pipeline_tag: str, metrics_before: dict,
                     metrics_after: dict, train_data: dict, eval_data: dict, args, training_args,
                     command: str, usage: str = "", baselines: dict | None = None) -> None:
    """Write a model card ``README.md``: metadata header, metrics before/after, data, settings, command.

    ``train_data`` / ``eval_data`` describe each split (``{"spec": ..., "rows": ...}``); ``args`` /
    ``training_args`` are the parsed dataclasses; ``usage`` is an optional Python snippet.
    """
    settings = {k: getattr(training_args, k) for k in _CARD_TRAINING_FIELDS if hasattr(training_args, k)}
    settings = {k: getattr(v, "value", v) for k, v in settings.items()}  # enums -> their plain value
    recipe_args = json.dumps(dataclasses.asdict(args), indent=2, default=str)
    text = f"""---
library_name: transformers
pipeline_tag: {pipeline_tag}
base_model: {json.dumps(base_model)}
tags: [grpo-toolkit, {task}]
---

# {task} checkpoint

Trained by the grpo-toolkit `{task}` recipe from `{base_model}`.

## Evaluation

{format_metric_table(metrics_before, metrics_after, baselines)}

## Data

- train: {json.dumps(train_data)}
- eval: {json.dumps(eval_data)}

## Training settings

{chr(10).join(f"- {k}: {v}" for k, v in settings.items())}

Recipe arguments:

```json
{recipe_args}
```

## Reproduce

```bash
{command}
```
"""
    if usage:
        text += f"\n## Use\n\n```python\n{usage.strip()}\n```\n"
    Path(path).write_text(text, encoding="utf-8")


def _write_extra(path: Path, content) -> None:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        text = content if isinstance(content, str) else json.dumps(content, indent=2, default=str) + "\n"
        path.write_text(text, encoding="utf-8")


def save_checkpoint(model, tokenizer, output_dir, *, card: dict | None = None, extra_files: dict | None = None) -> Path:
    """Save model + tokenizer (+ card, extra files) so ``from_pretrained(output_dir)`` reloads them.

    Everything is written into a temp dir next to ``output_dir`` first; existing entries of
    ``output_dir`` that the new save does not replace (e.g. Trainer ``checkpoint-*`` dirs) are moved
    into it, then the directories are swapped by rename, so a crash never leaves a half checkpoint.

    Returns:
        ``Path(output_dir)``.
    """
    dest = Path(output_dir)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it 0700; the checkpoint should look like any other dir
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        for name, content in (extra_files or {}).items():
            _write_extra(tmp / name, content)
        if card is not None:
            write_model_card(tmp / "README.md", **card)
        old = None
        if dest.exists():
            for entry in dest.iterdir():
                if not (tmp / entry.name).exists():
                    os.replace(entry, tmp / entry.name)
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            os.replace(dest, old)
        os.replace(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("saved checkpoint to %s", dest)
    return dest


