"""Supervised recipes of the Hugging Face course's "Main NLP tasks" chapter, one module each.

Run one with ``python -m recipes.<name> --config recipes/configs/<name>.yaml`` or
``grpo recipe <name> --config ...``. Every recipe module exposes ``main(argv=None) -> int``.

:data:`RECIPES` maps a recipe name to its module path; :func:`get` imports only the one asked
for (the recipes import torch and transformers, which ``import recipes`` must not).

>>> sorted(RECIPES)[:3]
['causal_lm', 'masked_lm', 'question_answering']
"""

from __future__ import annotations

import importlib

from grpo.common.errors import UserError

RECIPES = {
    "token_classification": "recipes.token_classification",
    "question_answering": "recipes.question_answering",
    "masked_lm": "recipes.masked_lm",
    "causal_lm": "recipes.causal_lm",
    "translation": "recipes.translation",
    "summarization": "recipes.summarization",
}


def names() -> list[str]:
    """Recipe names, in the course's order of the tasks above."""
    return list(RECIPES)


def get(name: str):
    """Import and return the recipe module ``name`` (it has ``main(argv=None) -> int``).

    Raises:
        UserError: unknown recipe name (the message lists the known ones).
    """
    if name not in RECIPES:
        raise UserError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}")
    return importlib.import_module(RECIPES[name])
