"""Two native GRPO steps per newer objective and loss knob, on the tiny random Llama of tests/test_native.py.

Run: pytest tests/test_loss_native_runs.py              (a few seconds per run)
     pytest tests/test_loss_native_runs.py -m slow      (+ two torchrun processes with the entropy knobs, ~1 min)
Each run must end with finite losses, moved weights and the objective's own metric (TRL's name) in metrics.jsonl.
"""

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from test_native import run, tiny_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _two_finite_steps(tmp_path, **overrides):
    model = tiny_model()
    before = [p.detach().clone() for p in model.parameters()]
    _, metrics = run(tmp_path, model=model, max_steps=2, **overrides)
    assert [m["step"] for m in metrics] == [1, 2]
    assert all(math.isfinite(m["loss"]) and math.isfinite(m["grad_norm"]) for m in metrics)
    assert "nonfinite_skipped" not in metrics[0] and "nonfinite_skipped" not in metrics[1]
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    return metrics


@pytest.mark.parametrize("loss_type, overrides, metric", [
    # num_iterations=2: the second step re-optimises the first batch, so ratios move away from 1
    ("cispo", {"epsilon_high": 1.05, "num_iterations": 2}, "cispo_clip_ratio"),
    ("luspo", {"importance_sampling_level": "sequence", "delta": 1.5, "num_iterations": 2}, "clip_ratio/region_mean"),
    ("vespo", {"vespo_k_pos": 1.5, "vespo_lambda_neg": 1.5, "num_iterations": 2}, "vespo/phi_seq_mean"),
    # TRL logs nothing of SAPO's own; its temperatures are checked against TRL in tests/test_loss_parity_trl.py
    ("sapo", {"sapo_temperature_pos": 1.5, "sapo_temperature_neg": 2.0, "num_iterations": 2}, "entropy"),
])
def test_two_steps_per_new_objective(tmp_path, loss_type, overrides, metric):
    metrics = _two_finite_steps(tmp_path, loss_type=loss_type, **overrides)
    assert all(math.isfinite(m[metric]) for m in metrics)
    if loss_type == "vespo":  # phi(1) = 1 on the first, on-policy step; off-policy on the second
        assert metrics[0][metric] == pytest.approx(1.0, abs=1e-5) and metrics[1][metric] != pytest.approx(1.0, abs=1e-5)
    if loss_type == "cispo":
        assert metrics[0][metric] == 0.0  # rho = 1 < eps_high on the first step


def test_adaptive_entropy_coefficient_moves_and_is_checkpointed(tmp_path):
    # a target above any entropy of a 20-token vocabulary (ln 20 = 3.0 nats): the coefficient climbs each step
    metrics = _two_finite_steps(tmp_path, use_adaptive_entropy=True, entropy_coef=0.0, entropy_coef_delta=0.01,
                                entropy_target=10.0, save_steps=2)
    assert [m["entropy_coef"] for m in metrics] == pytest.approx([0.01, 0.02])
    assert all("policy_loss" in m for m in metrics)  # TRL logs it whenever the bonus is on
    state = torch.load(tmp_path / "checkpoint-2" / "trainer_state.pt", weights_only=True)
    assert state["loop"]["entropy_control"]["entropy_coef"] == pytest.approx(0.02)  # TRL's entropy_ctrl_state.json


def test_loss_knobs_together(tmp_path):
    def length_reward(completions, **kwargs):
        return [len(c.split()) / 6 for c in completions]

    from test_native import word_reward

    metrics = _two_finite_steps(tmp_path, reward_funcs=(word_reward, length_reward), num_iterations=2, beta=0.04,
                                top_entropy_quantile=0.2, entropy_coef=0.01, off_policy_mask_threshold=0.01,
                                delta=1.3, multi_objective_aggregation="normalize_then_sum")
    assert [m["entropy_coef"] for m in metrics] == [0.01, 0.01] and "kl" in metrics[1]


def test_static_entropy_bonus_changes_the_update(tmp_path):
    plain, bonus = tiny_model(), tiny_model()
    run(tmp_path / "plain", model=plain, max_steps=1)
    run(tmp_path / "bonus", model=bonus, max_steps=1, entropy_coef=0.5)
    assert any(not torch.allclose(a, b) for a, b in zip(plain.parameters(), bonus.parameters()))


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
    torch.manual_seed(100 + rank)
    model = tiny_model()
    args = config(out, max_steps=2, loss_type="cispo", epsilon_high=1.1, top_entropy_quantile=0.3,
                  use_adaptive_entropy=True, entropy_coef=0.02, entropy_target=1.5, entropy_coef_delta=0.01,
                  save_steps=0)
    train(model, tiny_tokenizer(), dataset(16), [word_reward], build_plan(args), MetricsLogger(out, enabled=rank == 0))
    torch.save([p.detach() for p in model.parameters()], f"{{out}}/rank{{rank}}.pt")
    dist.destroy_process_group()
""")


@pytest.mark.slow
def test_two_processes_share_the_entropy_quantile_and_controller(tmp_path):
    """Ragged entropies gathered for the quantile and the controller's window summed over ranks: same weights."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(Path(__file__).resolve().parent), out=str(tmp_path)))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script)], capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    for a, b in zip(torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")):
        assert torch.equal(a, b)
    import json

    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all(math.isfinite(r["loss"]) for r in rows)
    assert rows[0]["entropy_coef"] in (pytest.approx(0.01), pytest.approx(0.03))  # moved by delta either way
