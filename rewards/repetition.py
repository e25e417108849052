"""N-gram repetition penalty (registry name ``repetition``, ``__name__`` ``repetition_penalty_reward``).

Score = ``max_penalty * (1 - unique n-grams / total n-grams)`` over lower-cased tokens: 0 for
text without repeats, approaching ``max_penalty`` for a loop. Same definition as Appendix C.2
of "Demystifying Long Chain-of-Thought Reasoning in LLMs" (arXiv:2502.03373), which open-r1
uses; texts shorter than one n-gram score 0.

Tokens (``tokenizer``):

* ``"whitespace"`` (default, open-r1's): whitespace-separated words. Text without spaces
  (Chinese, Japanese) is then one "word" per sentence, and a loop inside it goes unseen;
* ``"chars"``: each CJK ideograph, kana, hangul syllable or full-width/CJK punctuation mark is a
  token; runs of other non-space characters stay words (so mixed Chinese/English text works);
* ``"jieba"``: Chinese word segmentation with the ``jieba`` package (``pip install
  grpo-toolkit[rewards-cjk]``); when it is not installed, ``"chars"`` is used and that is logged
  once, so a run never fails for want of it.

Characters carry less than words: with ``"chars"`` pick a larger ``ngram_size`` (5 to 10) than
the 3 words open-r1 uses for English.

Try: ``grpo rewards try --reward repetition --param ngram_size=2 --completions FILE.jsonl``.
"""

from __future__ import annotations

import functools
import logging
import re

from rewards.errors import RewardConfigError, log_once
from rewards.text import completion_text

logger = logging.getLogger(__name__)

__all__ = ["RepetitionPenalty", "tokenize", "TOKENIZERS"]

TOKENIZERS = ("whitespace", "chars", "jieba")
# Scripts written without spaces between words, plus CJK and full-width punctuation: one token
# per character. Hiragana/katakana, CJK ideographs (+ extension A, compatibility, extension B..),
# hangul syllables, CJK symbols, full-width forms.
_ONE_CHAR = ("\u3000-\u303f\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
             "\uff00-\uffef\U00020000-\U0003134f")
_CHAR_TOKEN_RE = re.compile(rf"[{_ONE_CHAR}]|[^\s{_ONE_CHAR}]+")


@functools.lru_cache(maxsize=1)
def _jieba():
    """The ``jieba`` module, quietened, or ``None`` when it is not installed."""
    try:
        import jieba
    except ImportError:
        return None
    jieba.setLogLevel(logging.WARNING)  # it announces its dictionary load on stderr otherwise
    return jieba


def tokenize(text: str, tokenizer: str = "whitespace") -> list[str]:
    """Lower-cased tokens of ``text`` for the n-gram count (see the module docstring for the modes).

    >>> tokenize("The cat. the CAT.")
    ['the', 'cat.', 'the', 'cat.']
    >>> tokenize("我喜欢猫 and dogs。", "chars")
    ['我', '喜', '欢', '猫', 'and', 'dogs', '。']
    """
    text = text.lower()
    if tokenizer == "whitespace":
        return text.split()
    if tokenizer == "jieba":
        jieba = _jieba()
        if jieba is not None:
            return [t for t in jieba.lcut(text) if not t.isspace() and t]
        log_once(logger, "no-jieba", "repetition: tokenizer='jieba' but the jieba package is not installed "
                 "(pip install jieba); counting characters instead")
    return _CHAR_TOKEN_RE.findall(text)


class RepetitionPenalty:
    """Penalise repeated n-grams of words (or of characters / jieba words, for text without spaces).

    Args:
        ngram_size: tokens per n-gram (>= 1).
        max_penalty: score of a text that is one n-gram repeated forever (<= 0).
        tokenizer: ``"whitespace"`` (open-r1), ``"chars"`` or ``"jieba"`` (falls back to
            ``"chars"`` without the package); see the module docstring.
        name: ``__name__``.

    Raises:
        RewardConfigError: ``max_penalty`` > 0, ``ngram_size`` < 1 or an unknown ``tokenizer``
            (also a ``ValueError``).

    >>> RepetitionPenalty(ngram_size=2)(["this is a test", "this this this this this"])
    [0.0, -0.75]
    >>> loop = "我们再试一次。" * 4
    >>> RepetitionPenalty(ngram_size=2)([loop]), RepetitionPenalty(ngram_size=2, tokenizer="chars")([loop])
    ([0.0], [-0.7407407407407407])
    """

    def __init__(self, ngram_size: int = 3, max_penalty: float = -1.0, tokenizer: str = "whitespace",
                 name: str = "repetition_penalty_reward"):
        if max_penalty > 0:
            raise RewardConfigError(f"max_penalty {max_penalty} should not be positive")
        if int(ngram_size) != ngram_size or ngram_size < 1:
            raise RewardConfigError(f"ngram_size must be an integer >= 1, got {ngram_size!r}")
        if tokenizer not in TOKENIZERS:
            raise RewardConfigError(f"tokenizer must be one of {', '.join(TOKENIZERS)}, got {tokenizer!r}")
        self.ngram_size, self.max_penalty, self.tokenizer = int(ngram_size), float(max_penalty), tokenizer
        self.__name__ = name

    def score(self, text: str) -> float:
        """Score one completion text."""
        words = tokenize(text, self.tokenizer)
        total = len(words) - self.ngram_size + 1
        if total <= 0:
            return 0.0
        unique = len(set(zip(*(words[i:] for i in range(self.ngram_size)))))
        return (1.0 - unique / total) * self.max_penalty + 0.0  # + 0.0 turns -0.0 into 0.0

    def __call__(self, completions: list, prompts: list | None = None, **kwargs) -> list[float]:
        return [self.score(completion_text(c)) for c in completions]
