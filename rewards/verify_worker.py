"""A time limit for math-verify that also works off the main thread: a worker process, killed on expiry.

``SIGALRM`` (what :func:`rewards.correctness.answers_match` uses in the main thread) cannot
interrupt another thread, and a thread cannot be stopped at all; a process can. Off the main
thread each comparison is sent to one long-lived worker (``python -I -c``, a plain child
process: no ``multiprocessing``, so the trainer's ``__main__`` is never re-imported), which
imports math-verify once; when an answer takes longer than the limit the worker is killed, the
answer scores as wrong, and a fresh worker starts at once (about a second of sympy import,
outside any comparison's limit).

The worker is shared by the threads of a process and serves one comparison at a time (a lock);
each comparison's limit counts from when the worker receives it.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import select
import subprocess
import sys
import threading

from rewards.errors import log_once

logger = logging.getLogger(__name__)

_STARTUP_SECONDS = 120.0  # importing sympy on a loaded machine
_SERVE = r"""
import json, sys
from rewards.correctness import _math_verify, answers_match
_math_verify()
sys.stdout.write("ready\n"); sys.stdout.flush()
for line in sys.stdin:
    predicted, gold, max_chars = json.loads(line)
    sys.stdout.write(json.dumps(answers_match(predicted, gold, None, max_chars)) + "\n"); sys.stdout.flush()
"""


class _Worker:
    def __init__(self):
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._ready = False

    def _start(self) -> None:
        package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH"))
                                                            if p)}
        # -I would drop PYTHONPATH; -s -E are not used either, so the worker imports what we import.
        self._process = subprocess.Popen([sys.executable, "-c", _SERVE], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
                                         bufsize=1)
        self._ready = False

    def _stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            for pipe in (self._process.stdin, self._process.stdout):
                pipe.close()
        self._process = None

    def _readline(self, seconds: float) -> str | None:
        """One line from the worker within ``seconds``, or None (timed out or the worker died)."""
        stdout = self._process.stdout
        ready, _, _ = select.select([stdout], [], [], seconds)
        if not ready:
            return None
        line = stdout.readline()
        return line or None

    def compare(self, predicted: str, gold: str, seconds: float, max_answer_chars: int) -> bool | None:
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._stop()
                self._start()
            if not self._ready:
                if self._readline(_STARTUP_SECONDS) != "ready\n":
                    self._stop()
                    raise OSError("the math-verify worker process did not start")
                self._ready = True
            try:
                self._process.stdin.write(json.dumps([predicted, gold, max_answer_chars]) + "\n")
                self._process.stdin.flush()
            except OSError:
                self._stop()
                raise
            line = self._readline(seconds)
            if line is None:  # over the limit (or died): kill it, start the next one now
                self._stop()
                self._start()
                return False
            return json.loads(line)

    def close(self) -> None:
        with self._lock:
            self._stop()

    def forget(self) -> None:
        """In a forked child: the parent's worker and lock are not ours; start afresh on first use."""
        self._lock = threading.Lock()
        self._process = None
        self._ready = False


_worker = _Worker()
atexit.register(_worker.close)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_worker.forget)


def compare_in_worker(predicted: str, gold: str, seconds: float, max_answer_chars: int) -> bool | None:
    """:func:`rewards.correctness.answers_match` of ``predicted`` and ``gold`` in the worker, within ``seconds``.

    Returns:
        The verdict; ``False`` when the limit expired (the worker is replaced) or the worker
        could not start (logged once).
    """
    try:
        return _worker.compare(predicted, gold, seconds, max_answer_chars)
    except (OSError, ValueError) as err:
        log_once(logger, "worker", "correctness: the math-verify worker failed (%s); such answers score as wrong", err)
        return False
