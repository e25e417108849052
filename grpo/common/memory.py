"""Peak resident memory per stage of a run, written to ``<output_dir>/memory.json``.

A 135M-parameter model needs a few GB, yet one run peaked at 17.9 GB of a 24 GB machine: memory
is a result, like time. :class:`MemoryLog` samples this process's resident set size (psutil)
every ``interval`` seconds on a daemon thread while a stage runs, and records each stage's peak
and duration; ``ru_maxrss`` alone gives only the process-wide peak, not which stage reached it.

    with memory_log.stage("warm-start"):
        ...
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from pathlib import Path

__all__ = ["MemoryLog", "release_memory", "rss_bytes"]


def rss_bytes() -> int:
    """Resident set size of this process now, in bytes."""
    import psutil

    return psutil.Process().memory_info().rss


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc ``malloc_trim``), so one stage's
    peak (e.g. the SFT trainer's logits) does not stay resident through the next."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        pass


class MemoryLog:
    """Per-stage peak RSS (MB) and wall time (s), kept in ``path`` (JSON, rewritten after each stage).

    Args:
        path: where to write (None: keep in memory only, e.g. on non-main processes).
        interval: sampling period in seconds.
    """

    def __init__(self, path: Path | None, interval: float = 0.25):
        self.path, self.interval = path, interval
        self.stages: dict[str, dict] = {}
        if path is not None and Path(path).exists():  # a resumed run keeps the stages it already measured
            try:
                self.stages = json.loads(Path(path).read_text()).get("stages", {})
            except (OSError, ValueError):
                self.stages = {}

    @contextlib.contextmanager
    def stage(self, name: str):
        """Measure the enclosed block as stage ``name`` (written even when the block raises): its peak, the
        resident size it started from (what earlier stages left: models, caches) and its duration."""
        release_memory()  # the start figure counts what is kept, not garbage or free heap pages
        peak = [rss_bytes()]
        start_rss = peak[0]
        done = threading.Event()

        def sample():
            while not done.wait(self.interval):
                peak[0] = max(peak[0], rss_bytes())

        thread = threading.Thread(target=sample, daemon=True, name=f"memory:{name}")
        start = time.perf_counter()
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()
            peak[0] = max(peak[0], rss_bytes())
            release_memory()
            self.stages[name] = {"peak_rss_mb": round(peak[0] / 2**20, 1), "start_rss_mb": round(start_rss / 2**20, 1),
                                 "seconds": round(time.perf_counter() - start, 1)}
            self.write()

    @property
    def peak_mb(self) -> float:
        """The largest stage peak so far (MB)."""
        return max((s["peak_rss_mb"] for s in self.stages.values()), default=0.0)

    def write(self) -> None:
        if self.path is None:
            return
        from grpo.common.checkpoint_io import write_json_atomic

        write_json_atomic(Path(self.path), {"peak_rss_mb": self.peak_mb, "stages": self.stages})
