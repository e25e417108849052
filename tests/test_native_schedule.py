"""The native loop's generation schedule and reference sync (grpo/training/native/loop.py, plan.py):
``steps_per_generation`` / ``generation_batch_size`` apart from the accumulation, ``sync_ref_model``, and the
micro-batch chosen from a token budget when the user set no batch layout.

Run: pytest tests/test_native_schedule.py      (tiny random Llama, seconds)
"""

import json

import pytest
import torch
from test_native import config, dataset, tiny_model, tiny_tokenizer, word_reward

from grpo.common.errors import UserError
from grpo.config.script_args import ScriptArgs
from grpo.runs.run_dir import MetricsLogger

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FULL = ScriptArgs(use_peft=False)  # the tiny model is trained in full (sync_ref_model needs a separate reference)


def run(tmp_path, model=None, script_args=FULL, given=None, **overrides):
    from grpo.training.native import train
    from grpo.training.native.plan import build_plan

    model = model or tiny_model()
    log = MetricsLogger(tmp_path)
    plan = build_plan(config(tmp_path, **overrides), script_args, given=given)
    train(model, tiny_tokenizer(), dataset(), [word_reward], plan, log)
    samples = [json.loads(x) for x in (tmp_path / "samples.jsonl").read_text().splitlines()]
    return model, log.read(), samples, plan


# ---------------------------------------------------------------------------- steps_per_generation


def test_one_generation_batch_serves_two_optimizer_steps(tmp_path):
    # 4 completions per micro-batch, 1 per step, 2 per generation batch: steps 1 and 3 roll out, 2 and 4 reuse
    model = tiny_model()
    before = [p.detach().clone() for p in model.parameters()]
    _, metrics, samples, plan = run(tmp_path, model, per_device_train_batch_size=4, gradient_accumulation_steps=1,
                                    steps_per_generation=2, max_steps=4)
    assert plan.stores_old_logps and plan.prompts_per_generation == 2  # step 2 trains on step 1's rollout, off-policy
    assert [("reward" in m) for m in metrics] == [True, False, True, False]
    assert len(samples) == 2 * 8  # two generation batches of 2 prompts x 4 completions
    assert all(torch.isfinite(torch.tensor(m["loss"])) for m in metrics)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_generation_batch_size_is_the_same_schedule(tmp_path):
    from grpo.training.native.plan import build_plan

    by_size = build_plan(config(tmp_path, per_device_train_batch_size=4, gradient_accumulation_steps=1,
                                generation_batch_size=8), FULL)
    assert (by_size.steps_per_generation, by_size.completions_per_generation, by_size.stores_old_logps) == (2, 8, True)


def test_a_step_can_span_two_generation_batches(tmp_path):
    # steps_per_generation 1 < accumulation 2: each optimizer step rolls out twice (one prompt's group each time)
    _, metrics, samples, plan = run(tmp_path, per_device_train_batch_size=4, gradient_accumulation_steps=2,
                                    steps_per_generation=1, max_steps=2)
    assert not plan.stores_old_logps and plan.prompts_per_generation == 1
    assert len(samples) == 2 * 2 * 4 and all("reward" in m for m in metrics)


@pytest.mark.parametrize("ga, spg, iterations", [(1, 2, 1), (2, 1, 1), (2, 4, 2), (3, 2, 1), (2, 2, 3)])
def test_micro_batch_runs_follow_trls_counter(tmp_path, ga, spg, iterations):
    """GRPOTrainer._prepare_inputs: micro-step s regenerates when s % (spg * iterations) == 0, trains slice s % spg."""
    from grpo.training.native.loop import _micro_batch_runs
    from grpo.training.native.plan import build_plan

    plan = build_plan(config(tmp_path, per_device_train_batch_size=4, gradient_accumulation_steps=ga,
                             steps_per_generation=spg, num_iterations=iterations), FULL)
    ours = [(gen, i) for step in range(6) for run_ in _micro_batch_runs(step, plan)
            for gen, i in [(run_[0], j) if k == 0 else (False, j) for k, j in enumerate(run_[1])]]
    trl = [(s % (spg * iterations) == 0, s % spg) for s in range(6 * ga)]
    assert ours == trl


# ---------------------------------------------------------------------------- micro-batch from a token budget


@pytest.mark.parametrize("loss_type", ["dapo", "grpo", "dr_grpo"])
def test_budget_split_gives_the_same_step_as_the_whole_micro_batch(tmp_path, monkeypatch, loss_type, caplog):
    import logging

    import grpo.training.native.plan as native_plan

    caplog.set_level(logging.INFO, logger="grpo.training.native.plan")
    whole, whole_metrics, whole_samples, _ = run(tmp_path / "whole", loss_type=loss_type, max_steps=2)
    monkeypatch.setattr(native_plan, "TOKENS_PER_FORWARD", 6)  # one 6-token completion per forward
    split, split_metrics, split_samples, plan = run(tmp_path / "split", loss_type=loss_type, max_steps=2, given=frozenset())
    assert (plan.micro_batch_size, plan.grad_accum_steps, plan.steps_per_generation) == (1, 8, 8)
    assert "per_device_train_batch_size=1, gradient_accumulation_steps=8" in caplog.text
    assert [s["completion"] for s in split_samples] == [s["completion"] for s in whole_samples]
    for a, b in zip(whole_metrics, split_metrics):  # the loss and its gradient's norm (AdamW hides a scale error)
        assert (b["loss"], b["grad_norm"]) == pytest.approx((a["loss"], a["grad_norm"]), rel=1e-4, abs=1e-7)
    for a, b in zip(whole.parameters(), split.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


def test_budget_leaves_explicit_layouts_and_bnpo_alone(tmp_path, monkeypatch):
    import grpo.training.native.plan as native_plan
    from grpo.training.native.plan import build_plan

    monkeypatch.setattr(native_plan, "TOKENS_PER_FORWARD", 6)
    assert build_plan(config(tmp_path), FULL, given=frozenset({"per_device_train_batch_size"})).micro_batch_size == 4
    assert build_plan(config(tmp_path), FULL, given=None).micro_batch_size == 4
    assert build_plan(config(tmp_path, loss_type="bnpo"), FULL, given=frozenset()).micro_batch_size == 4
    assert build_plan(config(tmp_path, max_completion_length=3), FULL, given=frozenset()).micro_batch_size == 2


def test_cli_defaults_get_a_micro_batch_within_the_budget():
    from grpo.training.native.plan import TOKENS_PER_FORWARD, choose_micro_batch

    # TRL's defaults: 8 completions per device, max_completion_length 512
    assert choose_micro_batch(8, 512, "dapo") * 512 <= TOKENS_PER_FORWARD
    assert choose_micro_batch(8, 4000, "dapo") == 1 and choose_micro_batch(8, 64, "dapo") == 8


# ---------------------------------------------------------------------------- sync_ref_model


def test_sync_reference_mixes_in_place():
    from grpo.training.native.loop import sync_reference

    policy, ref = tiny_model(0), tiny_model(1)
    expected = [0.6 * p.detach() + 0.4 * r.detach() for p, r in zip(policy.parameters(), ref.parameters())]
    sync_reference(policy, ref, 0.6)
    for e, r in zip(expected, ref.parameters()):
        torch.testing.assert_close(r, e)


def test_synced_reference_follows_the_policy(tmp_path):
    # alpha 1 every step: the reference becomes the policy after step 1, so step 2's KL is zero (unsynced: > 0)
    _, synced, _, _ = run(tmp_path / "s", beta=0.04, sync_ref_model=True, ref_model_mixup_alpha=1.0,
                          ref_model_sync_steps=1)
    _, plain, _, _ = run(tmp_path / "p", beta=0.04)
    assert plain[1]["kl"] > 1e-6
    assert synced[1]["kl"] == pytest.approx(0.0, abs=1e-7)
    assert synced[0]["kl"] == pytest.approx(plain[0]["kl"], abs=1e-7)  # the first step is the same


def test_sync_ref_model_refused_without_a_separate_reference(tmp_path):
    from grpo.training.native.plan import build_plan

    with pytest.raises(UserError, match="sync_ref_model=True with beta=0.0"):
        build_plan(config(tmp_path, sync_ref_model=True), FULL)
    with pytest.raises(UserError, match="sync_ref_model=True with LoRA"):
        build_plan(config(tmp_path, sync_ref_model=True, beta=0.04), ScriptArgs(use_peft=True))
