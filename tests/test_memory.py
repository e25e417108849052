"""Tests for grpo/common/memory.py: per-stage peak resident memory in memory.json.

Run: pytest tests/test_memory.py   (a second)
"""

import json
import time

import pytest

from grpo.common.memory import MemoryLog


def test_stage_records_its_peak_start_and_duration_and_survives_a_crash(tmp_path):
    path = tmp_path / "memory.json"
    log = MemoryLog(path, interval=0.01)
    with log.stage("allocate"):
        block = bytearray(300 * 2**20)  # 300 MB, touched (zero-filled), freed before the stage ends
        block[::4096] = b"\x01" * len(block[::4096])
        time.sleep(0.2)  # held a while (the sampler thread needs the GIL, which the fill above keeps)
        del block
    with pytest.raises(RuntimeError), log.stage("crash"):
        raise RuntimeError("boom")
    written = json.loads(path.read_text())
    stage = written["stages"]["allocate"]
    assert stage["peak_rss_mb"] - stage["start_rss_mb"] >= 250  # seen by the sampler or the final reading
    assert stage["seconds"] >= 0 and "crash" in written["stages"]
    assert written["peak_rss_mb"] == max(s["peak_rss_mb"] for s in written["stages"].values())
    assert set(MemoryLog(path).stages) == {"allocate", "crash"}  # a resumed run keeps what it measured
