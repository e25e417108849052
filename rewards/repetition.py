"""N-gram repetition penalty (registry name ``repetition``, ``__name__`` ``repetition_penalty_reward``).

Score = ``max_penalty * (1 - unique n-grams / total n-grams)`` over lower-cased
whitespace-separated words: 0 for text without repeats, approaching ``max_penalty`` for a loop.
Same definition as Appendix C.2 of "Demystifying Long Chain-of-Thought Reasoning in LLMs"
(arXiv:2502.03373), which open-r1 uses; texts shorter than one n-gram score 0.

Try: ``grpo rewards try --reward repetition --param ngram_size=2 --completions FILE.jsonl``.
"""

from __future__ import annotations

from rewards.errors import RewardConfigError
from rewards.text import completion_text

__all__ = ["RepetitionPenalty"]


class RepetitionPenalty:
    """Penalise repeated word n-grams.

    Args:
        ngram_size: words per n-gram (>= 1).
        max_penalty: score of a text that is one n-gram repeated forever (<= 0).
        name: ``__name__``.

    Raises:
        RewardConfigError: ``max_penalty`` > 0 or ``ngram_size`` < 1 (also a ``ValueError``).

    >>> RepetitionPenalty(ngram_size=2)(["this is a test", "this this this this this"])
    [0.0, -0.75]
    """

    def __init__(self, ngram_size: int = 3, max_penalty: float = -1.0, name: str = "repetition_penalty_reward"):
        if max_penalty > 0:
            raise RewardConfigError(f"max_penalty {max_penalty} should not be positive")
        if int(ngram_size) != ngram_size or ngram_size < 1:
            raise RewardConfigError(f"ngram_size must be an integer >= 1, got {ngram_size!r}")
        self.ngram_size, self.max_penalty = int(ngram_size), float(max_penalty)
        self.__name__ = name

    def score(self, text: str) -> float:
        """Score one completion text."""
        words = text.lower().split()
        total = len(words) - self.ngram_size + 1
        if total <= 0:
            return 0.0
        unique = len(set(zip(*(words[i:] for i in range(self.ngram_size)))))
        return (1.0 - unique / total) * self.max_penalty + 0.0  # + 0.0 turns -0.0 into 0.0

    def __call__(self, completions: list, prompts: list | None = None, **kwargs) -> list[float]:
        return [self.score(completion_text(c)) for c in completions]
