"""Ctrl-C during ``grpo train`` (slow): exit code 130, the last checkpoint intact, weights saved.

Run: ``nice -n 10 pytest -q -m slow tests/test_interrupt.py``. Starts a real ``grpo train``
process with tiny settings and ``save_steps 1``, waits for TRL's ``checkpoint-1``, sends SIGINT.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def _complete(checkpoint: Path) -> bool:
    """TRL writes trainer_state.json last among the files we need."""
    return (checkpoint / "adapter_model.safetensors").exists() and (checkpoint / "trainer_state.json").exists()


def test_sigint_keeps_checkpoint_and_exits_130(tmp_path):
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "grpo.cli", "train", "--backend", "trl",  # TRL's Ctrl-C path (native: test_native)
            "--output_dir", str(out), "--dataset_name", "synthetic:gsm8k:40", "--eval_size", "0",
            "--warm_start", "false", "--max_steps", "200", "--num_generations", "2",
            "--per_device_train_batch_size", "2", "--max_completion_length", "8", "--logging_steps", "1",
            "--save_steps", "1", "--report_to", "none", "--disable_tqdm", "true", "--bf16", "false"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = out / "checkpoint-1"
    try:
        deadline = time.monotonic() + 900
        while not _complete(first):
            assert proc.poll() is None, f"grpo train ended early ({proc.returncode}): {proc.communicate()[1][-2000:]}"
            assert time.monotonic() < deadline, "no checkpoint-1 within 15 minutes"
            time.sleep(0.5)
        time.sleep(1.0)  # let TRL finish the rest of checkpoint-1 (rng state, scheduler)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    assert "interrupted" in stderr

    # TRL's checkpoint-1 is intact: a loadable LoRA adapter plus trainer state
    adapter_cfg = json.loads((first / "adapter_config.json").read_text())
    assert adapter_cfg["r"] == 16
    assert json.loads((first / "trainer_state.json").read_text())["global_step"] == 1
    from grpo.modeling.models import load_model

    model, _ = load_model(str(first))  # base + adapter, merged
    assert not hasattr(model, "peft_config")

    # and the weights at the moment of Ctrl-C were saved
    interrupted = out / "checkpoint-interrupted"
    assert (interrupted / "adapter_config.json").exists() or (interrupted / "config.json").exists()
    assert not [p.name for p in out.iterdir() if ".tmp-" in p.name]  # no half-written temp dirs
