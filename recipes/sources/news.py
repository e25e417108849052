"""``pkg:lee-*``: 300 Australian news stories (ABC) from gensim's test corpus ``lee_background.cor``.

The Lee corpus (Lee, Pincombe & Welsh, 2005) ships with the PyPI package ``gensim``
(``gensim/test/test_data/lee_background.cor``, one story per line, ~200 words each). Split: every
fifth story (index 4, 9, ...) is validation (60), the rest train (240). Three views of it:

``pkg:lee-news``  ``{"id", "text"}``: whole stories (masked / causal LM).
``pkg:lee-lead``  ``{"id", "document", "summary"}``: XSum's construction -- the story's first
                  sentence, which its author wrote as the lead, is the summary and the remaining
                  sentences are the document. Stories with fewer than three sentences are skipped.
``pkg:lee-cloze`` SQuAD v2 rows ``{"id", "title", "context", "question", "answers"}`` built the
                  way CNN/Daily Mail's cloze questions were (Hermann et al., 2015): the question is
                  the lead sentence with one capitalised name replaced by ``@placeholder``, the
                  context is the rest of the story, and the answer is the name's first occurrence
                  in the context -- or no answer (SQuAD v2's null, ``answers.text == []``) when
                  the rest of the story never repeats the name. Names are maximal runs of
                  capitalised words in the lead, not at its start and not a capitalised function
                  word; up to three per story.
"""

from __future__ import annotations

import re
from functools import lru_cache

from recipes.sources import holdout, package_file

DISTRIBUTION = "gensim"
FILE = "gensim/test/test_data/lee_background.cor"
PLACEHOLDER = "@placeholder"
MAX_QUESTIONS_PER_STORY = 3

# A sentence ends at . ! or ? (optionally followed by a closing quote) before a capital or a quote.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"']?\s+(?=[\"']?[A-Z0-9])")
_NAME = re.compile(r"\b[A-Z][\w'&.-]*[\w](?:\s+(?:of\s+|de\s+)?[A-Z][\w'&.-]*[\w])*")
_NOT_NAMES = {"The", "A", "An", "He", "She", "It", "They", "We", "I", "In", "On", "At", "But", "And", "Mr", "Mrs",
              "Ms", "Dr", "This", "That", "There", "His", "Her", "Its", "Their", "After", "As", "For", "If", "When"}


def split_sentences(text: str) -> list[str]:
    """Sentences of a news story (a punctuation rule; no model download).

    >>> split_sentences('Fires burn in NSW. "We are ready," he said. Rain is due.')
    ['Fires burn in NSW.', '"We are ready," he said.', 'Rain is due.']
    """
    parts, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        parts.append(text[start:match.end()].strip())
        start = match.end()
    parts.append(text[start:].strip())
    return [p for p in parts if p]


def names_in(sentence: str) -> list[tuple[int, str]]:
    """``(offset, name)`` of the capitalised names in a sentence, skipping its first word.

    >>> names_in("Police in New South Wales say Brian Greig left Sydney.")
    [(10, 'New South Wales'), (30, 'Brian Greig'), (47, 'Sydney')]
    >>> names_in("The Israeli army met Prime Minister John Howard.")
    [(4, 'Israeli'), (21, 'Prime Minister John Howard')]
    """
    found = []
    for match in _NAME.finditer(sentence):
        offset, words = match.start(), match.group(0).rstrip(".").split(" ")
        if offset == 0:  # a sentence's first word is capitalised anyway: keep only what follows it
            offset, words = offset + len(words[0]) + 1, words[1:]
        while words and words[0] in _NOT_NAMES:  # "The Israeli army" -> "Israeli"
            offset, words = offset + len(words[0]) + 1, words[1:]
        if words and words[0] not in ("of", "de"):
            found.append((offset, " ".join(words)))
    return found


def find_name(context: str, name: str) -> int:
    """Offset of ``name`` as whole words in ``context``, or -1."""
    match = re.search(r"(?<!\w)" + re.escape(name) + r"(?!\w)", context)
    return match.start() if match else -1


@lru_cache(maxsize=1)
def _stories() -> tuple:
    path = package_file(DISTRIBUTION, FILE)
    return tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def lee_news(split: str) -> list[dict]:
    """Whole stories of one split."""
    return [{"id": f"lee-{i}", "text": text} for i, text in enumerate(_stories()) if holdout(i) == split]


def _lead_and_rest(text: str) -> tuple[str, str] | None:
    sentences = split_sentences(text)
    if len(sentences) < 3:
        return None
    return sentences[0], " ".join(sentences[1:])


def lee_lead(split: str) -> list[dict]:
    """Lead sentence (summary) vs the rest of the story (document), for one split."""
    out = []
    for i, text in enumerate(_stories()):
        parts = _lead_and_rest(text) if holdout(i) == split else None
        if parts:
            out.append({"id": f"lee-{i}", "document": parts[1], "summary": parts[0]})
    return out


def cloze_questions(lead: str, context: str, story_id: str, limit: int = MAX_QUESTIONS_PER_STORY) -> list[dict]:
    """SQuAD v2 rows for one story: one question per distinct name of the lead (see the module docstring).

    >>> rows = cloze_questions("Fires near Sydney forced Brian Greig out.", "Greig said Sydney is safe.", "s")
    >>> [(r["question"], r["answers"]) for r in rows]  # doctest: +NORMALIZE_WHITESPACE
    [('Fires near @placeholder forced Brian Greig out.', {'text': ['Sydney'], 'answer_start': [11]}),
     ('Fires near Sydney forced @placeholder out.', {'text': [], 'answer_start': []})]
    """
    rows, seen = [], set()
    for _, name in names_in(lead):
        if name in seen or len(rows) >= limit:
            continue
        seen.add(name)
        question = re.sub(r"(?<!\w)" + re.escape(name) + r"(?!\w)", PLACEHOLDER, lead)
        start = find_name(context, name)
        answers = {"text": [name], "answer_start": [start]} if start >= 0 else {"text": [], "answer_start": []}
        rows.append({"id": f"{story_id}-q{len(rows)}", "title": story_id, "context": context,
                     "question": question, "answers": answers})
    return rows


def lee_cloze(split: str) -> list[dict]:
    """Cloze questions of one split, answerable and unanswerable (SQuAD v2 schema)."""
    out = []
    for i, text in enumerate(_stories()):
        parts = _lead_and_rest(text) if holdout(i) == split else None
        if parts:
            out += cloze_questions(*parts, story_id=f"lee-{i}")
    return out
