"""scripts/gpu_smoke.sh --dry-run: runnable without a GPU, it lists every step and checks every step's config parses.

Run: pytest tests/test_gpu_smoke.py   (~10 s: one Python process parses the configs)
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEPS = ["versions", "vllm_engine", "native_gpu", "native_vllm_sleep", "trl_vllm", "qlora_trl", "zero3_1proc",
         "fsdp2_1proc"]
GRPO_STEPS = STEPS[2:]


def test_dry_run_lists_every_step_and_parses_their_configs():
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_smoke.sh"), "--dry-run"], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHON": sys.executable, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = proc.stdout
    assert [line[3:] for line in out.splitlines() if line.startswith("== ") and " " not in line[3:]] == STEPS
    for step in GRPO_STEPS:
        assert f"  {step}: ok" in out
    for config in ("deepspeed_zero3.yaml", "fsdp.yaml", "ddp.yaml"):
        assert f"grpo/configs/accelerate/{config}: ok" in out
    # what needs two GPUs, with its commands
    assert "Needs two GPUs" in out and "trl vllm-serve" in out and "--vllm_mode server" in out
    assert "deepspeed_zero3.yaml --num_processes 2" in out and "ddp.yaml --num_processes 2" in out
    assert "dry run: ok (8 steps" in out


def test_an_unknown_step_is_refused():
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_smoke.sh"), "--dry-run", "native_cpu"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "unknown step 'native_cpu'" in proc.stderr
