"""The four newer objectives, the loss knobs and GDPO advantages against numbers worked out by hand.

Run: pytest tests/test_loss_objectives.py

Fixture as in tests/test_loss.py: two sequences, three positions, advantages [+1, -1],
  ratios [[1.5, 0.5, 1.1], [0.5, 1.5, 0.1 (masked)]], logps [[-1, -2, -0.5], [-0.3, -1.2, -2.2]], 5 tokens.
"""

import math

import pytest
import torch

from grpo.common.errors import UserError
from grpo.maths.advantages import advantages_from_rewards, normalize_then_sum
from grpo.maths.entropy import EntropyControl, entropy_bonus, high_entropy_mask
from grpo.maths.loss import grpo_loss, off_policy_mask
from grpo.maths.objectives import POLICY_LOSSES, gamma_weights, register_policy_loss

MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])
ADV = torch.tensor([1.0, -1.0])
RATIOS = torch.tensor([[1.5, 0.5, 1.1], [0.5, 1.5, 0.1]])
LOGPS = [[-1.0, -2.0, -0.5], [-0.3, -1.2, -2.2]]


def batch():
    logps = torch.tensor(LOGPS, requires_grad=True)
    return logps, logps.detach() - RATIOS.log()


def test_cispo_clips_the_weight_and_keeps_every_gradient():
    logps, old = batch()
    loss, metrics = grpo_loss(logps, ADV, MASK, old_logps=old, loss_type="cispo", epsilon_high=1.2,
                              num_items_in_batch=5)
    # weights min(rho, 1.2) = [[1.2, .5, 1.1], [.5, 1.2]]; l = -w A logp: seq0 1.2 + 1.0 + 0.55, seq1 -0.15 - 1.44
    assert loss.item() == pytest.approx((2.75 - 1.59) / 5)
    assert metrics == {"cispo_clip_ratio": pytest.approx(0.2)}  # rho 1.5 > 1.2 with A > 0: one token of five
    loss.backward()  # the weight is detached: d/dlogp = -w A / N, non-zero even where rho was clipped
    assert logps.grad.flatten().tolist() == pytest.approx([-1.2 / 5, -0.5 / 5, -1.1 / 5, 0.5 / 5, 1.2 / 5, 0.0])


def test_sapo_soft_gate_on_policy_is_the_plain_policy_gradient():
    logps = torch.tensor(LOGPS, requires_grad=True)
    loss, metrics = grpo_loss(logps, ADV, MASK, loss_type="sapo", sapo_temperature_pos=1.0, sapo_temperature_neg=1.05)
    # rho = 1: gate sigmoid(0) 4 / tau = 2 / tau, l = -2/tau A -> seq0 -2, seq1 +2/1.05; per-sequence means, batch mean
    assert loss.item() == pytest.approx((-2 + 2 / 1.05) / 2, abs=1e-6)
    assert metrics == {}
    loss.backward()  # the gate's slope at rho = 1 is 1: gradient -A / (n_i B), as grpo's
    assert logps.grad.flatten().tolist() == pytest.approx([-1 / 6] * 3 + [1 / 4, 1 / 4, 0.0])


def test_sapo_temperature_damps_off_policy_tokens():
    logps, old = batch()
    gate = lambda r, tau: 4 / tau / (1 + math.exp(-tau * (r - 1)))  # noqa: E731
    loss, _ = grpo_loss(logps, ADV, MASK, old_logps=old, loss_type="sapo", sapo_temperature_pos=2.0,
                        sapo_temperature_neg=3.0)
    seq0 = -sum(gate(r, 2.0) for r in (1.5, 0.5, 1.1)) / 3
    seq1 = sum(gate(r, 3.0) for r in (0.5, 1.5)) / 2
    assert loss.item() == pytest.approx((seq0 + seq1) / 2, rel=1e-6)


def test_vespo_gamma_weight_by_hand():
    adv = torch.tensor([[1.0], [-1.0]])
    log_ratio = torch.tensor([[math.log(2), 0.0, 0.0], [0.0, 0.0, 5.0]])  # seq1's 5.0 is masked out
    phi = gamma_weights(adv, log_ratio, MASK, k_pos=2.0, lambda_pos=3.0, k_neg=3.0, lambda_neg=2.0)
    # w = 2 (A >= 0): e^3 2^2 e^-6 = 4 e^-3; w = 1 (A < 0): phi(1) = 1
    assert phi.flatten().tolist() == pytest.approx([4 * math.exp(-3), 1.0])
    weights = torch.tensor([[1.0, 0.5, 1.0], [1.0, 1.0, 1.0]])  # the engine correction enters w: 2 * 0.5 = 1
    assert gamma_weights(adv, log_ratio, MASK, weights).flatten().tolist() == pytest.approx([1.0, 1.0])


def test_vespo_loss_and_metric():
    logps = torch.tensor(LOGPS, requires_grad=True)
    old = logps.detach().clone()
    old[0, 0] -= math.log(2)  # seq0: w = 2 -> phi 4 e^-3; seq1 on-policy -> phi 1
    loss, metrics = grpo_loss(logps, ADV, MASK, old_logps=old, loss_type="vespo", num_items_in_batch=5)
    phi0 = 4 * math.exp(-3)
    assert loss.item() == pytest.approx((3.5 * phi0 - 1.5) / 5)  # -phi A logp: seq0 -phi0 (-3.5), seq1 (-1.5)
    assert metrics["vespo/phi_seq_mean"] == pytest.approx((phi0 + 1) / 2)  # one value per sequence


def test_luspo_scales_each_sequence_by_its_length():
    logps = torch.tensor(LOGPS, requires_grad=True)
    # on-policy, unclipped: l = -A per token; luspo sums per sequence: (-3 + 2) / 2; grpo would average: (-1 + 1) / 2
    loss, _ = grpo_loss(logps, ADV, MASK, loss_type="luspo", importance_sampling_level="sequence")
    assert loss.item() == pytest.approx(-0.5)
    assert grpo_loss(logps, ADV, MASK, loss_type="grpo", importance_sampling_level="sequence")[0].item() == 0.0


def test_delta_caps_the_unclipped_branch_of_negative_advantages():
    logps, old = batch()
    # seq1 t1: rho 1.5, A = -1: min(-1.5, -1.2) = -1.5 -> loss 1.5; delta 1.3 -> min(-1.3, -1.2) -> 1.3
    plain, _ = grpo_loss(logps, ADV, MASK, old_logps=old, loss_type="bnpo")
    capped, metrics = grpo_loss(logps, ADV, MASK, old_logps=old, loss_type="bnpo", delta=1.3)
    assert plain.item() == pytest.approx(-0.5 / 5) and capped.item() == pytest.approx(-0.7 / 5)
    assert metrics["clip_ratio/high_mean"] == pytest.approx(0.2)  # seq0 t0: min(1.5, 1.3) still > 1.2 with A > 0


def test_high_entropy_mask_uses_the_quantile_of_unmasked_tokens():
    ent = torch.tensor([[0.1, 0.5, 0.9], [0.3, 0.7, 99.0]])  # 99 is padding
    # quantile 0.6 of [.1 .3 .5 .7 .9] = 0.5 + 0.4 * 0.2 = 0.58
    assert high_entropy_mask(ent, MASK, 0.4).tolist() == [[False, False, True], [False, True, False]]
    assert high_entropy_mask(ent, MASK, 0.0).tolist() == [[False, False, True], [False, False, False]]
    assert high_entropy_mask(ent, MASK, 1.0).tolist() == MASK.bool().tolist()
    gathered = high_entropy_mask(ent, MASK, 0.4, gather=lambda x: torch.cat([x, torch.tensor([5.0, 6.0])]))
    # other processes' tokens raise the bar: quantile 0.6 of [.1 .3 .5 .7 .9 5 6] = 0.82, so 0.7 no longer passes
    assert gathered.tolist() == [[False, False, True], [False, False, False]]
    assert not high_entropy_mask(ent, torch.zeros_like(MASK), 0.5).any()


def test_top_entropy_quantile_trains_only_the_kept_tokens():
    logps = torch.tensor(LOGPS, requires_grad=True)
    ent = torch.tensor([[0.1, 0.5, 0.9], [0.3, 0.7, 99.0]])
    loss, _ = grpo_loss(logps, ADV, MASK, loss_type="bnpo", top_entropy_quantile=0.4, entropies=ent)
    loss.backward()  # the normaliser stays the 5 completion tokens, only two get a gradient
    assert logps.grad.flatten().tolist() == pytest.approx([0.0, 0.0, -0.2, 0.0, 0.2, 0.0])
    with pytest.raises(ValueError, match="entropies"):
        grpo_loss(logps, ADV, MASK, top_entropy_quantile=0.4)


def test_entropy_bonus_value_and_gradient():
    logps = torch.tensor(LOGPS, requires_grad=True)
    ent = torch.tensor([[0.1, 0.5, 0.9], [0.3, 0.7, 99.0]], requires_grad=True)
    control = EntropyControl(0.1)
    loss, metrics = grpo_loss(logps, ADV, MASK, loss_type="bnpo", entropies=ent, entropy_control=control,
                              grad_accum_steps=2)
    h = (0.1 + 0.5 + 0.9 + 0.3 + 0.7) / 5  # mean over the 5 completion tokens, then / GA
    assert loss.item() == pytest.approx(-0.2 / 2 - 0.1 * h / 2)  # on-policy bnpo: (-3 + 2) / 5, / GA
    assert metrics["policy_loss"] == pytest.approx(-0.2)  # before the bonus and the GA division
    loss.backward()
    assert ent.grad.flatten().tolist() == pytest.approx([-0.01] * 5 + [0.0])  # -c / 5 / GA
    assert control.end_step() == 0.1  # static: constant, still logged as entropy_coef
    assert entropy_bonus(ent, torch.zeros_like(MASK)).item() == 0.0


def test_adaptive_entropy_controller_steps_and_bounds():
    c = EntropyControl(0.05, use_adaptive_entropy=True, entropy_coef_min=0.0, entropy_coef_max=0.08,
                       entropy_coef_delta=0.02, entropy_target=0.6)
    assert c.applied_coef == 0.0  # nothing measured yet: no bonus
    c.observe(torch.tensor([[0.2, 0.6, 9.0]]), torch.tensor([[1, 1, 0]]))
    c.observe(torch.tensor([[0.7]]), torch.tensor([[1]]))  # step entropy (0.2 + 0.6 + 0.7) / 3 = 0.5 <= 0.6
    assert c.end_step() == pytest.approx(0.07) and c.last_world_entropy == pytest.approx(0.5)
    assert c.applied_coef == pytest.approx(0.07)
    c.observe(torch.tensor([[0.3]]), torch.tensor([[1]]))
    assert c.end_step() == pytest.approx(0.08)  # 0.07 + 0.02 capped at entropy_coef_max
    c.observe(torch.tensor([[0.5]]), torch.tensor([[1]]))  # another process adds 2.0 nats over 1 token: 2.5 / 2 > 0.6
    assert c.end_step(reduce=lambda t: t + torch.tensor([2.0, 1.0], dtype=t.dtype)) == pytest.approx(0.06)
    assert c.last_world_entropy == pytest.approx(1.25) and c.applied_coef == 0.0  # above target: no bonus
    for _ in range(5):
        c.observe(torch.tensor([[0.9]]), torch.tensor([[1]]))
        c.end_step()
    assert c.entropy_coef == 0.0  # floored at entropy_coef_min


def test_adaptive_entropy_state_round_trip():
    c = EntropyControl(0.05, use_adaptive_entropy=True, entropy_target=0.6)
    c.observe(torch.tensor([[0.1]]), torch.tensor([[1]]))
    c.end_step()
    d = EntropyControl(0.05, use_adaptive_entropy=True, entropy_target=0.6)
    d.load_state_dict(c.state_dict())
    assert d.state_dict() == c.state_dict()
    assert c.state_dict() == {"entropy_coef": pytest.approx(0.055), "last_world_entropy": pytest.approx(0.1)}


def test_off_policy_mask_drops_only_negative_advantages_far_from_the_sampler():
    logps = torch.zeros(3, 2)
    sampling = torch.tensor([[0.5, 0.5], [0.5, float("nan")], [0.01, 0.01]])  # mean KL 0.5, 0.25 (NaN -> 0), 0.01
    adv = torch.tensor([[-1.0], [-1.0], [-1.0]])
    assert off_policy_mask(adv, logps, sampling, torch.ones(3, 2), 0.3).flatten().tolist() == [0, 1, 1]
    assert off_policy_mask(-adv, logps, sampling, torch.ones(3, 2), 0.3).flatten().tolist() == [1, 1, 1]


def test_off_policy_threshold_in_the_loss():
    logps, old = batch()
    # sampling = old: seq1 (A < 0) mean KL = mean(-ln rho) = -(ln .5 + ln 1.5) / 2 = 0.144; seq0 has A > 0
    far = grpo_loss(logps, ADV, MASK, old_logps=old, loss_type="bnpo", off_policy_mask_threshold=0.1)[0]
    near = grpo_loss(logps, ADV, MASK, old_logps=old, loss_type="bnpo", off_policy_mask_threshold=0.2)[0]
    assert far.item() == pytest.approx(-2.8 / 5) and near.item() == pytest.approx(-0.5 / 5)


def test_a_registered_objective_is_one_function_and_one_line():
    def reinforce(inp):
        return -inp.advantages * inp.logps, {"reinforce/logp_mean": inp.logps}

    register_policy_loss("reinforce_test", "token_mean")(reinforce)
    try:
        logps = torch.tensor(LOGPS, requires_grad=True)
        loss, metrics = grpo_loss(logps, ADV, MASK, loss_type="reinforce_test")
        assert loss.item() == pytest.approx((3.5 - 1.5) / 5)
        assert metrics["reinforce/logp_mean"] == pytest.approx((-3.5 - 1.5) / 5)
    finally:
        del POLICY_LOSSES["reinforce_test"]
    with pytest.raises(ValueError, match="aggregation"):
        register_policy_loss("x", "median")


def test_gdpo_normalises_each_reward_before_summing():
    # group 1 differs only in f0 (scale 10), group 2 only in f1 (scale 1)
    rewards = torch.tensor([[10.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    summed, _ = advantages_from_rewards(rewards, 2, scale_rewards="none")  # the larger-scale reward dominates
    assert summed.tolist() == pytest.approx([5.0, -5.0, 0.5, -0.5])
    gdpo, metrics = advantages_from_rewards(rewards, 2, multi_objective_aggregation="normalize_then_sum")
    # each function z-scored in its group: +-0.707 in both groups; whitened over the batch: Bessel std 0.816
    assert gdpo.tolist() == pytest.approx([0.866, -0.866, 0.866, -0.866], abs=1e-3)
    assert metrics["frac_reward_zero_std"] == 0.0


def test_gdpo_by_hand_with_weights_and_an_unscorable_row():
    rewards = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, float("nan")], [0.0, float("nan")],
                            [float("nan"), float("nan")], [1.0, 1.0]])
    adv, _ = normalize_then_sum(rewards, 2, torch.tensor([1.0, 2.0]))
    z = 0.5 / (2 ** -0.5 + 1e-4)  # f0 +-0.5 around its group mean over the Bessel std 0.707; f1 ties -> 0
    # group 2 (f1 None) sums f0 only; group 3: row 4 unscorable (NaN), row 5 alone in both functions (NaN std,
    # skipped by the sum) -> 0
    s = torch.tensor([z, -z, z, -z, 0.0])
    a = (s - s.mean()) / (s.std() + 1e-4)  # batch whitening over the 5 scorable rows
    assert adv[[0, 1, 2, 3, 5]].tolist() == pytest.approx(a.tolist(), rel=1e-5)
    assert adv[4].item() == 0.0
    with pytest.raises(ValueError, match="multi_objective_aggregation"):
        advantages_from_rewards(rewards, 2, multi_objective_aggregation="mean")


def test_plan_refuses_out_of_range_and_vespo_with_sequence_correction(tmp_path):
    from trl import GRPOConfig

    from grpo.config.script_args import ScriptArgs
    from grpo.training.native.plan import build_plan

    def args(**kw):
        return GRPOConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, per_device_train_batch_size=2,
                          num_generations=2, **kw)

    with pytest.raises(UserError, match="top_entropy_quantile"):
        build_plan(args(top_entropy_quantile=1.5))
    with pytest.raises(UserError, match="multi_objective_aggregation='mean'"):
        build_plan(args(multi_objective_aggregation="mean"))
    with pytest.raises(UserError, match="vespo"):
        build_plan(args(loss_type="vespo", bf16=True), ScriptArgs(sampler_importance_sampling_correction=True))
    plan = build_plan(args(loss_type="vespo", bf16=True, vllm_importance_sampling_mode="token_truncate"),
                      ScriptArgs(sampler_importance_sampling_correction=True))
    assert plan.correct_sampling and plan.new_entropy_control() is None
    plan = build_plan(args(loss_type="sapo", delta=1.5, use_adaptive_entropy=True, entropy_target=0.3,
                           multi_objective_aggregation="normalize_then_sum", off_policy_mask_threshold=0.5))
    assert plan.loss_kwargs["delta"] == 1.5 and plan.loss_kwargs["off_policy_mask_threshold"] == 0.5
    assert plan.new_entropy_control().target == 0.3


def test_a_registered_loss_and_estimator_are_accepted_by_the_native_plan(tmp_path):
    """One function plus one decorator line: the native backend's check and the loss/advantage lookups see it."""
    from trl import GRPOConfig

    from grpo.maths.advantages import ADVANTAGE_ESTIMATORS, register_advantage_estimator
    from grpo.training.native.plan import build_plan

    def args(**kw):
        return GRPOConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, per_device_train_batch_size=2,
                          num_generations=2, **kw)

    with pytest.raises(UserError, match="loss_type='reinforce_plan'"):
        build_plan(args(loss_type="reinforce_plan"))

    @register_policy_loss("reinforce_plan", "sequence_mean")
    def reinforce(inp):
        return -inp.advantages * inp.logps, {}

    @register_advantage_estimator("centred_sum")
    def centred_sum(rewards, num_generations, weights=None, scale_rewards="group"):
        summed = rewards.sum(dim=1)  # (N,)
        return summed - summed.view(-1, num_generations).mean(dim=1).repeat_interleave(num_generations), {
            "frac_reward_zero_std": 0.0}

    try:
        plan = build_plan(args(loss_type="reinforce_plan", multi_objective_aggregation="centred_sum"))
        assert plan.loss_kwargs["loss_type"] == "reinforce_plan"
        adv, _ = advantages_from_rewards(torch.tensor([[1.0, 0.0], [0.0, 0.0]]), 2,
                                         multi_objective_aggregation="centred_sum")
        assert adv.tolist() == [0.5, -0.5]
        logps = torch.tensor(LOGPS, requires_grad=True)
        loss, _ = grpo_loss(logps, ADV, MASK, **plan.loss_kwargs)
        loss.backward()
        assert torch.isfinite(loss) and logps.grad is not None and logps.grad.abs().sum() > 0
    finally:
        del POLICY_LOSSES["reinforce_plan"], ADVANTAGE_ESTIMATORS["centred_sum"]
