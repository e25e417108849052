"""Format rewards: reasoning/answer tag layouts, tag counting, step-by-step markers.

Registry names, ``__name__`` and scores (the first three are the Hugging Face course's GSM8K
exercise):

* ``xml_count`` / ``xmlcount_reward``: 0.125 per well-placed tag, minus 0.001 per character
  after ``</answer>``;
* ``soft_format`` / ``soft_format_reward``: 0.5 if ``<reasoning>..</reasoning> <answer>..</answer>``
  opens the text;
* ``strict_format`` / ``strict_format_reward``: 0.5 if the text is exactly
  ``<reasoning>\\n..\\n</reasoning>\\n<answer>\\n..\\n</answer>``;
* ``think_format`` / ``think_format_reward``: 1.0 if the whole text is
  ``<think>..</think> <answer>..</answer>`` (``require_answer=False``: ``<think>..</think>`` first);
* ``reasoning_steps`` / ``reasoning_steps_reward``: share of 3 step markers ("Step 1:", "1.", "First,").

Tag names are parameters (``reasoning_tag="think"``). Deviations from the course's regexes,
which are kept available with ``exact_course=True``:

* the course matches without ``re.DOTALL``, so any reasoning longer than one line failed the
  soft and strict formats; here ``..`` spans lines;
* the strict format accepts any trailing whitespace (the course demanded exactly one final
  newline, which a model stopping at ``</answer>`` + EOS never produces);
* ``xml_count`` no longer charges the whole completion's length when ``\\n</answer>\\n`` is
  absent, and no longer pays +0.001 when nothing follows ``\\n</answer>``.

The layouts are checked with ``str.find`` rather than backtracking regexes, so a 1 MB
completion made of repeated tags costs linear time.

Try: ``grpo rewards try --reward strict_format --completions FILE.jsonl``.
"""

from __future__ import annotations

import re

from rewards.errors import RewardConfigError
from rewards.text import completion_text

__all__ = ["XmlCount", "SoftFormat", "StrictFormat", "ThinkFormat", "ReasoningSteps"]


def _check_tag(tag: str, what: str) -> str:
    if not isinstance(tag, str) or not re.fullmatch(r"[A-Za-z_][\w.-]*", tag):
        raise RewardConfigError(f"{what} must be a tag name like 'answer' (no angle brackets), got {tag!r}")
    return tag


class XmlCount:
    """Partial credit per tag on its own line, minus a penalty for text after the answer.

    Each of ``<reasoning>\\n``, ``\\n</reasoning>\\n``, ``\\n<answer>\\n`` and ``\\n</answer>``
    present exactly once earns ``per_tag``; characters after the closing answer tag cost
    ``penalty_per_char`` each (counted as the course does: once after ``\\n</answer>\\n`` and
    once, minus the newline, after ``\\n</answer>``). The score can be negative.

    Args:
        reasoning_tag, answer_tag: tag names.
        per_tag: credit per tag (course 0.125, so 0.5 in total).
        penalty_per_char: trailing-text penalty (course 0.001).
        exact_course: reproduce the course's ``count_xml`` bit for bit, quirks included.
        name: ``__name__`` (metric name).

    >>> reward = XmlCount()
    >>> reward(["<reasoning>\\n6*3\\n</reasoning>\\n<answer>\\n18\\n</answer>\\n",
    ...         "<reasoning>\\n6*3\\n</reasoning>\\n<answer>\\n18\\n</answer>\\nbye", "18"])
    [0.5, 0.494, 0.0]
    """

    def __init__(self, reasoning_tag: str = "reasoning", answer_tag: str = "answer", per_tag: float = 0.125,
                 penalty_per_char: float = 0.001, exact_course: bool = False, name: str = "xmlcount_reward"):
        self.reasoning_tag = _check_tag(reasoning_tag, "reasoning_tag")
        self.answer_tag = _check_tag(answer_tag, "answer_tag")
        self.per_tag, self.penalty_per_char = float(per_tag), float(penalty_per_char)
        self.exact_course = bool(exact_course)
        self.__name__ = name

    def score(self, text: str) -> float:
        """Score one completion text."""
        r, a = self.reasoning_tag, self.answer_tag
        count = 0.0
        if text.count(f"<{r}>\n") == 1:
            count += self.per_tag
        if text.count(f"\n</{r}>\n") == 1:
            count += self.per_tag
        if text.count(f"\n<{a}>\n") == 1:
            count += self.per_tag
            closing = f"\n</{a}>\n"
            if self.exact_course or closing in text:
                count -= len(text.split(closing)[-1]) * self.penalty_per_char
        if text.count(f"\n</{a}>") == 1:
            count += self.per_tag
            trailing = len(text.split(f"\n</{a}>")[-1]) - 1
            count -= (trailing if self.exact_course else max(trailing, 0)) * self.penalty_per_char
        return round(count, 10)

    def __call__(self, completions: list, prompts: list | None = None, **kwargs) -> list[float]:
        return [self.score(completion_text(c)) for c in completions]


class SoftFormat:
    """``value`` if the text starts with ``<R>..</R>``, then whitespace, then ``<A>..</A>``.

    Args:
        reasoning_tag, answer_tag: tag names (``R``, ``A``).
        value: reward when the layout matches (course 0.5).
        allow_trailing: accept text after ``</A>`` (the course does); ``False`` makes it a
            whole-text match.
        exact_course: use the course's regex (no ``re.DOTALL``: one-line reasoning only).
        name: ``__name__``.

    >>> SoftFormat()(["<reasoning>a\\nb</reasoning> <answer>4</answer>", "<answer>4</answer>"])
    [0.5, 0.0]
    """

    def __init__(self, reasoning_tag: str = "reasoning", answer_tag: str = "answer", value: float = 0.5,
                 allow_trailing: bool = True, exact_course: bool = False, name: str = "soft_format_reward"):
        self.reasoning_tag = _check_tag(reasoning_tag, "reasoning_tag")
        self.answer_tag = _check_tag(answer_tag, "answer_tag")
        self.value, self.allow_trailing, self.exact_course = float(value), bool(allow_trailing), bool(exact_course)
        self.__name__ = name
        r, a = self.reasoning_tag, self.answer_tag
        self._course_re = re.compile(rf"<{r}>.*?</{r}>\s*<{a}>.*?</{a}>")

    def matches(self, text: str) -> bool:
        """Whether one completion text has the layout."""
        if self.exact_course:
            return self._course_re.match(text) is not None
        r, a = self.reasoning_tag, self.answer_tag
        text = text.lstrip()
        if not text.startswith(f"<{r}>"):
            return False
        r_end = text.find(f"</{r}>", len(r) + 2)
        if r_end < 0:
            return False
        rest = text[r_end + len(r) + 3:].lstrip()
        if not rest.startswith(f"<{a}>"):
            return False
        a_end = rest.find(f"</{a}>", len(a) + 2)
        if a_end < 0:
            return False
        return self.allow_trailing or not rest[a_end + len(a) + 3:].strip()

    def __call__(self, completions: list, prompts: list | None = None, **kwargs) -> list[float]:
        return [self.value if self.matches(completion_text(c)) else 0.0 for c in completions]


class StrictFormat:
    """``value`` if the text is exactly ``<R>\\n...\\n</R>\\n<A>\\n...\\n</A>`` (+ trailing whitespace).

    Each of the four tags must occur exactly once; nothing may precede ``<R>`` or follow ``</A>``
    except whitespace.

    Args:
        reasoning_tag, answer_tag: tag names.
        value: reward when the layout matches (course 0.5).
        exact_course: use the course's regex (one-line bodies, exactly one final newline).
        name: ``__name__``.

    >>> StrictFormat()(["<reasoning>\\nx\\ny\\n</reasoning>\\n<answer>\\n4\\n</answer>",
    ...                 "<reasoning>x</reasoning><answer>4</answer>"])
    [0.5, 0.0]
    """

    def __init__(self, reasoning_tag: str = "reasoning", answer_tag: str = "answer", value: float = 0.5,
                 exact_course: bool = False, name: str = "strict_format_reward"):
        self.reasoning_tag = _check_tag(reasoning_tag, "reasoning_tag")
        self.answer_tag = _check_tag(answer_tag, "answer_tag")
        self.value, self.exact_course = float(value), bool(exact_course)
        self.__name__ = name
        r, a = self.reasoning_tag, self.answer_tag
        self._course_re = re.compile(rf"^<{r}>\n.*?\n</{r}>\n<{a}>\n.*?\n</{a}>\n$")
        # With every tag present exactly once (checked first) this regex cannot backtrack far.
        self._re = re.compile(rf"<{r}>\n(?:.*\n)?</{r}>\n<{a}>\n(?:.*\n)?</{a}>\s*", re.DOTALL)

    def matches(self, text: str) -> bool:
        """Whether one completion text has the layout."""
        if self.exact_course:
            return self._course_re.match(text) is not None
        r, a = self.reasoning_tag, self.answer_tag
        if any(text.count(tag) != 1 for tag in (f"<{r}>", f"</{r}>", f"<{a}>", f"</{a}>")):
            return False
        return self._re.fullmatch(text) is not None

    def __call__(self, completions: list, prompts: list | None = None, **kwargs) -> list[float]:
        return [self.value if self.matches(completion_text(c)) else 0.0 for c in completions]


class ThinkFormat:
    """``value`` for a reasoning block that opens the text, with one opening tag.

    With ``require_answer`` (DeepSeek-R1 / open-r1 style) the whole text must be
    ``<think>..</think>`` then ``<answer>..</answer>``; without it (TRL's ``think_format_reward``)
    anything may follow ``</think>``. Either way the text must start with ``<think>`` and contain
    it once: a second or nested ``<think>`` scores 0.

    Args:
        value: reward when the layout matches.
        require_answer: also require ``<answer>..</answer>`` after the reasoning, and nothing else.
        reasoning_tag, answer_tag: tag names.
        name: ``__name__``.

    >>> ThinkFormat()(["<think>\\nhmm\\n</think>\\n<answer>9</answer>", "<think>x</think> 9"])
    [1.0, 0.0]
    >>> ThinkFormat(require_answer=False)(["<think>x</think> 9", "<think>a<think>b</think></think>"])
    [1.0, 0.0]
    """

    def __init__(self, value: float = 1.0, require_answer: bool = True, reasoning_tag: str = "think",
                 answer_tag: str = "answer", name: str = "think_format_reward"):
        self.value, self.require_answer = float(value), bool(require_answer)
        self.reasoning_tag = _check_tag(reasoning_tag, "reasoning_tag")
        self._layout = SoftFormat(reasoning_tag=reasoning_tag, answer_tag=answer_tag, allow_trailing=False)
        self.__name__ = name

    def matches(self, text: str) -> bool:
        """Whether one completion text has the layout."""
        opening, closing = f"<{self.reasoning_tag}>", f"</{self.reasoning_tag}>"
        if not text.startswith(opening) or text.count(opening) != 1 or closing not in text:
            return False
        return self._layout.matches(text) if self.require_answer else True

    def __call__(self, completions: list, prompts: list | None = None, **kwargs) -> list[float]:
        return [self.value if self.matches(completion_text(c)) else 0.0 for c in completions]


class ReasoningSteps:
    """``value * min(1, markers / target)`` for step-by-step markers.

    Markers counted: ``Step N:``, a line starting ``N.`` or ``N)``, a line starting ``-`` or
    ``*`` (bullets), and ``First,`` / ``Second,`` / ``Next,`` / ``Then,`` / ``Finally,``.

    Args:
        target: number of markers for full credit (open-r1 uses 3).
        value: the full-credit reward.
        name: ``__name__``.

    >>> ReasoningSteps()(["Step 1: add\\nStep 2: halve\\nStep 3: done", "First, add.\\nFinally, stop.", "42"])
    [1.0, 0.6666666666666666, 0.0]
    """

    _MARKER = re.compile(r"Step \d+:|^\s*\d+[.)]\s|^\s*[-*]\s|\b(?:First|Second|Next|Then|Finally),", re.MULTILINE)

    def __init__(self, target: int = 3, value: float = 1.0, name: str = "reasoning_steps_reward"):
        if target < 1:
            raise RewardConfigError(f"target must be >= 1, got {target!r}")
        self.target, self.value = int(target), float(value)
        self.__name__ = name

    def __call__(self, completions: list, prompts: list | None = None, **kwargs) -> list[float]:
        scores = []
        for c in completions:
            found = 0
            for found, _ in enumerate(self._MARKER.finditer(completion_text(c)), start=1):
                if found >= self.target:
                    break
            scores.append(self.value * min(1.0, found / self.target))
        return scores
