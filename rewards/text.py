"""Completion text and answer extraction shared by every reward.

Each extractor takes the completion text and returns the answer *span* as a string, or
``None`` when its marker is absent; none of them raises, whatever the input (empty, 1 MB,
binary junk, unbalanced braces). :func:`extract_answer` chains them in a fixed priority order.
Numbers are compared elsewhere (:mod:`rewards.correctness`); :func:`parse_number` only reads a
plain written number such as ``$1,000.50``.

Run the examples: ``pytest --doctest-modules rewards/text.py``.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = [
    "completion_text",
    "extract_tag",
    "extract_boxed",
    "extract_hash",
    "extract_answer_phrase",
    "extract_last_number",
    "extract_answer",
    "parse_number",
    "extract_code_block",
    "EXTRACTORS",
]

# A written number: optional sign, thousands separators or plain digits, optional decimals.
_NUMBER = r"[-+\u2212]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
_NUMBER_RE = re.compile(_NUMBER)
# "The answer is 18", "Final answer: $18", "answer = 3/4" (case-insensitive).
_PHRASE_RE = re.compile(
    r"(?:final answer|the answer|answer)\s*(?:is|:|=|would be|will be)\s*[:=]?\s*"
    r"(\\?\$?\s*" + _NUMBER + r"(?:\s*/\s*" + _NUMBER + r")?\s*%?)",
    re.IGNORECASE,
)
_PLAIN_NUMBER_RE = re.compile(r"\s*(?:\\?\$)?\s*(" + _NUMBER + r")\.?\s*")
# Search only the tail of huge texts for the last number / phrase: answers come last, and this
# keeps a 1 MB completion from costing more than a normal one.
_TAIL_CHARS = 20_000


def completion_text(completion: Any) -> str:
    """The text of one completion, standard or conversational.

    Args:
        completion: a ``str`` (standard format), a list of ``{"role", "content"}`` messages
            (conversational format; the contents are joined with newlines), a single message
            dict, ``bytes`` (decoded as UTF-8 with replacement) or ``None`` (-> ``""``).
            Message contents may themselves be lists of ``{"type": "text", "text": ...}`` parts.

    Returns:
        The text; never raises (anything else is converted with ``str``).

    >>> completion_text("<answer>4</answer>")
    '<answer>4</answer>'
    >>> completion_text([{"role": "assistant", "content": "<answer>4</answer>"}])
    '<answer>4</answer>'
    >>> completion_text(None)
    ''
    """
    if isinstance(completion, str):
        return completion
    if completion is None:
        return ""
    if isinstance(completion, (bytes, bytearray)):
        return bytes(completion).decode("utf-8", errors="replace")
    if isinstance(completion, dict):
        return _content_text(completion.get("content", completion.get("text", "")))
    if isinstance(completion, (list, tuple)):
        return "\n".join(completion_text(part) for part in completion)
    try:
        return str(completion)
    except Exception:  # a user object whose __str__ raises: score it as empty, never crash
        return ""


def _content_text(content: Any) -> str:
    if isinstance(content, list):  # multimodal parts: keep the text ones
        return "".join(p.get("text", "") if isinstance(p, dict) else completion_text(p) for p in content)
    return completion_text(content)


def extract_tag(text: str, tag: str = "answer") -> str | None:
    """Content of the last ``<tag>...</tag>``, stripped; ``None`` without an opening tag.

    An opening tag without its closing tag (a generation cut at ``max_completion_length``)
    yields everything after it, as the course's ``extract_xml_answer`` does.

    >>> extract_tag("<reasoning>2+2</reasoning>\\n<answer>\\n4\\n</answer>")
    '4'
    >>> extract_tag("<answer>1</answer> then <answer>2")
    '2'
    >>> extract_tag("no tags") is None
    True
    """
    opening = f"<{tag}>"
    start = text.rfind(opening)
    if start < 0:
        return None
    body = text[start + len(opening):]
    end = body.find(f"</{tag}>")
    return (body if end < 0 else body[:end]).strip()


def extract_boxed(text: str) -> str | None:
    r"""Content of the last balanced ``\boxed{...}`` (or ``\fbox{...}``); ``None`` if absent/unbalanced.

    >>> extract_boxed(r"so $\boxed{\frac{1}{2}}$.")
    '\\frac{1}{2}'
    >>> extract_boxed(r"\boxed{3") is None
    True
    """
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth = 1
    for j in range(i, len(text)):
        ch = text[j]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[i:j].strip()
    return None


def extract_hash(text: str) -> str | None:
    """The rest of the line after the last ``####`` (GSM8K's answer marker); ``None`` if absent.

    >>> extract_hash("48 + 24 = 72\\n#### 72")
    '72'
    >>> extract_hash("####") is None
    True
    """
    start = text.rfind("####")
    if start < 0:
        return None
    line = text[start + 4:].lstrip().split("\n", 1)[0].strip()
    return line or None


def extract_answer_phrase(text: str) -> str | None:
    """The number after the last "the answer is" / "final answer:" / "answer =" phrase.

    >>> extract_answer_phrase("So the answer is $1,250.")
    '$1,250'
    >>> extract_answer_phrase("Final Answer: 3/4")
    '3/4'
    >>> extract_answer_phrase("I do not know") is None
    True
    """
    tail = text[-_TAIL_CHARS:]
    last = None
    for match in _PHRASE_RE.finditer(tail):
        last = match
    return last.group(1).strip() if last else None


def extract_last_number(text: str) -> str | None:
    """The last written number in the text (sign, thousands separators and decimals kept).

    >>> extract_last_number("3 apples cost $1,234.50 in total.")
    '1,234.50'
    >>> extract_last_number("no digits") is None
    True
    """
    last = None
    for match in _NUMBER_RE.finditer(text[-_TAIL_CHARS:]):
        last = match
    return last.group(0) if last else None


EXTRACTORS = {
    "answer_tag": extract_tag,
    "boxed": extract_boxed,
    "hash": extract_hash,
    "phrase": extract_answer_phrase,
    "last_number": extract_last_number,
}
"""Extractor name -> function, in the priority order :func:`extract_answer` uses by default."""


def extract_answer(text: str, order: tuple[str, ...] | list[str] = tuple(EXTRACTORS),
                   answer_tag: str = "answer") -> str | None:
    r"""The answer span found by the first extractor in ``order`` that finds one.

    An ``<answer>`` tag wins when present, even if its content is wrong: a model that uses the
    tag is judged on it, not on some other number in its reasoning.

    Args:
        text: completion text.
        order: extractor names from :data:`EXTRACTORS`.
        answer_tag: tag name used by the ``answer_tag`` extractor.

    Returns:
        The span, or ``None`` when no extractor finds anything.

    Raises:
        KeyError: an unknown extractor name (a configuration error, checked by the factories).

    >>> extract_answer("<answer>\n18\n</answer>")
    '18'
    >>> extract_answer(r"... so \boxed{18}")
    '18'
    >>> extract_answer("Total: 3 + 15 = 18 apples")
    '18'
    """
    for name in order:
        if name == "answer_tag":
            span = extract_tag(text, answer_tag)
        else:
            span = EXTRACTORS[name](text)
        if span is not None:
            return span
    return None


def parse_number(span: str | None) -> Decimal | None:
    """A plain written number as a ``Decimal``: ``18``, ``-3``, ``18.0``, ``$1,000``, ``\\$5.``.

    Anything else (fractions, percentages, units, words, LaTeX) gives ``None``; those go to
    math-verify. Used for the fast path of correctness and by the numeric-type rewards.

    >>> parse_number("$1,000.50")
    Decimal('1000.50')
    >>> parse_number("18 apples") is None
    True
    """
    if span is None or len(span) > 100:
        return None
    match = _PLAIN_NUMBER_RE.fullmatch(span)
    if not match:
        return None
    try:
        return Decimal(match.group(1).replace(",", "").replace("\u2212", "-"))
    except InvalidOperation:  # unreachable for the regex above; keep the never-raise promise
        return None


def extract_code_block(text: str, languages: tuple[str, ...] | list[str] = ("python", "py", "python3")) -> str | None:
    """Body of the last complete fenced code block whose language tag is in ``languages``.

    Fences pair up in order, as Markdown reads them (an opening ```` ```tag ```` line, then the
    next ```` ``` ````); an unclosed block is ignored. The tag is compared case-insensitively, on
    its first word. Linear time, whatever the text. open-r1's ``extract_code`` takes the last
    ```` ```python ```` block the same way.

    >>> extract_code_block("Try:\\n```python\\nx = 1\\n```\\nthen\\n```py\\nprint(2)\\n```\\n```text\\n2\\n```")
    'print(2)\\n'
    >>> extract_code_block("```javascript\\nf()\\n```") is None, extract_code_block("```python\\nunclosed") is None
    (True, True)
    """
    wanted = {language.lower() for language in languages}
    found, position = None, 0
    while True:
        start = text.find("```", position)
        if start < 0:
            return found
        line_end = text.find("\n", start + 3)
        if line_end < 0:
            return found
        end = text.find("```", line_end + 1)
        if end < 0:
            return found
        tag = text[start + 3:line_end].strip().lower().split()
        if tag and tag[0] in wanted:
            found = text[line_end + 1:end]
        position = end + 3
