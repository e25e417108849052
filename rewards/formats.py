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
  ``<think>..</think> <answer>..</answer>``, whitespace-tolerant (``require_answer=False``:
  ``<think>..</think>`` first; ``exact_open_r1=True``: open-r1's newline-exact ``format_reward``);
* ``code_format`` / ``code_format_reward``: 1.0 for open-r1's layout with a ```` ```python ```` block
  (``language``) in the answer;
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
from rewards.reasoning import is_placeholder_reasoning
from rewards.text import completion_text

__all__ = ["XmlCount", "SoftFormat", "StrictFormat", "ThinkFormat", "CodeFormat", "ReasoningSteps", "open_r1_layout"]


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
        require_reasoning: score 0 when the reasoning block is a placeholder (empty, the prompt's ``...``, or
            no number and no operation: :func:`rewards.reasoning.is_placeholder_reasoning`); the course pays for
            the tags whatever they hold, which a policy earns by copying the system prompt's template.
        name: ``__name__`` (metric name).

    >>> reward = XmlCount()
    >>> reward(["<reasoning>\\n6*3\\n</reasoning>\\n<answer>\\n18\\n</answer>\\n",
    ...         "<reasoning>\\n6*3\\n</reasoning>\\n<answer>\\n18\\n</answer>\\nbye", "18"])
    [0.5, 0.494, 0.0]
    """

    def __init__(self, reasoning_tag: str = "reasoning", answer_tag: str = "answer", per_tag: float = 0.125,
                 penalty_per_char: float = 0.001, exact_course: bool = False, require_reasoning: bool = False,
                 name: str = "xmlcount_reward"):
        self.reasoning_tag = _check_tag(reasoning_tag, "reasoning_tag")
        self.answer_tag = _check_tag(answer_tag, "answer_tag")
        self.per_tag, self.penalty_per_char = float(per_tag), float(penalty_per_char)
        self.exact_course, self.require_reasoning = bool(exact_course), bool(require_reasoning)
        self.__name__ = name

    def score(self, text: str) -> float:
        """Score one completion text."""
        r, a = self.reasoning_tag, self.answer_tag
        if self.require_reasoning and is_placeholder_reasoning(text, r):
            return 0.0
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
        require_reasoning: also require real reasoning content (:func:`rewards.reasoning.is_placeholder_reasoning`
            False): the template copied from the prompt, ``<reasoning>...</reasoning>``, scores 0.
        name: ``__name__``.

    >>> SoftFormat()(["<reasoning>a\\nb</reasoning> <answer>4</answer>", "<answer>4</answer>"])
    [0.5, 0.0]
    """

    def __init__(self, reasoning_tag: str = "reasoning", answer_tag: str = "answer", value: float = 0.5,
                 allow_trailing: bool = True, exact_course: bool = False, require_reasoning: bool = False,
                 name: str = "soft_format_reward"):
        self.reasoning_tag = _check_tag(reasoning_tag, "reasoning_tag")
        self.answer_tag = _check_tag(answer_tag, "answer_tag")
        self.value, self.allow_trailing, self.exact_course = float(value), bool(allow_trailing), bool(exact_course)
        self.require_reasoning = bool(require_reasoning)
        self.__name__ = name
        r, a = self.reasoning_tag, self.answer_tag
        self._course_re = re.compile(rf"<{r}>.*?</{r}>\s*<{a}>.*?</{a}>")

    def matches(self, text: str) -> bool:
        """Whether one completion text has the layout (and, with ``require_reasoning``, real reasoning)."""
        if self.require_reasoning and is_placeholder_reasoning(text, self.reasoning_tag):
            return False
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
        require_reasoning: also require real reasoning content, as :class:`SoftFormat`.
        name: ``__name__``.

    >>> StrictFormat()(["<reasoning>\\nx\\ny\\n</reasoning>\\n<answer>\\n4\\n</answer>",
    ...                 "<reasoning>x</reasoning><answer>4</answer>"])
    [0.5, 0.0]
    """

    def __init__(self, reasoning_tag: str = "reasoning", answer_tag: str = "answer", value: float = 0.5,
                 exact_course: bool = False, require_reasoning: bool = False, name: str = "strict_format_reward"):
        self.reasoning_tag = _check_tag(reasoning_tag, "reasoning_tag")
        self.answer_tag = _check_tag(answer_tag, "answer_tag")
        self.value, self.exact_course = float(value), bool(exact_course)
        self.require_reasoning = bool(require_reasoning)
        self.__name__ = name
        r, a = self.reasoning_tag, self.answer_tag
        self._course_re = re.compile(rf"^<{r}>\n.*?\n</{r}>\n<{a}>\n.*?\n</{a}>\n$")
        # With every tag present exactly once (checked first) this regex cannot backtrack far.
        self._re = re.compile(rf"<{r}>\n(?:.*\n)?</{r}>\n<{a}>\n(?:.*\n)?</{a}>\s*", re.DOTALL)

    def matches(self, text: str) -> bool:
        """Whether one completion text has the layout (and, with ``require_reasoning``, real reasoning)."""
        if self.require_reasoning and is_placeholder_reasoning(text, self.reasoning_tag):
            return False
        if self.exact_course:
            return self._course_re.match(text) is not None
        r, a = self.reasoning_tag, self.answer_tag
        if any(text.count(tag) != 1 for tag in (f"<{r}>", f"</{r}>", f"<{a}>", f"</{a}>")):
            return False
        return self._re.fullmatch(text) is not None

    def __call__(self, completions: list, prompts: list | None = None, **kwargs) -> list[float]:
        return [self.value if self.matches(completion_text(c)) else 0.0 for c in completions]


def open_r1_layout(text: str, reasoning_tag: str = "think", answer_tag: str = "answer",
                   fence: str | None = None) -> bool:
    """Whether ``text`` matches open-r1's ``format_reward`` regex (or, with ``fence``, its code-format regex).

    open-r1 (``src/open_r1/rewards.py``) matches ``^<think>\\n.*?\\n</think>\\n<answer>\\n.*?\\n</answer>$``
    with ``re.match`` and ``re.DOTALL | re.MULTILINE``; its ``get_code_format_reward(language)`` puts
    ```` ```{language}.*?``` ```` inside the answer. So: the text starts with ``<think>`` and a
    newline; the first ``\\n</think>\\n<answer>\\n`` after it ends the reasoning; then (with
    ``fence``) an opening ```` ```fence ```` and a later closing ```` ``` ````; then ``\\n</answer>`` at
    the end of the text *or of a line* -- MULTILINE lets any text follow after a newline.

    Checked with ``str.find`` instead of the backtracking regex, so a 1 MB completion of repeated
    tags costs linear time; at every stage the earliest match leaves the most room for the rest,
    so this accepts exactly what the regex accepts (``tests/test_rewards_formats.py`` compares the two).

    Args:
        text: the completion text.
        reasoning_tag, answer_tag: tag names (open-r1: ``think``, ``answer``).
        fence: a code-block language (``"python"``), taken literally; ``None`` = no code block needed.

    >>> open_r1_layout("<think>\\nhmm\\n</think>\\n<answer>\\n9\\n</answer>")
    True
    >>> open_r1_layout("<think>hmm</think>\\n<answer>9</answer>")
    False
    >>> open_r1_layout("<think>\\nr\\n</think>\\n<answer>\\n```python\\nprint(1)\\n```\\n</answer>", fence="python")
    True
    """
    opening = f"<{reasoning_tag}>\n"
    if not text.startswith(opening):
        return False
    middle = f"\n</{reasoning_tag}>\n<{answer_tag}>\n"
    found = text.find(middle, len(opening))
    if found < 0:
        return False
    position = found + len(middle)
    if fence is not None:
        start = text.find("```" + fence, position)
        if start < 0:
            return False
        end = text.find("```", start + 3 + len(fence))
        if end < 0:
            return False
        position = end + 3
    closing = f"\n</{answer_tag}>"
    found = text.find(closing, position)
    while found >= 0:
        after = found + len(closing)
        if after == len(text) or text[after] == "\n":
            return True
        found = text.find(closing, found + 1)
    return False


class ThinkFormat:
    """``value`` for a ``<think>`` block that opens the text, then ``<answer>``; whitespace-tolerant by default.

    This default is *not* open-r1's ``format_reward``. It needs ``<think>`` at the very start and
    only once (a second or nested ``<think>`` scores 0), then ``</think>``, optional whitespace,
    ``<answer>..</answer>``, optional trailing whitespace; newlines around the tags are optional.
    With ``require_answer=False`` anything may follow ``</think>`` (TRL's ``think_format_reward``).

    ``exact_open_r1=True`` scores with open-r1's ``format_reward`` regex instead (the DeepSeek-R1
    template, :func:`open_r1_layout`): a newline after each opening and before each closing tag,
    nothing but ``\\n`` between ``</think>`` and ``<answer>``, repeated tags allowed, and any text
    after a line break that follows ``</answer>``. ``<think>A</think>\\n<answer>B</answer>`` scores
    ``value`` by default and 0 with ``exact_open_r1``.

    Args:
        value: reward when the layout matches.
        require_answer: also require ``<answer>..</answer>`` after the reasoning, and nothing else.
        reasoning_tag, answer_tag: tag names.
        exact_open_r1: use open-r1's regex semantics (needs ``require_answer=True``).
        name: ``__name__``.

    Raises:
        RewardConfigError: ``exact_open_r1`` without ``require_answer``.

    >>> ThinkFormat()(["<think>\\nhmm\\n</think>\\n<answer>9</answer>", "<think>x</think> 9"])
    [1.0, 0.0]
    >>> ThinkFormat(require_answer=False)(["<think>x</think> 9", "<think>a<think>b</think></think>"])
    [1.0, 0.0]
    >>> ThinkFormat(exact_open_r1=True)(["<think>\\nhmm\\n</think>\\n<answer>\\n9\\n</answer>",
    ...                                  "<think>x</think><answer>9</answer>"])
    [1.0, 0.0]
    """

    def __init__(self, value: float = 1.0, require_answer: bool = True, reasoning_tag: str = "think",
                 answer_tag: str = "answer", exact_open_r1: bool = False, name: str = "think_format_reward"):
        self.value, self.require_answer = float(value), bool(require_answer)
        self.reasoning_tag = _check_tag(reasoning_tag, "reasoning_tag")
        self.answer_tag = _check_tag(answer_tag, "answer_tag")
        self.exact_open_r1 = bool(exact_open_r1)
        if self.exact_open_r1 and not self.require_answer:
            raise RewardConfigError("exact_open_r1=True is open-r1's think + answer layout; it needs require_answer=True")
        self._layout = SoftFormat(reasoning_tag=reasoning_tag, answer_tag=answer_tag, allow_trailing=False)
        self.__name__ = name

    def matches(self, text: str) -> bool:
        """Whether one completion text has the layout."""
        if self.exact_open_r1:
            return open_r1_layout(text, self.reasoning_tag, self.answer_tag)
        opening, closing = f"<{self.reasoning_tag}>", f"</{self.reasoning_tag}>"
        if not text.startswith(opening) or text.count(opening) != 1 or closing not in text:
            return False
        return self._layout.matches(text) if self.require_answer else True

    def __call__(self, completions: list, prompts: list | None = None, **kwargs) -> list[float]:
        return [self.value if self.matches(completion_text(c)) else 0.0 for c in completions]


class CodeFormat:
    """``value`` when the answer of open-r1's think/answer layout holds a fenced code block in ``language``.

    open-r1's ``get_code_format_reward(language)``: the text is ``<think>\\n..\\n</think>\\n<answer>\\n``
    then, inside the answer, ```` ```language ```` .. ```` ``` ````, then ``\\n</answer>`` (see
    :func:`open_r1_layout` for the exact rule). A block in the reasoning does not count; a block
    of another language does not count; a bare ```` ``` ```` block does not count unless
    ``language=""``. The language is matched literally and as a prefix, as in open-r1's regex
    (``python`` also accepts ```` ```python3 ````).

    Args:
        language: the fence's language tag (``"python"``, ``"javascript"``, ``"cpp"``, ...).
        value: reward when the layout matches.
        reasoning_tag, answer_tag: tag names.
        name: ``__name__`` (open-r1's metric name by default).

    >>> ok = "<think>\\nplan\\n</think>\\n<answer>\\n```python\\nprint(42)\\n```\\n</answer>"
    >>> CodeFormat()([ok, ok.replace("python", "javascript")])
    [1.0, 0.0]
    >>> CodeFormat(language="javascript")([ok.replace("python", "javascript")])
    [1.0]
    """

    def __init__(self, language: str = "python", value: float = 1.0, reasoning_tag: str = "think",
                 answer_tag: str = "answer", name: str = "code_format_reward"):
        if not isinstance(language, str) or any(ch.isspace() or ch == "`" for ch in language):
            raise RewardConfigError(f"language must be a fence tag like 'python' (no spaces or backticks), "
                                    f"got {language!r}")
        self.language, self.value = language, float(value)
        self.reasoning_tag = _check_tag(reasoning_tag, "reasoning_tag")
        self.answer_tag = _check_tag(answer_tag, "answer_tag")
        self.__name__ = name

    def __call__(self, completions: list, prompts: list | None = None, **kwargs) -> list[float]:
        return [self.value if open_r1_layout(completion_text(c), self.reasoning_tag, self.answer_tag, self.language)
                else 0.0 for c in completions]


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
