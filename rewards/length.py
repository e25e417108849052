"""Length rewards: distance to an ideal length or range, and cosine-scaled length-vs-correctness.

* ``length`` / ``length_reward``: ``-per_unit * distance`` to ``ideal`` or to
  ``[min_len, max_len]``; 0 is best;
* ``cosine_length`` / ``cosine_scaled_reward``: correct answers 1.0 (short) .. 0.5 (``max_len``),
  wrong answers -1.0 (short) .. -0.5 (``max_len``);
* ``soft_overlong_punishment`` (TRL's name; alias ``overlong``): DAPO's soft overlong punishment (arXiv:2503.14476):
  0 up to ``max_completion_len - soft_punish_cache`` tokens, then linearly down to -1 at
  ``max_completion_len``, -1 beyond;
* ``group_length`` / ``len_reward``: Kimi k1.5's length reward (arXiv:2501.12599, §2.3.3), the
  one reward here that is *group-aware*: each completion is measured against the shortest and
  longest completion for the same prompt in the call (:mod:`rewards.groups`).

Lengths are in ``unit`` = ``"chars"``, ``"words"`` (whitespace-separated) or ``"tokens"``. Token
counts come from the ``completion_ids`` TRL passes to every reward; outside TRL give a
``tokenizer`` (an object with ``encode`` or a model path / ``embedded:`` spec, loaded lazily).

The course's first GRPO example, ``-abs(50 - len(completion))``, is ``length(ideal=50)``. Its
scale is hundreds of points, which drowns every other reward: use ``per_unit=0.01`` or a range.

The cosine reward follows the open-r1 recipes (after Kimi 1.5 / "Demystifying long CoT"):
short correct answers earn most, long wrong answers are punished least (so the model keeps
thinking when unsure). Unlike open-r1 the length ratio is clipped at 1, so texts longer than
``max_len`` do not wrap around the cosine, and unparsable gold answers score ``None``.
"""

from __future__ import annotations

import math

from rewards.correctness import check_extractors, gold_column, judge
from rewards.errors import RewardConfigError, RewardError
from rewards.groups import group_indices
from rewards.text import EXTRACTORS, completion_text

__all__ = ["Length", "CosineLength", "OverlongPunishment", "GroupLength", "TextLength"]

UNITS = ("chars", "words", "tokens")


class TextLength:
    """Measure texts in chars, words or tokens (shared by the length rewards).

    Args:
        unit: ``"chars"``, ``"words"`` or ``"tokens"``.
        tokenizer: for tokens when ``completion_ids`` is not passed: an object with
            ``encode(text) -> list`` or a model spec string (loaded lazily with transformers).
        owner: reward name for error messages.

    >>> TextLength("words").measure(["two words", ""], {})
    [2, 0]
    """

    def __init__(self, unit: str = "chars", tokenizer=None, owner: str = "length_reward"):
        if unit not in UNITS:
            raise RewardConfigError(f"unit must be one of {', '.join(UNITS)}, got {unit!r}")
        self.unit, self.tokenizer, self.owner = unit, tokenizer, owner
        self._loaded = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_loaded"] = None  # a loaded tokenizer is rebuilt from the spec after unpickling
        return state

    def _tokenizer(self):
        if self.tokenizer is None:
            raise RewardError(f"reward {self.owner!r} counts tokens but got no completion_ids (TRL passes them) "
                              f"and no tokenizer; set tokenizer=<model spec> or unit='chars'")
        if not isinstance(self.tokenizer, str):
            return self.tokenizer
        if self._loaded is None:
            from transformers import AutoTokenizer

            from rewards.reward_model import resolve_local_model

            self._loaded = AutoTokenizer.from_pretrained(resolve_local_model(self.tokenizer))
        return self._loaded

    def measure(self, texts: list[str], columns: dict) -> list[int]:
        """Length of each text; ``columns`` may hold TRL's ``completion_ids`` (used for tokens)."""
        if not texts:
            return []
        if self.unit == "chars":
            return [len(t) for t in texts]
        if self.unit == "words":
            return [len(t.split()) for t in texts]
        ids = columns.get("completion_ids")
        if isinstance(ids, (list, tuple)) and len(ids) == len(texts):
            return [len(x) for x in ids]
        tokenizer = self._tokenizer()
        return [_token_count(tokenizer, t) for t in texts]


def _token_count(tokenizer, text: str) -> int:
    """Tokens in ``text`` without special tokens (HF tokenizers) or as ``encode`` counts them."""
    try:
        return len(tokenizer.encode(text, add_special_tokens=False))
    except TypeError:  # a minimal tokenizer whose encode takes only the text
        return len(tokenizer.encode(text))


class Length:
    """``-per_unit * distance`` from the completion's length to ``ideal`` or to a range.

    Args:
        ideal: target length (default 50 when no range is given; course setting).
        min_len, max_len: a target range instead of a point; inside it the score is 0.
        unit: ``"chars"``, ``"words"`` or ``"tokens"``.
        per_unit: penalty per unit of distance (course 1.0).
        tokenizer: see :class:`TextLength`.
        name: ``__name__``.

    Raises:
        RewardConfigError: both ``ideal`` and a range, an empty range, an unknown unit.

    >>> Length(ideal=5)(["abcde", "abc", "abcdefgh"])
    [0.0, -2.0, -3.0]
    >>> Length(min_len=2, max_len=3, unit="words", per_unit=0.5)(["one", "one two", "a b c d e"])
    [-0.5, 0.0, -1.0]
    """

    def __init__(self, ideal: int | None = None, min_len: int | None = None, max_len: int | None = None,
                 unit: str = "chars", per_unit: float = 1.0, tokenizer=None, name: str = "length_reward"):
        ranged = min_len is not None or max_len is not None
        if ranged and ideal is not None:
            raise RewardConfigError("give either ideal or min_len/max_len, not both")
        if ranged and min_len is not None and max_len is not None and min_len > max_len:
            raise RewardConfigError(f"min_len ({min_len}) must not exceed max_len ({max_len})")
        self.ideal = None if ranged else (50 if ideal is None else ideal)
        self.min_len, self.max_len = min_len, max_len
        self.per_unit = float(per_unit)
        self.__name__ = name
        self.length = TextLength(unit, tokenizer, owner=name)

    def distance(self, n: int) -> float:
        """Distance of a length ``n`` to the target (0 inside the range)."""
        if self.ideal is not None:
            return float(abs(self.ideal - n))
        below = (self.min_len - n) if self.min_len is not None else 0
        above = (n - self.max_len) if self.max_len is not None else 0
        return float(max(0, below, above))

    def __call__(self, completions: list, prompts: list | None = None, **columns) -> list[float]:
        lengths = self.length.measure([completion_text(c) for c in completions], columns)
        return [-self.per_unit * self.distance(n) + 0.0 for n in lengths]


class CosineLength:
    """Cosine-scaled length reward conditioned on correctness (open-r1's ``cosine_scaled_reward``).

    ``r = lo + (hi - lo) * (1 + cos(pi * min(len / max_len, 1))) / 2`` with ``(lo, hi)`` =
    ``(min_value_correct, max_value_correct)`` for a correct answer and
    ``(max_value_wrong, min_value_wrong)`` for a wrong one.

    Args:
        min_value_wrong, max_value_wrong: wrong-answer range (short wrong -> ``min_value_wrong``).
        min_value_correct, max_value_correct: correct-answer range (short correct -> max).
        max_len: length at which the cosine reaches its end, in ``unit``.
        unit, tokenizer: see :class:`TextLength`.
        column, extractors, answer_tag, timeout_seconds: as :class:`rewards.correctness.Correctness`.
        name: ``__name__``.

    >>> reward = CosineLength(max_len=100)
    >>> [round(x, 3) for x in reward(["\\\\boxed{18}", "\\\\boxed{17}"], answer=["18", "18"])]
    [0.988, -0.988]
    """

    def __init__(self, min_value_wrong: float = -1.0, max_value_wrong: float = -0.5, min_value_correct: float = 0.5,
                 max_value_correct: float = 1.0, max_len: int = 1000, unit: str = "chars", tokenizer=None,
                 column: str | None = None, extractors=tuple(EXTRACTORS), answer_tag: str = "answer",
                 timeout_seconds: float = 0.5, name: str = "cosine_scaled_reward"):
        if max_len <= 0:
            raise RewardConfigError(f"max_len must be > 0, got {max_len!r}")
        self.min_value_wrong, self.max_value_wrong = float(min_value_wrong), float(max_value_wrong)
        self.min_value_correct, self.max_value_correct = float(min_value_correct), float(max_value_correct)
        self.max_len = max_len
        self.column, self.answer_tag = column, answer_tag
        self.extractors = check_extractors(extractors)
        self.timeout_seconds = float(timeout_seconds or 0)
        self.__name__ = name
        self.length = TextLength(unit, tokenizer, owner=name)

    def __call__(self, completions: list, prompts: list | None = None, **columns) -> list[float | None]:
        golds = gold_column(columns, self.column, self.__name__, len(completions))
        texts = [completion_text(c) for c in completions]
        lengths = self.length.measure(texts, columns)
        scores: list[float | None] = []
        for text, gold, n in zip(texts, golds, lengths):
            verdict = judge(text, gold, self.extractors, self.answer_tag, self.timeout_seconds)
            if verdict is None:
                scores.append(None)
                continue
            lo, hi = ((self.min_value_correct, self.max_value_correct) if verdict
                      else (self.max_value_wrong, self.min_value_wrong))
            cosine = math.cos(math.pi * min(n / self.max_len, 1.0))
            scores.append(lo + 0.5 * (hi - lo) * (1.0 + cosine))
        return scores


class OverlongPunishment:
    """DAPO's soft overlong punishment: 0 for short texts, a linear ramp to -1 near the length limit.

    ``r = 0`` if ``len <= max_completion_len - soft_punish_cache``; ``r = -1`` if
    ``len > max_completion_len``; in between ``r = (max_completion_len - soft_punish_cache - len)
    / soft_punish_cache``. Set ``max_completion_len`` to the run's ``max_completion_length`` so
    truncated completions are the ones punished.

    Args:
        max_completion_len: the length limit, in ``unit``.
        soft_punish_cache: width of the ramp before the limit.
        unit, tokenizer: see :class:`TextLength` (tokens come from TRL's ``completion_ids``).
        name: ``__name__``.

    >>> OverlongPunishment(100, 20, unit="chars")(["x" * 50, "x" * 90, "x" * 110])
    [0.0, -0.5, -1.0]
    """

    def __init__(self, max_completion_len: int = 512, soft_punish_cache: int = 128, unit: str = "tokens",
                 tokenizer=None, name: str = "soft_overlong_punishment"):
        if not 0 <= soft_punish_cache <= max_completion_len:
            raise RewardConfigError(f"need 0 <= soft_punish_cache <= max_completion_len, got "
                                    f"{soft_punish_cache} and {max_completion_len}")
        self.max_completion_len, self.soft_punish_cache = int(max_completion_len), int(soft_punish_cache)
        self.__name__ = name
        self.length = TextLength(unit, tokenizer, owner=name)

    def score(self, n: int) -> float:
        """Reward for a length ``n``."""
        start = self.max_completion_len - self.soft_punish_cache
        if n <= start:
            return 0.0
        if n > self.max_completion_len:
            return -1.0
        return (start - n) / self.soft_punish_cache

    def __call__(self, completions: list, prompts: list | None = None, **columns) -> list[float]:
        return [self.score(n) for n in self.length.measure([completion_text(c) for c in completions], columns)]


class GroupLength:
    """Kimi k1.5's length reward, per group of completions of one prompt (open-r1's ``len_reward``).

    For the completions of one prompt in the call (Kimi k1.5, arXiv:2501.12599, §2.3.3), with
    ``min_len``/``max_len`` the shortest and longest of them:
    ``lambda = 0.5 - (len - min_len) / (max_len - min_len)``; a correct completion gets ``lambda``
    (0.5 for the shortest, -0.5 for the longest), a wrong one ``min(0, lambda)``, so being short
    never pays when wrong. All lengths equal (or a group of one) -> 0 for every member.

    Group-aware (``group_aware = True``): groups are the completions with equal ``prompts``
    in one call (without ``prompts``, the whole call is one group); a group split across calls is
    scored part by part. See :mod:`rewards.groups`. Correctness is :func:`rewards.correctness.judge`
    against the gold column, as the ``correctness`` reward decides it.

    Differences from open-r1's ``len_reward``: open-r1 takes min/max over the *whole batch* (every
    prompt together), which makes a completion's reward depend on other questions' answers; here
    it is per prompt, as the paper defines it. open-r1 counts an unparsable gold as correct; here
    that completion scores ``None`` (it still counts for its group's min/max length).

    Args:
        unit, tokenizer: see :class:`TextLength` (open-r1 counts characters).
        column, extractors, answer_tag, timeout_seconds: as :class:`rewards.correctness.Correctness`.
        name: ``__name__`` (open-r1's metric name by default).

    >>> reward = GroupLength()
    >>> reward(["\\\\boxed{18}", "so it is \\\\boxed{18}", "\\\\boxed{17}", "so it is \\\\boxed{17}", "\\\\boxed{5}"],
    ...        prompts=["q1", "q1", "q1", "q1", "q2"], answer=["18"] * 4 + ["5"])
    [0.5, -0.5, 0.0, -0.5, 0.0]
    """

    group_aware = True

    def __init__(self, unit: str = "chars", tokenizer=None, column: str | None = None, extractors=tuple(EXTRACTORS),
                 answer_tag: str = "answer", timeout_seconds: float = 0.5, name: str = "len_reward"):
        self.column, self.answer_tag = column, answer_tag
        self.extractors = check_extractors(extractors)
        if timeout_seconds is not None and timeout_seconds < 0:
            raise RewardConfigError(f"timeout_seconds must be >= 0 (0 = no limit), got {timeout_seconds!r}")
        self.timeout_seconds = float(timeout_seconds or 0)
        self.__name__ = name
        self.length = TextLength(unit, tokenizer, owner=name)

    def __call__(self, completions: list, prompts: list | None = None, **columns) -> list[float | None]:
        golds = gold_column(columns, self.column, self.__name__, len(completions))
        texts = [completion_text(c) for c in completions]
        lengths = self.length.measure(texts, columns)
        scores: list[float | None] = [None] * len(texts)
        for group in group_indices(prompts, len(texts)):
            shortest, longest = min(lengths[i] for i in group), max(lengths[i] for i in group)
            for i in group:
                verdict = judge(texts[i], golds[i], self.extractors, self.answer_tag, self.timeout_seconds)
                if verdict is None:
                    continue
                share = 0.0 if longest == shortest else 0.5 - (lengths[i] - shortest) / (longest - shortest)
                scores[i] = (share if verdict else min(0.0, share)) + 0.0  # + 0.0 turns -0.0 into 0.0
        return scores
