"""Correctness: the extracted answer against the gold column, compared with math-verify.

Registry name ``accuracy_reward`` (TRL's and open-r1's name; alias ``correctness``): 2.0 for a correct answer,
0.0 otherwise, as in the Hugging Face course's GSM8K exercise -- but compared as a person would,
so ``18``, ``18.0``, ``$18``, ``18 dollars`` and ``\\boxed{18}`` all match a gold ``18`` and
``1,000`` matches ``1000``; fractions, LaTeX and percentages go through math-verify
(https://github.com/huggingface/Math-Verify).

How a comparison runs (per completion, no batch statistics):

1. the answer span is extracted (:func:`rewards.text.extract_answer`: ``<answer>`` tag, then
   ``\\boxed{}``, ``#### N``, "the answer is N", last number);
2. the gold is reduced the same way (a raw GSM8K solution ``... #### 72`` gives ``72``);
3. two plain numbers compare exactly as decimals (fast path, no sympy);
4. anything else is parsed and verified by math-verify under one time limit per completion
   (``timeout_seconds``, default 0.5 s, fractions allowed) so an adversarial answer
   (``9^{9^{9^{9}}}``) cannot stall a step; a timed-out comparison scores as wrong. A bare
   LaTeX span -- what ``\\boxed{}`` holds: ``x^2+1``, ``3, 5``, ``[0,1)``, ``25\\%`` -- is wrapped
   in ``$...$`` and read with math-verify's ``LatexExtractionConfig`` (:func:`parse_math`);
   without delimiters math-verify misreads it (``3, 5`` as ``5``, ``x^2+1`` as nothing).

The limit is our own ``setitimer``/``SIGALRM`` around the whole parse + verify of one completion
(math-verify's built-in limits are whole seconds *per comparison*, up to five per completion,
so they are switched off). Signals only work in the main thread: called from another thread,
plain numbers still use the fast path and every other answer is compared in a worker process
(:mod:`rewards.verify_worker`) that is killed when the limit expires. Before any parsing, an
answer nested deeper than 10 brackets (``((((5))))`` x 3) scores as wrong: math-verify's cost
grows faster than linearly with nesting, and one long regular-expression or sympy call can
outlast ``SIGALRM``.

Try it: ``grpo rewards try --reward correctness --completions FILE.jsonl --dataset FILE.jsonl``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import signal
import threading
import time
from typing import Any

from rewards.errors import RewardConfigError, RewardError, log_once
from rewards.text import EXTRACTORS, completion_text, extract_answer, extract_boxed, extract_hash, parse_number

logger = logging.getLogger(__name__)

__all__ = ["Correctness", "answers_match", "gold_answer", "judge", "gold_column", "nesting_depth"]

DEFAULT_GOLD_COLUMNS = ("answer", "solution", "ground_truth")
# Deeper bracket nesting than this in an answer scores as wrong before parsing (no real answer
# needs it; math-verify takes seconds on ten levels of braces on a loaded machine).
MAX_NESTING = 10


def gold_answer(gold: Any) -> str | None:
    """The gold answer span: text after ``####`` or inside ``\\boxed{}`` if present, else all of it.

    >>> gold_answer("48 + 24 = 72\\n#### 72")
    '72'
    >>> gold_answer(7)
    '7'
    >>> gold_answer(None) is None
    True
    """
    if gold is None:
        return None
    text = completion_text(gold).strip()
    if not text:
        return None
    return extract_hash(text) or extract_boxed(text) or text


def nesting_depth(span: str) -> int:
    """The deepest nesting of ``()``, ``[]`` and ``{}`` in ``span`` (unbalanced closers are ignored).

    >>> nesting_depth(r"\\frac{\\sqrt{3}}{2}"), nesting_depth("((5))"), nesting_depth("[0,1)")
    (2, 2, 1)
    """
    depth = deepest = 0
    for char in span:
        if char in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]}" and depth:
            depth -= 1
    return deepest


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@functools.lru_cache(maxsize=1)
def _math_verify():
    """Import and warm up math-verify once (about 0.5 s of sympy), outside any time limit."""
    import math_verify

    for name in ("math_verify.parser", "math_verify.grader"):
        logging.getLogger(name).addFilter(_OncePerPrefix())
    math_verify.verify(math_verify.parse("$\\frac{1}{2}$", parsing_timeout=None),
                       math_verify.parse("0.5", parsing_timeout=None), timeout_seconds=None)
    return math_verify


class _Deadline(BaseException):
    """Raised by our SIGALRM handler; a BaseException so math-verify's ``except Exception`` lets it pass."""


@contextlib.contextmanager
def _time_limit(seconds: float | None):
    """Raise :class:`_Deadline` in the main thread after ``seconds``; re-arms any timer it displaced."""
    if not seconds or not _in_main_thread() or not hasattr(signal, "setitimer"):  # no SIGALRM on Windows
        yield
        return

    def on_alarm(signum, frame):
        raise _Deadline

    previous_handler = signal.signal(signal.SIGALRM, on_alarm)
    previous_delay, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    start = time.monotonic()
    try:
        yield
    finally:
        try:
            signal.setitimer(signal.ITIMER_REAL, 0)
        finally:  # even if the alarm fired just now, put the previous handler back
            signal.signal(signal.SIGALRM, previous_handler if previous_handler is not None else signal.SIG_DFL)
            if previous_delay > 0:  # someone else's timer was running: give back what is left of it
                signal.setitimer(signal.ITIMER_REAL, max(previous_delay - (time.monotonic() - start), 1e-3))


class _OncePerPrefix(logging.Filter):
    """Pass each distinct warning of math-verify (first 30 chars, e.g. "Timeout during parsing") once."""

    def __init__(self):
        super().__init__()
        self._seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        if str(record.msg).startswith("Timeout is disabled"):
            return False  # we disable math-verify's limits on purpose and enforce our own
        key = str(record.msg)[:30]
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


# A LaTeX command (``\\frac``) and a run of two or more letters outside one (``dollars``): a span
# with such a word is prose, and is left to math-verify's own search for numbers in text.
_COMMAND_RE = re.compile(r"\\[A-Za-z]+")
_WORD_RE = re.compile(r"[A-Za-z]{2,}")
_DELIMITERS = ("$", "\\(", "\\[")


def is_bare_latex(span: str) -> bool:
    r"""Whether a span is a LaTeX expression without math delimiters (``x^2+1``, ``3, 5``, ``25\%``).

    Such spans are what ``\boxed{}`` holds. math-verify only reads LaTeX reliably inside math
    delimiters (bare, ``x^2+1`` parses to nothing and ``3, 5`` to ``5``), so these are wrapped in
    ``$...$`` first. Spans that already have delimiters, or contain words (``18 dollars``), are not.

    >>> is_bare_latex(r"\dfrac{1}{2}"), is_bare_latex("3, 5"), is_bare_latex("18 dollars"), is_bare_latex("$x$")
    (True, True, False, False)
    """
    if any(d in span for d in _DELIMITERS):
        return False
    return _WORD_RE.search(_COMMAND_RE.sub(" ", span)) is None


def parse_math(span: str) -> list:
    r"""Parse an answer span with math-verify, as its documentation prescribes for each kind of span.

    A bare LaTeX span (:func:`is_bare_latex`) is wrapped in ``$...$`` and read with
    ``LatexExtractionConfig`` only; if that yields no expression it falls back to the plain call.
    Everything else (text, delimited LaTeX) goes to ``parse`` with its default extraction configs
    (LaTeX and plain expressions), which search the text for the answer. No time limit here: the
    caller holds one (:func:`answers_match`).

    >>> parse_math("3, 5"), parse_math("x^2+1"), parse_math("18 dollars")[0]
    ([{3, 5}, '3, 5'], [x**2 + 1, 'x^2+1'], 18)
    """
    mv = _math_verify()
    if is_bare_latex(span):
        wrapped = mv.parse("$" + span.replace("\n", " ") + "$", extraction_config=[mv.LatexExtractionConfig()],
                           parsing_timeout=None)
        if any(not isinstance(x, str) for x in wrapped):
            return wrapped
    return mv.parse(span, parsing_timeout=None)


_MAX_FACTORIAL = 10_000


def _huge_factorial(parsed) -> bool:
    """True when a parsed answer holds ``n!`` with an integer n > 10,000 (``\\boxed{(10^{8})!}``):
    verifying it would evaluate the factorial, minutes of big-integer work that the time limit
    cannot interrupt promptly."""
    for expr in parsed or ():
        factorials = getattr(expr, "atoms", None)
        if factorials is None:
            continue
        import sympy

        for node in expr.atoms(sympy.factorial):
            arg = node.args[0]  # may be an unevaluated power such as 10**8
            try:
                if arg.is_number and bool(arg > _MAX_FACTORIAL):
                    return True
            except TypeError:  # not comparable (complex, symbolic)
                continue
    return False


@functools.lru_cache(maxsize=4096)
def _parse_gold(span: str) -> tuple:
    return tuple(parse_math(span))


def answers_match(predicted: str | None, gold: Any, timeout_seconds: float | None = 0.5,
                  max_answer_chars: int = 1000) -> bool | None:
    """Whether a predicted answer span equals the gold answer.

    Args:
        predicted: the extracted answer span (``None`` or empty -> ``False``).
        gold: gold answer: a number, a span, or a GSM8K solution ending in ``#### N``.
        timeout_seconds: time limit for math-verify's parse + verify of this answer: ``SIGALRM``
            in the main thread, a worker process killed on expiry in any other thread
            (:mod:`rewards.verify_worker`); ``None`` or 0 disables it (not recommended).
        max_answer_chars: longer spans are cut to their last ``max_answer_chars`` characters.

    Returns:
        ``True``/``False``; ``None`` when the gold itself is empty or unparsable (not applicable).

    >>> answers_match("$1,000", "1000"), answers_match("18.0", "#### 18"), answers_match("17", "18")
    (True, True, False)
    >>> answers_match(r"\\frac{1}{2}", "0.5"), answers_match("50%", "0.5")
    (True, True)
    >>> answers_match("3, 5", "$3, 5$"), answers_match("3, 5", "5"), answers_match(r"25\\%", "0.25")
    (True, False, True)
    """
    gold_span = gold_answer(gold)
    if gold_span is None:
        return None
    predicted = (predicted or "")[-max_answer_chars:].strip()
    predicted = extract_boxed(predicted) or predicted  # "<answer>\\boxed{18}</answer>" -> fast path
    gold_number, predicted_number = parse_number(gold_span), parse_number(predicted)
    if gold_number is not None:
        if predicted_number is not None or not predicted:
            return gold_number == predicted_number
    if nesting_depth(predicted) > MAX_NESTING:
        log_once(logger, "nesting", "correctness: an answer nested deeper than %d brackets (%r...); scored as wrong",
                 MAX_NESTING, predicted[:40])
        return False
    if timeout_seconds and not _in_main_thread():  # SIGALRM cannot stop this thread; a process can be killed
        from rewards.verify_worker import compare_in_worker

        return compare_in_worker(predicted, gold_span, timeout_seconds, max_answer_chars)
    mv = _math_verify()
    try:
        with _time_limit(timeout_seconds):
            # The gold is parsed even without a prediction: an unparsable gold is "not applicable".
            gold_parsed = _parse_gold(gold_span[:max_answer_chars])
            if not gold_parsed:
                log_once(logger, "gold", "correctness: gold answer %r could not be parsed; such rows score None",
                         gold_span[:80])
                return None
            if not predicted:
                return False
            predicted_parsed = parse_math(predicted)
            if _huge_factorial(predicted_parsed):
                return False  # sympy would compute it in one long uninterruptible call; never a real answer
            return bool(predicted_parsed) and bool(mv.verify(list(gold_parsed), predicted_parsed,
                                                             timeout_seconds=None))
    except _Deadline:
        log_once(logger, "deadline", "correctness: comparing %r took over %s s; scored as wrong",
                 predicted[:40], timeout_seconds)
        return False
    except (ValueError, TypeError, RecursionError, OverflowError, MemoryError) as err:
        # math-verify catches most errors itself; these escape from sympy's str/compare
        # internals. Score as wrong, report the first one.
        log_once(logger, "verify-" + type(err).__name__, "correctness: math-verify failed (%s: %s); "
                 "scored as wrong", type(err).__name__, str(err)[:120])
        return False


def judge(text: str, gold: Any, extractors=tuple(EXTRACTORS), answer_tag: str = "answer",
          timeout_seconds: float | None = 0.5, max_answer_chars: int = 1000) -> bool | None:
    """Extract the answer from a completion text and compare it to the gold (see :func:`answers_match`).

    >>> judge("<reasoning>6*3</reasoning>\\n<answer>\\n$18\\n</answer>", "18")
    True
    """
    span = extract_answer(text, extractors, answer_tag)
    return answers_match(span, gold, timeout_seconds, max_answer_chars)


def gold_column(columns: dict, column: str | None, reward_name: str, count: int) -> list:
    """The batched gold values for ``count`` completions, from ``column`` or the first default present.

    Raises:
        RewardError: no such column, or its length differs from the number of completions.
    """
    candidates = (column,) if column else DEFAULT_GOLD_COLUMNS
    for name in candidates:
        if name in columns:
            values = columns[name]
            if not isinstance(values, (list, tuple)) or len(values) != count:
                raise RewardError(f"reward {reward_name!r}: column {name!r} must be a list with one value per "
                                  f"completion ({count}), got {type(values).__name__}")
            return list(values)
    available = ", ".join(sorted(k for k in columns if k != "trainer_state")) or "none"
    raise RewardError(f"reward {reward_name!r} needs the gold answer column "
                      f"{' or '.join(repr(c) for c in candidates)} in the dataset (columns passed: {available}); "
                      f"set column=<name>")


def check_extractors(extractors) -> tuple[str, ...]:
    """Validate extractor names for a factory; raises :class:`RewardConfigError` naming the bad one."""
    extractors = (extractors,) if isinstance(extractors, str) else tuple(extractors)
    for name in extractors:
        if name not in EXTRACTORS:
            raise RewardConfigError(f"unknown extractor {name!r}; choose from {', '.join(EXTRACTORS)}")
    if not extractors:
        raise RewardConfigError("extractors must name at least one extractor")
    return extractors


class Correctness:
    """``correct`` if the extracted answer equals the gold answer column, else ``wrong``.

    Args:
        correct: reward for a correct answer (course: 2.0).
        wrong: reward otherwise, including completions without any answer.
        column: dataset column with the gold answer; default the first of ``answer``,
            ``solution``, ``ground_truth`` that is present.
        extractors: extractor names tried in order (see :data:`rewards.text.EXTRACTORS`); use
            ``["answer_tag"]`` to require the ``<answer>`` tag as the course does.
        answer_tag: tag name for the ``answer_tag`` extractor.
        reasoning_end: if set (e.g. ``"</think>"``), look for the answer only after the last
            occurrence of this delimiter, and score completions without it as ``wrong`` -- an
            answer inside the reasoning does not count (TRL's ``reasoning_accuracy_reward``).
        timeout_seconds: time limit for comparing one completion's answer (seconds; any thread).
        max_answer_chars: answer spans are cut to their last N characters.
        name: the reward's ``__name__`` (the logged metric name).

    Returns (when called): one float per completion; ``None`` where the gold is empty/unparsable.

    >>> reward = Correctness()
    >>> reward(["<answer>\\n1,000\\n</answer>", "<answer>\\n999\\n</answer>", ""], answer=["1000"] * 3)
    [2.0, 0.0, 0.0]
    >>> reward([[{"role": "assistant", "content": "so \\\\boxed{18}"}]], answer=["#### 18"])
    [2.0]
    """

    def __init__(self, correct: float = 2.0, wrong: float = 0.0, column: str | None = None,
                 extractors: tuple[str, ...] | list[str] = tuple(EXTRACTORS), answer_tag: str = "answer",
                 reasoning_end: str | None = None, timeout_seconds: float = 0.5, max_answer_chars: int = 1000,
                 name: str = "accuracy_reward"):
        self.correct, self.wrong = float(correct), float(wrong)
        self.column = column
        self.extractors = check_extractors(extractors)
        self.answer_tag = answer_tag
        self.reasoning_end = reasoning_end or None
        if timeout_seconds is not None and timeout_seconds < 0:
            raise RewardConfigError(f"timeout_seconds must be >= 0 (0 = no limit), got {timeout_seconds!r}")
        self.timeout_seconds = float(timeout_seconds or 0)
        self.max_answer_chars = int(max_answer_chars)
        self.__name__ = name

    def __call__(self, completions: list, prompts: list | None = None, **columns) -> list[float | None]:
        golds = gold_column(columns, self.column, self.__name__, len(completions))
        scores: list[float | None] = []
        for completion, gold in zip(completions, golds):
            text = completion_text(completion)
            if self.reasoning_end is not None:
                cut = text.rfind(self.reasoning_end)
                text = text[cut + len(self.reasoning_end):] if cut >= 0 else ""
            verdict = judge(text, gold, self.extractors, self.answer_tag, self.timeout_seconds, self.max_answer_chars)
            scores.append(None if verdict is None else (self.correct if verdict else self.wrong))
        return scores
