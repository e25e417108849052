"""Reasoning content: placeholder reasoning blocks (a reward-hacking detector) and verified arithmetic steps.

A format reward checks the *layout* ``<reasoning>..</reasoning><answer>..</answer>``, so a policy can
earn it by copying the system prompt's template, ``<reasoning>\\n...\\n</reasoning>``, and guessing a
number (seen in the 20-step GSM8K demo: 196 of 200 answers). This module names that shortcut and
pays for the opposite:

* :func:`reasoning_block` -- the text of the reasoning block, or ``None`` without one;
* :func:`is_placeholder_reasoning` -- the definition of a placeholder reasoning block (below);
* :func:`placeholder_reasoning_rate` -- its share over a list of completions (evaluation reports,
  the training log);
* ``arithmetic_steps`` / ``arithmetic_steps_reward`` (:class:`ArithmeticSteps`) -- a process reward:
  each ``a op b = c`` the reasoning states is recomputed, and only true, grounded steps pay.

**Placeholder reasoning block** (``is_placeholder_reasoning(text)`` is True) when the completion has a
reasoning block (``<reasoning>`` opens it; ``</reasoning>``, else ``<answer>``, else the end of the text
closes it) and that block

1. is empty or whitespace, or
2. is only the prompt's placeholder (``...`` by default; ``…`` and spaced dots too), or
3. holds no number and no operation: no digit, no number word (``one`` .. ``twenty``, ``thirty`` ..
   ``ninety``, ``hundred``, ``thousand``, ``million``, ``half``, ``twice``, ``double``, ``triple``,
   ``dozen``) and no operation (``+ * / × ÷ = %``, a ``-`` between numbers or spaces, or the words
   ``plus``, ``minus``, ``times``, ``multiply``/``multiplied``, ``divide``/``divided``, ``add``,
   ``subtract``, ``sum``, ``product``, ``difference``, ``total``, ``each``, ``per``).

A completion with no ``<reasoning>`` tag at all is *not* a placeholder (it fails the format instead:
the format rate counts it). Rule 3 is deliberately lenient -- a block with one number is real
content -- so the rate measures template copying, not the quality of the reasoning.

Try: ``grpo rewards try --reward arithmetic_steps --completions FILE.jsonl``.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from rewards.errors import RewardConfigError
from rewards.text import completion_text

__all__ = ["reasoning_block", "is_placeholder_reasoning", "placeholder_reasoning_rate", "ArithmeticSteps",
           "arithmetic_steps"]

_DOTS_RE = re.compile(r"[\s.\u2026\u22ef]*")
_NUMBER_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
                 "fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty "
                 "ninety hundred thousand million half twice double triple dozen")
_OPERATION_WORDS = ("plus minus times multiply multiplied multiplying divide divided dividing add added adding "
                    "subtract subtracted subtracting sum product difference total each per")
_CONTENT_RE = re.compile(
    r"\d|[+*/\u00d7\u00f7=%]|(?:^|[\s\d])-(?=[\s\d])"
    r"|\b(?:" + "|".join(_NUMBER_WORDS.split() + _OPERATION_WORDS.split()) + r")s?\b",
    re.IGNORECASE)
# One number as written in a step: optional $, thousands separators, decimals.
_NUM = r"\$?\s*\d+(?:,\d{3})*(?:\.\d+)?"
_OP = r"[-+*/x\u00d7\u00f7\u2212]"
# a op b (op c ...) = result; the operands may not be glued to letters ("x2" in "3x2" is fine: op x)
_STEP_RE = re.compile(rf"(?<![\w.,])({_NUM}(?:\s*{_OP}\s*{_NUM})+)\s*=\s*({_NUM})(?![\d])")
_TOKEN_RE = re.compile(rf"{_NUM}|{_OP}")
_ANY_NUMBER_RE = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")
_MAX_STEPS = 64  # steps looked at per completion: a 1 MB completion costs no more than a long one


def reasoning_block(text: str, reasoning_tag: str = "reasoning") -> str | None:
    """The content of the first reasoning block, or ``None`` when ``text`` has no ``<reasoning>`` tag.

    The block ends at ``</reasoning>``, else at ``<answer>``, else at the end of the text (a completion
    cut at its token budget keeps what it wrote).

    >>> reasoning_block("<reasoning>\\n2+2=4\\n</reasoning>\\n<answer>\\n4\\n</answer>")
    '\\n2+2=4\\n'
    >>> reasoning_block("<reasoning>\\nHalf of 48 is 24") , reasoning_block("4") is None
    ('\\nHalf of 48 is 24', True)
    """
    opening = f"<{reasoning_tag}>"
    start = text.find(opening)
    if start < 0:
        return None
    body = text[start + len(opening):]
    for closing in (f"</{reasoning_tag}>", "<answer>"):
        end = body.find(closing)
        if end >= 0:
            return body[:end]
    return body


def is_placeholder_reasoning(text, reasoning_tag: str = "reasoning", placeholder: str = "...") -> bool:
    """Whether a completion's reasoning block is a placeholder (module docstring: empty, only the
    prompt's ``placeholder``, or no number and no operation). No reasoning tag: ``False``.

    Args:
        text: a completion, standard or conversational (:func:`rewards.text.completion_text`).
        reasoning_tag: the reasoning block's tag name.
        placeholder: the prompt's placeholder string (the course's system prompt: ``...``).

    >>> is_placeholder_reasoning("<reasoning>\\n...\\n</reasoning>\\n<answer>\\n2\\n</answer>")
    True
    >>> is_placeholder_reasoning("<reasoning>\\n6 * 3 = 18\\n</reasoning>\\n<answer>\\n18\\n</answer>")
    False
    >>> is_placeholder_reasoning("<answer>\\n2\\n</answer>")
    False
    """
    block = reasoning_block(completion_text(text), reasoning_tag)
    if block is None:
        return False
    stripped = block.strip()
    if not stripped or stripped == placeholder.strip() or _DOTS_RE.fullmatch(stripped):
        return True
    return _CONTENT_RE.search(stripped) is None


def placeholder_reasoning_rate(completions, reasoning_tag: str = "reasoning", placeholder: str = "...") -> float:
    """The share of ``completions`` with a placeholder reasoning block (:func:`is_placeholder_reasoning`); 0.0 when empty.

    >>> placeholder_reasoning_rate(["<reasoning>\\n...\\n</reasoning>", "<reasoning>\\n1+1=2\\n</reasoning>"])
    0.5
    """
    completions = list(completions)
    flags = [is_placeholder_reasoning(c, reasoning_tag, placeholder) for c in completions]
    return sum(flags) / len(flags) if flags else 0.0


def _number(span: str) -> Decimal | None:
    try:
        return Decimal(span.replace("$", "").replace(",", "").strip())
    except InvalidOperation:
        return None


def _evaluate(expression: str) -> Decimal | None:
    """``a op b op c`` with the usual precedence (``*``, ``/`` before ``+``, ``-``); None on division by zero."""
    tokens = _TOKEN_RE.findall(expression)
    values, ops = [_number(tokens[0])], []
    for op, operand in zip(tokens[1::2], tokens[2::2]):
        value = _number(operand)
        if value is None or values[-1] is None:
            return None
        if op in "*x\u00d7":
            values[-1] *= value
        elif op in "/\u00f7":
            if value == 0:
                return None
            values[-1] /= value
        else:
            values.append(value)
            ops.append(op)
    total = values[0]
    for op, value in zip(ops, values[1:]):
        total = total + value if op == "+" else total - value
    return total


def _agrees(value: Decimal, stated: Decimal) -> bool:
    """``value`` written to ``stated``'s decimals equals ``stated`` (``10/3 = 3.33`` is true), or within 1e-6."""
    exponent = stated.as_tuple().exponent
    places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    try:
        return value.quantize(Decimal(1).scaleb(-places)) == stated or abs(value - stated) <= Decimal("1e-6")
    except InvalidOperation:  # too many digits to quantize
        return False


def arithmetic_steps(text: str, question: str | None = None, reasoning_tag: str = "reasoning") -> tuple[int, int]:
    """``(true_grounded, stated)``: the distinct ``a op b = c`` steps in the reasoning block that are true and
    grounded, and all the steps it states (the first 64).

    A step is ``number (op number)+ = number`` with ``op`` one of ``+ - * / x × ÷``; it is *true* when the
    left side, computed with the usual precedence, written to the right side's decimals, equals the right
    side; *grounded* when one of its operands is a number of ``question`` or the result of an earlier true
    step (``question=None``: every true step is grounded). Repeating a step does not count it twice.

    >>> arithmetic_steps("<reasoning>\\n48/2 = 24\\n48 + 24 = 72\\n2 + 2 = 5\\n</reasoning>", "48 clips in April")
    (2, 3)
    """
    block = reasoning_block(text, reasoning_tag)
    if block is None:
        return 0, 0
    known = None if question is None else {_number(n) for n in _ANY_NUMBER_RE.findall(question)}
    seen, true, stated = set(), 0, 0
    for match in _STEP_RE.finditer(block):
        if stated >= _MAX_STEPS:
            break
        stated += 1
        left, right = match.group(1), _number(match.group(2))
        value = _evaluate(left)
        if value is None or right is None or not _agrees(value, right):
            continue
        operands = {_number(t) for t in _TOKEN_RE.findall(left)[::2]}
        key = (re.sub(r"\s+", "", left), right)
        if key in seen:
            continue
        seen.add(key)
        if known is None or operands & known:
            true += 1
            if known is not None:
                known.add(right)
    return true, stated


def _question_text(prompt) -> str | None:
    """The last user turn of a conversational prompt, or a standard prompt's text."""
    if prompt is None:
        return None
    if isinstance(prompt, list):
        users = [m for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        return completion_text(users[-1]) if users else completion_text(prompt)
    return completion_text(prompt)


class ArithmeticSteps:
    """A process reward: ``value * min(true, target) / target * true / stated`` over the reasoning's ``a op b = c`` steps.

    ``true`` counts the distinct steps that are right and grounded in the question's numbers or an earlier
    step's result (:func:`arithmetic_steps`), ``stated`` every step written; so ``target`` true steps and no
    false one earn ``value``, a false step scales the score down, and a reasoning block without a step
    (``...``, prose) earns 0. The question is read from ``prompts`` (the last user turn); without prompts
    steps are not checked for grounding.

    A verified arithmetic step is a signal a 135M model can earn (GSM8K's solutions state their steps as
    ``48/2 = 24``; the warm-start SFT teaches that form) where final-answer correctness is rare.

    Args:
        target: true steps for full credit (GSM8K solutions: median 3).
        value: the full-credit reward.
        reasoning_tag: the reasoning block's tag name.
        name: ``__name__`` (metric name).

    Raises:
        RewardConfigError: ``target`` < 1.

    >>> reward = ArithmeticSteps()
    >>> reward(["<reasoning>\\n48/2 = 24\\n48+24 = 72\\n72*2 = 144\\n</reasoning>", "<reasoning>\\n...\\n</reasoning>",
    ...         "<reasoning>\\n48/2 = 24\\n24+1 = 26\\n</reasoning>"], prompts=["48 clips"] * 3)
    [0.5, 0.0, 0.08333333333333333]
    """

    def __init__(self, target: int = 3, value: float = 0.5, reasoning_tag: str = "reasoning",
                 name: str = "arithmetic_steps_reward"):
        if not isinstance(target, int) or target < 1:
            raise RewardConfigError(f"target must be an integer >= 1 (true steps for full credit), got {target!r}")
        self.target, self.value, self.reasoning_tag = target, float(value), reasoning_tag
        self.__name__ = name

    def score(self, text: str, question: str | None = None) -> float:
        """Score one completion text against its question (``None``: no grounding check)."""
        true, stated = arithmetic_steps(text, question, self.reasoning_tag)
        if not stated:
            return 0.0
        return self.value * min(true, self.target) / self.target * true / stated

    def __call__(self, completions: list, prompts: list | None = None, **kwargs) -> list[float]:
        questions = [_question_text(p) for p in prompts] if prompts is not None else [None] * len(completions)
        return [self.score(completion_text(c), q) for c, q in zip(completions, questions)]
