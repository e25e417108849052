"""Dataset specs -> ``datasets.Dataset``: ``gsm8k``, hub ids, local files, ``synthetic:gsm8k``; GSM8K prompts.

A dataset spec is a string:

* ``gsm8k`` -- real GSM8K (MIT) shipped with the package in ``grpo/resources/gsm8k/``, offline:
  the published ``train`` (7,473 rows) and ``test`` (1,319 rows) splits, the same rows as the hub's
  ``openai/gsm8k`` config ``main``. The split comes from the ``split`` argument
  (``ScriptArgs.dataset_train_split`` for training, ``"test"`` for evaluation), never from the spec.
* ``synthetic:gsm8k`` -- the project's deterministic generator (:mod:`grpo.data.synthetic`), offline.
* a local ``.jsonl`` / ``.json`` / ``.csv`` / ``.parquet`` file. JSONL is parsed here, line by
  line, so a broken line is reported as ``file:line``.
* a hub id such as ``openai/gsm8k`` (GSM8K uses config ``main``); offline -> a clear error.

For GRPO each GSM8K row becomes a conversational ``prompt`` (system prompt + question) and an
``answer`` column (the number after ``####``, commas removed), as in the course's exercise.
"""

from __future__ import annotations

import gzip
import importlib.resources
import json
import logging
import re
from pathlib import Path

from grpo.common.errors import UserError

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

VENDORED_GSM8K = "gsm8k"
VENDORED_GSM8K_SPLITS = ("train", "test")
SYNTHETIC_GSM8K = "synthetic:gsm8k"
# Seeds per split, so train and test problems differ but each is reproducible.
_SYNTHETIC_SEEDS = {"train": 1234, "test": 5678, "validation": 91011}
_SYNTHETIC_SIZE = {"train": 2000, "test": 500, "validation": 500}
_HUB_CONFIGS = {"openai/gsm8k": "main"}
_OFFLINE_ALTERNATIVES = f"{VENDORED_GSM8K} (GSM8K shipped with the package), a local .jsonl file or {SYNTHETIC_GSM8K}"
_LOCAL_SUFFIXES = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
_CALCULATOR_MARK = re.compile(r"<<[^<>]*>>")


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSONL file, each with a ``_line`` key (1-based); errors name ``file:line``.

    Args:
        path: the file; a name ending in ``.gz`` is read through gzip.

    Returns:
        One dict per non-blank line.

    Raises:
        UserError: a line that is not UTF-8, not JSON, or not an object; a file without rows.
    """
    rows = []
    with path.open("rb") as stream, (gzip.open(stream) if path.name.endswith(".gz") else stream) as f:
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


def vendored_gsm8k_file(split: str):
    """The packaged GSM8K file of ``split`` (``grpo/resources/gsm8k/<split>.jsonl.gz``).

    Args:
        split: ``"train"`` or ``"test"``.

    Returns:
        The file as an :mod:`importlib.resources` traversable (a ``Path`` in a normal install).

    Raises:
        UserError: any other split, naming it and the two valid ones.
    """
    if split not in VENDORED_GSM8K_SPLITS:
        raise UserError(f"dataset {VENDORED_GSM8K!r} has no split {split!r}; its splits are 'train' (7,473 rows) "
                        f"and 'test' (1,319 rows)")
    return importlib.resources.files("grpo").joinpath("resources", "gsm8k", f"{split}.jsonl.gz")


def load_rows(spec: str, split: str = "train"):
    """Load any dataset spec as a ``datasets.Dataset`` of raw rows.

    Args:
        spec: ``gsm8k``, ``synthetic:gsm8k[:N]``, a local file path, or a hub id.
        split: split of the vendored GSM8K (``train`` / ``test``), hub split or synthetic split name;
            ignored for local files (one file = one split).

    Returns:
        ``datasets.Dataset``. Rows of local JSONL files and of the vendored GSM8K carry a ``_line``
        column (1-based line number) so later validation can name the line.

    Raises:
        UserError: missing file, unsupported suffix, broken JSON line, hub unreachable, a split the
            vendored GSM8K does not have, a ``gsm8k:...`` spec (the split is not part of the spec).
    """
    import datasets

    if spec == VENDORED_GSM8K:
        return datasets.Dataset.from_list(read_jsonl(vendored_gsm8k_file(split)))
    if spec.startswith(VENDORED_GSM8K + ":"):
        raise UserError(f"dataset {spec!r}: write {VENDORED_GSM8K!r} and choose the split with the split setting "
                        f"(dataset_train_split for training; evaluation uses 'test'); the hub copy is openai/gsm8k")
    if spec == SYNTHETIC_GSM8K or spec.startswith(SYNTHETIC_GSM8K + ":"):
        from grpo.data.synthetic import generate

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

    from grpo.modeling.hub import require_hub

    require_hub("dataset", spec, _OFFLINE_ALTERNATIVES)
    repo, _, config = spec.partition(":")
    try:
        return datasets.load_dataset(repo, config or _HUB_CONFIGS.get(repo), split=split)
    except Exception as err:  # connection, missing repo, missing split: all user-facing
        raise UserError(f"could not load dataset {spec!r} split {split!r} from the hub "
                        f"({type(err).__name__}: {str(err).splitlines()[0][:160]}); offline? "
                        f"use {_OFFLINE_ALTERNATIVES}") from None


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


SUMMARY_INSTRUCTION = "Summarize the following text in one short sentence."


def make_prompt(question: str, system_prompt: str = SYSTEM_PROMPT, prompt_format: str = "tags") -> list[dict]:
    """The conversational prompt TRL expects: system message + the question as the user turn
    (``prompt_format="tags"``), verl's single user turn ending in :data:`HASH_INSTRUCTION` (``"hash"``),
    or a single user turn asking for a one-sentence summary of the text (``"summary"``: the course's
    length-reward exercise, where only the completion's length is rewarded)."""
    if prompt_format == "hash":
        return [{"role": "user", "content": f"{question} {HASH_INSTRUCTION}"}]
    if prompt_format == "summary":
        return [{"role": "user", "content": f"{SUMMARY_INSTRUCTION}\n\n{question}"}]
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": question}]


def load_gsm8k(spec: str, split: str = "train", limit: int | None = None, system_prompt: str = SYSTEM_PROMPT,
               prompt_format: str = "tags"):
    """GSM8K (or anything in its format) as GRPO-ready rows.

    Args:
        spec: dataset spec (see module docstring), e.g. ``gsm8k``; rows need ``question`` and ``answer``.
        split: which split for ``gsm8k`` (``train`` / ``test``), hub and synthetic specs.
        limit: keep the first ``limit`` rows (None = all).
        system_prompt: the system message of every prompt.
        prompt_format: ``"tags"``, ``"hash"`` or ``"summary"`` (see :func:`make_prompt`).

    Returns:
        ``datasets.Dataset`` with columns ``prompt`` (list of ``{"role", "content"}``), ``answer``
        (the final number as a string), ``question`` and ``solution`` (the original answer text).

    Raises:
        UserError: anything :func:`load_rows` raises (e.g. an unknown split); a row without
            ``question``/``answer`` or without ``####`` in its answer, named by file and line (or row index).
    """
    raw = load_rows(spec, split)
    if limit is not None:
        raw = raw.select(range(min(limit, len(raw))))
    source = str(vendored_gsm8k_file(split)) if spec == VENDORED_GSM8K else spec
    rows = []
    for index, row in enumerate(raw):
        where = f"{source}:{row['_line']}" if row.get("_line") is not None else f"{source} row {index}"
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


def split_holdout(dataset, eval_size: int, seed: int = 0, setting: str = "eval_size", purpose: str = ""):
    """Shuffle with ``seed`` and split off the last ``eval_size`` rows: ``(train, heldout)``.

    Args:
        setting, purpose: the config field ``eval_size`` came from and what the rows are for, named in the error.

    Raises:
        UserError: when fewer than ``eval_size + 1`` rows are available.
    """
    if eval_size <= 0:
        return dataset, None
    if len(dataset) <= eval_size:
        raise UserError(f"dataset has {len(dataset)} rows, not enough to hold out {setting}={eval_size}"
                        f"{purpose}: lower {setting}")
    shuffled = dataset.shuffle(seed=seed)
    cut = len(shuffled) - eval_size
    return shuffled.select(range(cut)), shuffled.select(range(cut, len(shuffled)))
