"""Dataset specs -> ``datasets.Dataset``: hub ids, local files, ``synthetic:gsm8k``; GSM8K prompt formatting.

A dataset spec is a string:

* ``synthetic:gsm8k`` -- the project's deterministic generator (:mod:`grpo.synthetic`), offline.
* a local ``.jsonl`` / ``.json`` / ``.csv`` / ``.parquet`` file. JSONL is parsed here, line by
  line, so a broken line is reported as ``file:line``.
* a hub id such as ``openai/gsm8k`` (GSM8K uses config ``main``); offline -> a clear error.

For GRPO each GSM8K row becomes a conversational ``prompt`` (system prompt + question) and an
``answer`` column (the number after ``####``, commas removed), as in the course's exercise.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from grpo.errors import UserError

logger = logging.getLogger(__name__)

# The system prompt of the Hugging Face course's "GRPO with Unsloth" exercise.
SYSTEM_PROMPT = """
Respond in the following format:
<reasoning>
...
</reasoning>
<answer>
...
</answer>
"""

# verl's GSM8K preprocessing (examples/data_preprocess/gsm8k.py): appended to the question, which is
# the only message (the chat template adds the model's default system prompt, if it has one).
HASH_INSTRUCTION = 'Let\'s think step by step and output the final answer after "####".'

SYNTHETIC_GSM8K = "synthetic:gsm8k"
# Seeds per split, so train and test problems differ but each is reproducible.
_SYNTHETIC_SEEDS = {"train": 1234, "test": 5678, "validation": 91011}
_SYNTHETIC_SIZE = {"train": 2000, "test": 500, "validation": 500}
_HUB_CONFIGS = {"openai/gsm8k": "main", "gsm8k": "main"}
_LOCAL_SUFFIXES = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
_CALCULATOR_MARK = re.compile(r"<<[^<>]*>>")


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSONL file, each with a ``_line`` key (1-based); errors name ``file:line``.

    Raises:
        UserError: a line that is not UTF-8, not JSON, or not an object; a file without rows.
    """
    rows = []
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:  # utf-8-sig on the first line: Windows editors start files with a byte-order mark
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as err:
                raise UserError(f"{path}:{lineno}: not valid UTF-8 (byte {err.start + 1}); re-save the file as UTF-8") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise UserError(f"{path}:{lineno}: not valid JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(row, dict):
                raise UserError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            row["_line"] = lineno
            rows.append(row)
    if not rows:
        raise UserError(f"{path}: no rows")
    return rows


def load_rows(spec: str, split: str = "train"):
    """Load any dataset spec as a ``datasets.Dataset`` of raw rows.

    Args:
        spec: ``synthetic:gsm8k``, a local file path, or a hub id.
        split: hub split / synthetic split name; ignored for local files (one file = one split).

    Returns:
        ``datasets.Dataset``. Local JSONL rows carry a ``_line`` column (1-based line number) so
        later validation can name the line.

    Raises:
        UserError: missing file, unsupported suffix, broken JSON line, hub unreachable.
    """
    import datasets

    if spec == SYNTHETIC_GSM8K or spec.startswith(SYNTHETIC_GSM8K + ":"):
        from grpo.synthetic import generate

        size_text = spec[len(SYNTHETIC_GSM8K) + 1:]
        if size_text and not (size_text.isdigit() and int(size_text) > 0):
            raise UserError(f"dataset {spec!r}: the size after '{SYNTHETIC_GSM8K}:' must be a positive integer")
        size = int(size_text) if size_text else _SYNTHETIC_SIZE.get(split, 500)
        rows = generate(size, seed=_SYNTHETIC_SEEDS.get(split, 0))
        return datasets.Dataset.from_list(rows)
    if spec.startswith("synthetic:"):
        raise UserError(f"unknown synthetic dataset {spec!r}; known: {SYNTHETIC_GSM8K}[:N]")
    path = Path(spec).expanduser()
    if path.suffix.lower() in _LOCAL_SUFFIXES or path.exists() or spec.startswith((".", "/", "~")):
        if not path.exists():
            raise UserError(f"dataset file {spec!r} does not exist")
        if path.suffix.lower() not in _LOCAL_SUFFIXES:
            raise UserError(f"dataset file {spec!r}: unsupported type; use .jsonl, .json, .csv or .parquet")
        if path.suffix.lower() == ".jsonl":
            return datasets.Dataset.from_list(read_jsonl(path))
        try:
            return datasets.load_dataset(_LOCAL_SUFFIXES[path.suffix.lower()], data_files=str(path), split="train")
        except Exception as err:  # datasets wraps parser errors in many types
            raise UserError(f"{path}: could not be read as {path.suffix}: {str(err).splitlines()[0]}") from None
    return _load_hub(spec, split)


def _load_hub(spec: str, split: str):
    import datasets

    from grpo.hub import require_hub

    require_hub("dataset", spec, f"a local .jsonl file or {SYNTHETIC_GSM8K}")
    repo, _, config = spec.partition(":")
    try:
        return datasets.load_dataset(repo, config or _HUB_CONFIGS.get(repo), split=split)
    except Exception as err:  # connection, missing repo, missing split: all user-facing
        raise UserError(f"could not load dataset {spec!r} split {split!r} from the hub "
                        f"({type(err).__name__}: {str(err).splitlines()[0][:160]}); offline? "
                        f"use a local .jsonl file or {SYNTHETIC_GSM8K}") from None


def require_columns(dataset, columns, source: str) -> None:
    """Raise a :class:`UserError` naming ``source`` and the missing fields if any column is absent."""
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise UserError(f"{source}: missing field(s) {', '.join(missing)} (has: {', '.join(dataset.column_names)})")


def extract_hash_answer(solution: str) -> str | None:
    """The final answer of a GSM8K solution: the text after ``####``, commas removed; None if absent.

    >>> extract_hash_answer("3 * 4 = <<3*4=12>>12\\n#### 1,200")
    '1200'
    """
    if "####" not in solution:
        return None
    return solution.split("####")[-1].strip().replace(",", "")


def to_reasoning_format(solution: str) -> str:
    """Rewrite a GSM8K solution into the exercise's target format (the warm-start SFT completion).

    Calculator marks ``<<48/2=24>>`` are removed and the number after ``####`` becomes the answer.

    >>> print(to_reasoning_format("Half is 48/2 = <<48/2=24>>24.\\n#### 24"), end="")
    <reasoning>
    Half is 48/2 = 24.
    </reasoning>
    <answer>
    24
    </answer>
    """
    body, _, _ = solution.partition("####")
    reasoning = _CALCULATOR_MARK.sub("", body).strip()
    return f"<reasoning>\n{reasoning}\n</reasoning>\n<answer>\n{extract_hash_answer(solution)}\n</answer>\n"


def make_prompt(question: str, system_prompt: str = SYSTEM_PROMPT, prompt_format: str = "tags") -> list[dict]:
    """The conversational prompt TRL expects: system message + the question as the user turn
    (``prompt_format="tags"``), or verl's single user turn ending in :data:`HASH_INSTRUCTION` (``"hash"``)."""
    if prompt_format == "hash":
        return [{"role": "user", "content": f"{question} {HASH_INSTRUCTION}"}]
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": question}]


def load_gsm8k(spec: str, split: str = "train", limit: int | None = None, system_prompt: str = SYSTEM_PROMPT,
               prompt_format: str = "tags"):
    """GSM8K (or anything in its format) as GRPO-ready rows.

    Args:
        spec: dataset spec (see module docstring); rows need ``question`` and ``answer``.
        split: which split for hub / synthetic specs.
        limit: keep the first ``limit`` rows (None = all).
        system_prompt: the system message of every prompt.
        prompt_format: ``"tags"`` or ``"hash"`` (see :func:`make_prompt`).

    Returns:
        ``datasets.Dataset`` with columns ``prompt`` (list of ``{"role", "content"}``), ``answer``
        (the final number as a string), ``question`` and ``solution`` (the original answer text).

    Raises:
        UserError: anything :func:`load_rows` raises; a row without ``question``/``answer`` or
            without ``####`` in its answer, named by file and line (or row index).
    """
    raw = load_rows(spec, split)
    if limit is not None:
        raw = raw.select(range(min(limit, len(raw))))
    rows = []
    for index, row in enumerate(raw):
        where = f"{spec}:{row['_line']}" if row.get("_line") is not None else f"{spec} row {index}"
        for field in ("question", "answer"):
            if not isinstance(row.get(field), str) or not row[field].strip():
                raise UserError(f"{where}: missing or empty field {field!r} (GSM8K rows need 'question' and 'answer')")
        answer = extract_hash_answer(row["answer"])
        if not answer:
            raise UserError(f"{where}: field 'answer' has no '#### <number>' final line")
        rows.append({"prompt": make_prompt(row["question"], system_prompt, prompt_format), "answer": answer,
                     "question": row["question"], "solution": row["answer"]})
    import datasets

    return datasets.Dataset.from_list(rows)


def split_holdout(dataset, eval_size: int, seed: int = 0):
    """Shuffle with ``seed`` and split off the last ``eval_size`` rows: ``(train, heldout)``.

    Raises:
        UserError: when fewer than ``eval_size + 1`` rows are available.
    """
    if eval_size <= 0:
        return dataset, None
    if len(dataset) <= eval_size:
        raise UserError(f"dataset has {len(dataset)} rows, not enough to hold out eval_size={eval_size}")
    shuffled = dataset.shuffle(seed=seed)
    cut = len(shuffled) - eval_size
    return shuffled.select(range(cut)), shuffled.select(range(cut, len(shuffled)))
