"""Prompt/reference rows for GRPO on translation and summarization (the recipes' data, the recipes' prompts).

:func:`reference_rows` turns raw rows in a recipe's schema -- KDE4 translation pairs
``{"translation": {"en": ..., "fr": ...}}`` or XSum-style ``{"document": ..., "summary": ...}`` -- into
the columns GRPO and the reference rewards read:

* ``prompt``: one user turn, ``"<instruction>\\n\\n<source>"``, the recipe's prompt
  (:func:`recipes.decoder_sft.build_prompt` with no system message), so a recipe checkpoint sees at
  GRPO time exactly the prompts it was fine-tuned on;
* ``source``: the text to translate or summarize (whole, for the copy-source / lead-1 baselines
  and the ``placeholders_kept`` / ``copy_source`` guards);
* ``reference``: the reference translation or summary (``chrf`` / ``bleu`` / ``rouge`` read it).

The recipes cut a document to ``max_source_length`` tokens before building the prompt; without a
tokenizer here, ``max_source_words`` cuts it at a word count instead (150 words is about the
summarization recipe's 192 tokens of SmolLM2's tokenizer for English news).
"""

from __future__ import annotations

from grpo.common.errors import UserError

TASK_DEFAULTS = {  # the recipes' own settings (recipes/configs/translation.yaml, summarization.yaml)
    "translation": {"instruction": "Translate this English text to French.", "max_source_words": 0},
    "summarization": {"instruction": "Summarize this article in one sentence.", "max_source_words": 150},
}


def _pair(row: dict, task: str, source_key: str, target_key: str) -> tuple:
    if task == "translation":
        pair = row.get("translation")
        if not isinstance(pair, dict):
            return None, None
        return pair.get(source_key), pair.get(target_key)
    return row.get(source_key), row.get(target_key)


def reference_rows(raw, task: str, *, instruction: str | None = None, source_key: str | None = None,
                   target_key: str | None = None, max_source_words: int | None = None, limit: int | None = None,
                   where: str = "dataset"):
    """Raw recipe rows as GRPO rows with ``prompt``, ``source`` and ``reference``.

    Args:
        raw: a ``datasets.Dataset`` (or list of dicts) in the task's recipe schema.
        task: ``translation`` or ``summarization``.
        instruction: the prompt's instruction (default: the recipe's).
        source_key, target_key: language keys inside ``translation`` (default ``en`` / ``fr``) or the
            document / summary columns (default ``document`` / ``summary``).
        max_source_words: cut the source in the prompt to this many words (0 = whole; default per task).
        limit: keep the first ``limit`` rows (None = all).
        where: the data's name for error messages.

    Returns:
        ``datasets.Dataset`` with ``prompt`` (``[{"role": "user", "content": ...}]``), ``source``, ``reference``.

    Raises:
        UserError: an unknown task; a row without a non-empty source or reference (named by index or line).
    """
    import datasets

    if task not in TASK_DEFAULTS:
        raise UserError(f"task={task!r}: reference rows exist for {', '.join(TASK_DEFAULTS)}")
    defaults = TASK_DEFAULTS[task]
    instruction = defaults["instruction"] if instruction is None else instruction
    words = defaults["max_source_words"] if max_source_words is None else max_source_words
    source_key = source_key or ("en" if task == "translation" else "document")
    target_key = target_key or ("fr" if task == "translation" else "summary")
    fields = (f"translation.{source_key}", f"translation.{target_key}") if task == "translation" \
        else (source_key, target_key)
    rows = []
    for index, row in enumerate(raw):
        if limit is not None and index >= limit:
            break
        source, reference = _pair(row, task, source_key, target_key)
        for name, value in zip(fields, (source, reference)):
            if not isinstance(value, str) or not value.strip():
                line = row.get("_line")
                place = f"{where}:{line}" if line is not None else f"{where} row {index}"
                raise UserError(f"{place}: missing or empty {name!r} ({task} rows need {' and '.join(fields)})")
        shown = " ".join(source.split()[:words]) if words else source
        content = f"{instruction}\n\n{shown}" if instruction else shown
        rows.append({"prompt": [{"role": "user", "content": content}], "source": source, "reference": reference})
    return datasets.Dataset.from_list(rows)
