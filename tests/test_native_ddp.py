"""Two CPU processes (torchrun, gloo) train the native backend and end with identical weights.

Run: pytest tests/test_native_ddp.py -m slow      (~1 min: two processes on a tiny random Llama)
"""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parent

WORKER = textwrap.dedent("""
    import os, sys
    import torch
    import torch.distributed as dist
    sys.path.insert(0, {tests!r})
    torch.set_num_threads(1)
    from test_native import config, dataset, tiny_model, tiny_tokenizer, word_reward
    from grpo.training.native import train
    from grpo.training.native.plan import build_plan
    from grpo.runs.run_dir import MetricsLogger

    rank = int(os.environ["RANK"])
    out = {out!r}
    torch.manual_seed(100 + rank)  # different global RNG per rank: only the synced update may agree
    model = tiny_model()
    before = [p.detach().clone() for p in model.parameters()]
    args = config(out, max_steps=3, loss_type="dapo", beta=0.04, save_steps=0)
    train(model, tiny_tokenizer(), dataset(16), [word_reward], build_plan(args), MetricsLogger(out, enabled=rank == 0))
    changed = any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    torch.save({{"params": [p.detach() for p in model.parameters()], "changed": changed}}, f"{{out}}/rank{{rank}}.pt")
    dist.destroy_process_group()
""")


@pytest.mark.slow
def test_two_processes_agree_on_weights(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(TESTS), out=str(tmp_path)))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script)], capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert r0["changed"] and r1["changed"]
    for a, b in zip(r0["params"], r1["params"]):
        assert torch.equal(a, b)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3  # rank 0 alone writes
