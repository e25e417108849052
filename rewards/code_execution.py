"""Code execution: run the completion's program against the row's test cases in the local sandbox.

Registry name ``code_execution`` (``__name__`` ``code_reward``, open-r1's metric name): the
fraction of test cases the program passes, like open-r1's ``code_reward`` but run locally
(:mod:`rewards.sandbox`: a child process with time, memory, CPU, output and file-size limits, no
network, and -- with bubblewrap -- its own PID namespace and filesystem view) instead of in a
remote E2B sandbox. The program never runs in the trainer's process, and never runs unisolated
(as root, say) unless ``allow_unisolated=True``.

The program is the last fenced ```` ```python ```` block of the completion
(:func:`rewards.text.extract_code_block`). Test cases come from a dataset column
(``test_cases`` by default), one value per row, in this schema::

    [{"input": "2 3\\n", "output": "5\\n"}, ...]      # stdin text, expected stdout text

also accepted as a JSON string of that list, or as open-r1's ``verification_info`` dict
``{"language": "python", "test_cases": [...]}`` (``column="verification_info"``). A case passes
when the program exits with status 0 within the limits and its stdout equals ``output`` line by
line, each line stripped, leading/trailing blank lines ignored (open-r1 compares stripped lines
too, but only as many as the shorter side has; here the line counts must match).

Scores: passed / total for the row; 0.0 when the completion has no ```` ```python ```` block (the
model was asked for a program and gave none); ``None`` when the row has no test cases or
``verification_info`` names another language (not applicable, e.g. a math row in a mixed set).

Cost: one interpreter start (about 30-80 ms here) per test case, ``max_workers`` at a time; the
worst case per call is ``completions x cases x timeout_seconds / max_workers``.

Try: ``grpo rewards try --reward code_execution --completions FILE.jsonl`` (a ``test_cases`` field per line).
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rewards.errors import RewardConfigError, RewardError, log_once
from rewards.sandbox import run_python
from rewards.text import completion_text, extract_code_block

logger = logging.getLogger(__name__)

__all__ = ["CodeExecution", "read_test_cases", "outputs_match"]


def read_test_cases(value: Any) -> list[dict] | None:
    """The ``[{"input", "output"}]`` list of one row, or ``None`` when the row has none (or not for Python).

    >>> read_test_cases('[{"input": "1", "output": "2"}]')
    [{'input': '1', 'output': '2'}]
    >>> read_test_cases({"language": "cpp", "test_cases": [{"input": "", "output": ""}]}) is None
    True
    """
    try:
        return _read_test_cases(value)
    except RecursionError:  # "[" * 100000, or a list nested that deep: a bad row, not a failed step
        log_once(logger, "nested", "code_execution: a test_cases value is nested too deeply to read; row scored None")
        return None


def _read_test_cases(value: Any) -> list[dict] | None:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            log_once(logger, "json", "code_execution: a test_cases value is not JSON (%r...); row scored None",
                     value[:40])
            return None
    if isinstance(value, dict):
        if str(value.get("language", "python")).lower() not in ("python", "python3", "py"):
            return None
        value = value.get("test_cases")
    if not isinstance(value, (list, tuple)) or not value:
        return None
    cases = [c for c in value if isinstance(c, dict) and "output" in c]
    if len(cases) != len(value):
        log_once(logger, "schema", "code_execution: test cases must be {'input': str, 'output': str}; got %r",
                 _excerpt(value))
        return None
    return [{"input": str(c.get("input") or ""), "output": str(c["output"])} for c in cases]


def _excerpt(value: Any) -> str:
    try:
        return str(value)[:80]
    except RecursionError:
        return f"<a {type(value).__name__} nested too deeply to print>"


def outputs_match(actual: str, expected: str) -> bool:
    """Stdout equals the expected output, line by line with each line stripped.

    >>> outputs_match("5  \\n\\n", "5"), outputs_match("1\\n2", "1"), outputs_match(" a\\r\\nb", "a\\nb")
    (True, False, True)
    """
    return [line.strip() for line in actual.strip().splitlines()] == \
        [line.strip() for line in expected.strip().splitlines()]


class CodeExecution:
    """Fraction of the row's test cases that the completion's last ```` ```python ```` block passes.

    Args:
        column: dataset column with the test cases (schema in the module docstring).
        languages: fence tags that mark the program (``python``, ``py``, ``python3``).
        timeout_seconds: wall-clock limit per test case.
        memory_mb: address-space limit per run, MiB.
        max_output_bytes: stdout/stderr cap per run; more kills the run (the case fails).
        max_workers: test cases run at the same time (threads, each waiting on one child process).
        python: interpreter for the programs (default: the trainer's).
        allow_unisolated: run programs even where no isolation layer works on this machine
            (:func:`rewards.sandbox.sandbox_features`: no bubblewrap, no namespaces, no way to run
            them as a user other than root); they then run as the trainer's user with only the
            process limits. Off by default: the first call raises
            :class:`rewards.sandbox.SandboxUnavailable` saying what to install.
        name: ``__name__`` (open-r1's metric name by default).

    Returns (when called): one float in [0, 1] per completion, ``None`` for rows without tests.

    Raises (when called): :class:`rewards.sandbox.SandboxUnavailable` (a ``RewardConfigError``)
    where no isolation layer works and ``allow_unisolated`` is False.

    Example (not run as a doctest: where no isolation layer works it raises instead;
    ``tests/test_rewards_code.py`` runs it):

    >>> reward = CodeExecution(timeout_seconds=2)
    >>> tests = [{"input": "2 3", "output": "5"}, {"input": "10 -4", "output": "6"}]
    >>> reward(["```python\\nprint(sum(map(int, input().split())))\\n```", "```python\\nprint(5)\\n```", "no code"],
    ...        test_cases=[tests] * 3)  # doctest: +SKIP
    [1.0, 0.5, 0.0]
    """

    def __init__(self, column: str = "test_cases", languages=("python", "py", "python3"),
                 timeout_seconds: float = 2.0, memory_mb: int = 512, max_output_bytes: int = 65536,
                 max_workers: int = 2, python: str | None = None, allow_unisolated: bool = False,
                 name: str = "code_reward"):
        if not timeout_seconds or timeout_seconds <= 0:
            raise RewardConfigError(f"timeout_seconds must be > 0, got {timeout_seconds!r}")
        if memory_mb < 64:
            raise RewardConfigError(f"memory_mb must be >= 64 (Python itself needs some), got {memory_mb!r}")
        if max_workers < 1 or max_output_bytes < 1:
            raise RewardConfigError("max_workers and max_output_bytes must be >= 1")
        self.column = column
        self.languages = (languages,) if isinstance(languages, str) else tuple(languages)
        self.timeout_seconds, self.memory_mb = float(timeout_seconds), int(memory_mb)
        self.max_output_bytes, self.max_workers = int(max_output_bytes), int(max_workers)
        self.python = python
        self.allow_unisolated = bool(allow_unisolated)
        self.__name__ = name

    def run_case(self, code: str, case: dict) -> bool:
        """Run one test case; ``True`` if it passes. Never raises."""
        try:
            result = run_python(code, case["input"], timeout_seconds=self.timeout_seconds, memory_mb=self.memory_mb,
                                max_output_bytes=self.max_output_bytes, python=self.python,
                                allow_unisolated=self.allow_unisolated)
        except OSError as err:  # could not start a process at all (missing interpreter, no pids left)
            log_once(logger, "start", "code_execution: cannot start the sandbox (%s); such cases fail", err)
            return False
        return result.ok and outputs_match(result.stdout, case["output"])

    def __call__(self, completions: list, prompts: list | None = None, **columns) -> list[float | None]:
        rows = columns.get(self.column)
        if not isinstance(rows, (list, tuple)) or len(rows) != len(completions):
            available = ", ".join(sorted(k for k in columns if k != "trainer_state")) or "none"
            raise RewardError(f"reward {self.__name__!r} needs the column {self.column!r} with one list of test "
                              f"cases per completion ({len(completions)}); columns passed: {available}; "
                              f"set column=<name>")
        scores: list[float | None] = [None] * len(completions)
        jobs = []  # (completion index, program, test case)
        totals: dict[int, int] = {}
        for i, (completion, row) in enumerate(zip(completions, rows)):
            cases = read_test_cases(row)
            if cases is None:
                continue
            scores[i] = 0.0  # a row with tests but no program scores 0
            code = extract_code_block(completion_text(completion), self.languages)
            if code is not None and code.strip():
                totals[i] = len(cases)
                jobs.extend((i, code, case) for case in cases)
        if jobs:
            with ThreadPoolExecutor(max_workers=min(self.max_workers, len(jobs))) as pool:
                outcomes = list(pool.map(lambda job: self.run_case(job[1], job[2]), jobs))
            passed = dict.fromkeys(totals, 0)
            for (i, _, _), ok in zip(jobs, outcomes):
                passed[i] += ok
            for i, total in totals.items():
                scores[i] = passed[i] / total
        return scores
