"""GRPO loss pieces against numbers worked out by hand. Run: pytest tests/test_loss.py

The main fixture: two sequences, three positions, eps = 0.2, advantages [+1, -1].
  seq 0 (A=+1), ratios 1.5, 0.5, 1.1 -> min(rho A, clip A) = 1.2 (high clip), 0.5, 1.1
                                      -> per-token loss -1.2, -0.5, -1.1
  seq 1 (A=-1), ratios 0.5, 1.5, [0.1 masked] -> min = -0.8 (low clip), -1.5 -> loss 0.8, 1.5
  sums: seq0 -2.8 over 3 tokens, seq1 2.3 over 2 tokens; 5 tokens in all.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from grpo.maths.logprobs import logprobs_from_hidden, token_logprobs
from grpo.maths.loss import aggregate_loss, grpo_loss, kl_k3, log_importance_weights, sampling_correction
from grpo.maths.objectives import clipped_surrogate

MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])
ADV = torch.tensor([1.0, -1.0])
RATIOS = torch.tensor([[1.5, 0.5, 1.1], [0.5, 1.5, 0.1]])


def batch():
    """logps with grad and old logps such that exp(logps - old) == RATIOS."""
    logps = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -1.2, -2.2]], requires_grad=True)
    old = logps.detach() - RATIOS.log()
    return logps, old


@pytest.mark.parametrize(
    "loss_type, kwargs, expected",
    [
        ("grpo", {}, (-2.8 / 3 + 2.3 / 2) / 2),
        ("grpo", {"grad_accum_steps": 2}, (-2.8 / 3 + 2.3 / 2) / 2 / 2),
        ("bnpo", {}, -0.5 / 5),
        ("bnpo", {"grad_accum_steps": 4}, -0.5 / 5 / 4),
        ("dr_grpo", {"max_completion_length": 4}, -0.5 / (2 * 4)),
        ("dr_grpo", {"max_completion_length": 4, "grad_accum_steps": 2}, -0.5 / (2 * 4) / 2),
        ("dapo", {"num_items_in_batch": 5}, -0.5 / 5),
        # generation batch of 2 micro-batches with 10 tokens in all: each one divides by 10
        ("dapo", {"num_items_in_batch": 10, "grad_accum_steps": 2}, -0.5 / 10),
        # 2 processes, 20 tokens globally: per-process normaliser 10 (DDP then averages)
        ("dapo", {"num_items_in_batch": 20, "grad_accum_steps": 2, "num_processes": 2}, -0.5 / 10),
    ],
)
def test_every_loss_type_with_clipping_on_both_sides(loss_type, kwargs, expected):
    logps, old = batch()
    loss, metrics = grpo_loss(logps, ADV, MASK, old_logps=old, epsilon=0.2, loss_type=loss_type, **kwargs)
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    # one low-clipped (seq1 t0) and one high-clipped (seq0 t0) token out of 5 unmasked ones;
    # the masked ratio 0.1 with A<0 would be low-clipped and must not count
    assert metrics["clip_ratio/low_mean"] == pytest.approx(0.2)
    assert metrics["clip_ratio/high_mean"] == pytest.approx(0.2)
    assert metrics["clip_ratio/region_mean"] == pytest.approx(0.4)
    assert "kl" not in metrics


def test_epsilon_high_widens_only_the_upper_bound():
    logps, old = batch()
    # eps_high 0.6: seq0 t0 ratio 1.5 no longer clipped -> -1.5; the low clip (0.8) stays
    loss, metrics = grpo_loss(logps, ADV, MASK, old_logps=old, epsilon=0.2, epsilon_high=0.6, loss_type="bnpo")
    assert loss.item() == pytest.approx((-1.5 - 0.5 - 1.1 + 0.8 + 1.5) / 5)
    assert metrics["clip_ratio/high_mean"] == 0.0 and metrics["clip_ratio/low_mean"] == pytest.approx(0.2)


def test_clipped_surrogate_elementwise():
    loss, clipped = clipped_surrogate(RATIOS, ADV.unsqueeze(1), 0.2, 0.2)
    assert loss[0].tolist() == pytest.approx([-1.2, -0.5, -1.1])
    assert loss[1, :2].tolist() == pytest.approx([0.8, 1.5])
    assert clipped["high"].tolist() == [[True, False, False], [False, False, False]]
    assert clipped["low"].tolist() == [[False, False, False], [True, False, True]]


def test_on_policy_gradient_is_minus_advantage_over_length():
    # num_iterations=1: old = logps.detach(), ratio 1, d loss / d logp_t = -A_i / (n_i * B) for grpo
    logps = torch.zeros(2, 3, requires_grad=True)
    loss, _ = grpo_loss(logps, ADV, MASK, loss_type="grpo")
    assert loss.item() == 0.0
    loss.backward()
    assert logps.grad.flatten().tolist() == pytest.approx([-1 / 6] * 3 + [1 / 4, 1 / 4, 0.0])


def test_gspo_sequence_ratio_and_clipping():
    logps, old = batch()
    # seq0: geometric mean of 1.5, 1.5, 1.5 = 1.5 -> clipped high (loss -1.2)
    # seq1: geometric mean of the unmasked 0.5, 0.5 = 0.5 -> clipped low (loss 0.8)
    old = logps.detach() - torch.tensor([[1.5, 1.5, 1.5], [0.5, 0.5, 9.0]]).log()
    log_w = log_importance_weights(logps, old, MASK, "sequence")
    assert log_w.shape == (2, 1)
    assert log_w.exp().squeeze(1).tolist() == pytest.approx([1.5, 0.5])
    loss, metrics = grpo_loss(logps, ADV, MASK, old_logps=old, loss_type="grpo", importance_sampling_level="sequence")
    assert loss.item() == pytest.approx((-1.2 + 0.8) / 2)
    # sequence level: counted once per sequence
    assert metrics["clip_ratio/low_mean"] == 0.5 and metrics["clip_ratio/high_mean"] == 0.5
    assert metrics["clip_ratio/region_mean"] == 1.0
    # unclipped: ratios 2 and 0.5 -> geometric mean 1
    old2 = logps.detach() - torch.tensor([[2.0, 0.5, 1.0], [1.0, 1.0, 1.0]]).log()
    weights = log_importance_weights(logps, old2, torch.tensor([[1, 1, 0], [1, 1, 1]]), "sequence")
    assert weights[0].item() == pytest.approx(0.0, abs=1e-6)


def test_k3_kl_values():
    kl = kl_k3(torch.zeros(2), torch.tensor([math.log(2), math.log(0.5)]))
    assert kl.tolist() == pytest.approx([2 - math.log(2) - 1, 0.5 + math.log(2) - 1])  # 0.306853, 0.193147
    assert kl_k3(torch.zeros(1), torch.zeros(1)).item() == 0.0


@pytest.mark.parametrize("bias_correction, expected_kl", [(False, 0.25), (True, (0.306853 * 1.5 + 0.193147) / 2)])
def test_beta_kl_with_and_without_bias_correction(bias_correction, expected_kl):
    logps = torch.zeros(1, 2, requires_grad=True)
    ref = torch.tensor([[math.log(2), math.log(0.5)]])
    old = logps.detach() - torch.tensor([[1.5, 1.0]]).log()  # ratios 1.5 and 1
    loss, metrics = grpo_loss(
        logps, torch.zeros(1), torch.ones(1, 2), old_logps=old, ref_logps=ref, beta=0.1,
        loss_type="bnpo", use_bias_correction_kl=bias_correction,
    )
    assert metrics["kl"] == pytest.approx(expected_kl, abs=1e-6)
    assert loss.item() == pytest.approx(0.1 * expected_kl, abs=1e-6)  # A = 0: only the KL term


def test_beta_needs_reference():
    with pytest.raises(ValueError, match="ref_logps"):
        grpo_loss(torch.zeros(1, 2), torch.zeros(1), torch.ones(1, 2), beta=0.1)


def test_aggregate_errors():
    with pytest.raises(ValueError, match="native backend implements"):
        aggregate_loss(torch.zeros(1, 2), torch.ones(1, 2), "ppo")
    with pytest.raises(ValueError, match="max_completion_length"):
        aggregate_loss(torch.zeros(1, 2), torch.ones(1, 2), "dr_grpo")
    with pytest.raises(ValueError, match="num_items_in_batch"):
        aggregate_loss(torch.zeros(1, 2), torch.ones(1, 2), "dapo")


def test_all_masked_sequence_does_not_divide_by_zero():
    loss, policy_loss = aggregate_loss(torch.ones(2, 2), torch.tensor([[1, 1], [0, 0]]), "grpo", grad_accum_steps=2)
    assert loss.item() == 0.25 and policy_loss.item() == 0.5  # (2/2 + 0/1) / 2, then / GA


def test_token_logprobs_by_hand_and_temperature():
    logits = torch.tensor([[[0.0, math.log(3)]]])  # p = [1/4, 3/4]
    logp, ent = token_logprobs(logits, torch.tensor([[1]]), with_entropy=True)
    assert logp.item() == pytest.approx(math.log(0.75))
    assert ent.item() == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)))
    # temperature 2: z = [0, ln3 / 2] -> p1 = sqrt3 / (1 + sqrt3)
    logp2, _ = token_logprobs(logits, torch.tensor([[1]]), temperature=2.0)
    assert logp2.item() == pytest.approx(math.log(math.sqrt(3) / (1 + math.sqrt(3))))
    with pytest.raises(ValueError, match="temperature"):
        token_logprobs(logits, torch.tensor([[1]]), temperature=0.0)


def test_chunked_logprobs_match_full_log_softmax():
    torch.manual_seed(0)
    logits, ids = torch.randn(3, 5, 11), torch.randint(0, 11, (3, 5))
    full = F.log_softmax(logits / 0.7, dim=-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    for chunk in (1, 2, 3):
        assert torch.allclose(token_logprobs(logits, ids, 0.7, chunk_size=chunk)[0], full, atol=1e-6)


def test_logprobs_from_hidden_match_and_backprop_like_full_logits():
    torch.manual_seed(0)
    hidden = torch.randn(2, 5, 4, requires_grad=True)
    weight = torch.randn(9, 4, requires_grad=True)
    ids = torch.randint(0, 9, (2, 5))
    ref, ref_ent = token_logprobs(hidden @ weight.T, ids, 0.9, with_entropy=True)
    ref.sum().backward()
    g_h, g_w = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    out, ent = logprobs_from_hidden(hidden, weight, None, ids, 0.9, chunk_tokens=3)
    out.sum().backward()
    assert torch.allclose(out, ref, atol=1e-5) and torch.allclose(ent, ref_ent, atol=1e-5)
    assert torch.allclose(hidden.grad, g_h, atol=1e-5) and torch.allclose(weight.grad, g_w, atol=1e-5)


def test_logprobs_from_hidden_entropy_gradient_like_full_logits():
    # the entropy bonus (entropy_coef) differentiates H through the chunked, checkpointed head
    torch.manual_seed(0)
    hidden = torch.randn(2, 5, 4, requires_grad=True)
    weight = torch.randn(9, 4, requires_grad=True)
    ids = torch.randint(0, 9, (2, 5))
    logp_all = F.log_softmax((hidden @ weight.T) / 0.9, dim=-1)  # (B, T, V)
    (-(logp_all.exp() * logp_all).sum(-1)).sum().backward()
    g_h, g_w = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    _, ent = logprobs_from_hidden(hidden, weight, None, ids, 0.9, chunk_tokens=3, entropy_grad=True)
    ent.sum().backward()
    assert torch.allclose(hidden.grad, g_h, atol=1e-5) and torch.allclose(weight.grad, g_w, atol=1e-5)
    assert not logprobs_from_hidden(hidden, weight, None, ids, 0.9)[1].requires_grad  # detached by default


# ---------------------------------------------------------------------------- rollout-engine correction

OLD = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -0.2, 0.0]])
SAMPLING = torch.tensor([[-1.5, -1.0, -0.5], [-0.3, -2.0, float("nan")]])  # the engine did not score the last token
SAMPLING_MASK = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
# d = (old - sampling) * mask, NaN -> 0: row 0 [0.5, -1.0, 0], row 1 [0, 1.8, 0]


@pytest.mark.parametrize("mode, clip_min, clip_max, expected", [
    ("token_truncate", None, 3.0, [[math.exp(0.5), math.exp(-1.0), 1.0], [1.0, 3.0, 1.0]]),
    ("token_mask", None, 3.0, [[math.exp(0.5), math.exp(-1.0), 1.0], [1.0, 0.0, 1.0]]),
    ("token_mask", 0.5, 3.0, [[math.exp(0.5), 0.0, 1.0], [1.0, 0.0, 1.0]]),
    ("token_truncate", 0.5, None, [[math.exp(0.5), 0.5, 1.0], [1.0, math.exp(1.8), 1.0]]),
    ("sequence_truncate", None, 3.0, [[math.exp(-0.5)], [3.0]]),  # a sum over the row, not a mean
    ("sequence_mask", None, 3.0, [[math.exp(-0.5)], [0.0]]),
    ("sequence_mask", 0.7, None, [[0.0], [math.exp(1.8)]]),
])
def test_sampling_correction_every_mode_by_hand(mode, clip_min, clip_max, expected):
    weights, metrics = sampling_correction(OLD, SAMPLING, SAMPLING_MASK, mode, clip_min, clip_max)
    assert torch.allclose(weights, torch.tensor(expected), atol=1e-6)
    # |old - sampling| over unmasked, non-NaN tokens: 0.5, 1.0, 0.0, 1.8
    assert metrics["sampling/sampling_logp_difference/mean"] == pytest.approx(3.3 / 4)
    assert metrics["sampling/sampling_logp_difference/max"] == pytest.approx(1.8)
    flat = [w for row, m in zip(expected, SAMPLING_MASK.tolist()) for w, k in zip(row, m) if k] if mode.startswith(
        "token") else [row[0] for row in expected]
    assert metrics["sampling/importance_sampling_ratio/mean"] == pytest.approx(sum(flat) / len(flat), rel=1e-6)
    assert metrics["sampling/importance_sampling_ratio/min"] == pytest.approx(min(flat), rel=1e-6)
    assert metrics["sampling/importance_sampling_ratio/max"] == pytest.approx(max(flat), rel=1e-6)


def test_sampling_correction_refuses_unknown_mode():
    with pytest.raises(ValueError, match="token_truncate"):
        sampling_correction(OLD, SAMPLING, SAMPLING_MASK, "token_clip")


def test_sampling_weights_multiply_the_surrogate_not_the_kl():
    """ratio 1 (old = current), A = [2, -1]: surrogate -A per token; weights [[0.5, 1], [2, 0]];
    ref one token off by log 2 -> k3 = 2 - log 2 - 1; bnpo = sum / 4."""
    logps = torch.tensor([[-1.0, -2.0], [-0.5, -1.5]], requires_grad=True)
    ref = logps.detach() + torch.tensor([[0.0, 0.0], [math.log(2.0), 0.0]])
    weights = torch.tensor([[0.5, 1.0], [2.0, 0.0]])
    loss, _ = grpo_loss(logps, torch.tensor([2.0, -1.0]), torch.ones(2, 2), ref_logps=ref, beta=0.1,
                        loss_type="bnpo", sampling_weights=weights)
    k3 = 2.0 - math.log(2.0) - 1.0
    assert loss.item() == pytest.approx((-1.0 - 2.0 + (2.0 + 0.1 * k3) + 0.0) / 4, abs=1e-6)
    loss.backward()  # d/dlogp of -A*rho*w = -A*w; the KL term's gradient stays unweighted
    assert logps.grad[0].tolist() == pytest.approx([-2.0 * 0.5 / 4, -2.0 * 1.0 / 4])
    assert logps.grad[1, 1].item() == pytest.approx(0.0, abs=1e-7)
