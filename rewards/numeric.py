"""Numeric-type rewards: is the extracted answer an integer / a number at all?

* ``integer_answer`` / ``int_reward``: 0.5 if the ``<answer>`` content is an integer (course);
* ``number_answer`` / ``number_reward``: 0.5 if it is one number: ``-3``, ``2.5``, ``$1,000``,
  ``3/4``, ``50%``.

The course's ``int_reward_func`` used ``str.isdigit``, so ``-3`` and ``1,000`` scored 0; here
a sign and thousands separators are accepted (GSM8K has negative and comma-separated answers).
Without the answer tag the score is 0 (the course scored the whole text, which is almost never
all digits). They reward the *shape* of an answer, not its truth: weight them well below
correctness, or the policy learns to print any integer.

Try: ``grpo rewards try --reward integer_answer --completions FILE.jsonl``.
"""

from __future__ import annotations

import re

from rewards.correctness import check_extractors
from rewards.text import completion_text, extract_answer, parse_number

__all__ = ["IntegerAnswer", "NumberAnswer"]

_INTEGER_RE = re.compile(r"[-+\u2212]?(?:\d{1,3}(?:,\d{3})+|\d+)")
_FRACTION_OR_PERCENT_RE = re.compile(r"[-+]?\d+(?:\.\d+)?\s*(?:/\s*\d+(?:\.\d+)?|%)")


class IntegerAnswer:
    """``value`` when the extracted answer is an integer literal (sign and ``1,000`` allowed).

    Args:
        value: reward for an integer answer (course 0.5).
        extractors: where to look (default only the ``<answer>`` tag, as the course does).
        answer_tag: tag name.
        name: ``__name__``.

    >>> IntegerAnswer()(["<answer>\\n42\\n</answer>", "<answer>-1,000</answer>", "<answer>4.5</answer>", "42"])
    [0.5, 0.5, 0.0, 0.0]
    """

    def __init__(self, value: float = 0.5, extractors=("answer_tag",), answer_tag: str = "answer",
                 name: str = "int_reward"):
        self.value = float(value)
        self.extractors = check_extractors(extractors)
        self.answer_tag = answer_tag
        self.__name__ = name

    def __call__(self, completions: list, prompts: list | None = None, **kwargs) -> list[float]:
        scores = []
        for c in completions:
            span = extract_answer(completion_text(c), self.extractors, self.answer_tag)
            ok = span is not None and len(span) <= 100 and _INTEGER_RE.fullmatch(span) is not None
            scores.append(self.value if ok else 0.0)
        return scores


class NumberAnswer:
    """``value`` when the extracted answer is one number: decimal, ``$`` amount, fraction or percent.

    Args:
        value: reward for a numeric answer.
        extractors: where to look (default the ``<answer>`` tag).
        answer_tag: tag name.
        name: ``__name__``.

    >>> NumberAnswer()(["<answer>$1,000.50</answer>", "<answer>3/4</answer>", "<answer>many</answer>"])
    [0.5, 0.5, 0.0]
    """

    def __init__(self, value: float = 0.5, extractors=("answer_tag",), answer_tag: str = "answer",
                 name: str = "number_reward"):
        self.value = float(value)
        self.extractors = check_extractors(extractors)
        self.answer_tag = answer_tag
        self.__name__ = name

    def __call__(self, completions: list, prompts: list | None = None, **kwargs) -> list[float]:
        scores = []
        for c in completions:
            span = extract_answer(completion_text(c), self.extractors, self.answer_tag)
            ok = span is not None and (parse_number(span) is not None or (
                len(span) <= 100 and _FRACTION_OR_PERCENT_RE.fullmatch(span.strip()) is not None))
            scores.append(self.value if ok else 0.0)
        return scores
