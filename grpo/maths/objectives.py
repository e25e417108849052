"""Policy objectives, one per TRL 1.16 ``loss_type``, in a registry: a new objective is one function and one line.

Notation as in :mod:`grpo.maths.loss`: B sequences, T positions, m the (B, T) completion mask, A the
(B, 1) advantages, logp_t the current log-probs, rho the importance ratio (token (B, T) or GSPO
sequence (B, 1), ``importance_sampling_level``), log_ratio_t = logp_t - old_t always per token.

Each objective maps those tensors to a per-token loss l (before masking) and the tensors TRL logs
for it; :func:`grpo.maths.loss.grpo_loss` then applies the masks, the rollout-engine weights and the
KL term, and reduces l with the objective's aggregation (:data:`AGGREGATIONS`). The formulas are
``GRPOTrainer._compute_loss`` of trl 1.16 line for line:

==========  ====================================================================  =================
loss_type   per-token loss l                                                      aggregation
==========  ====================================================================  =================
grpo        -min(rho' A, clip(rho, 1-eps, 1+eps_h) A), rho' = min(rho, delta)     sequence_mean
bnpo        same                                                                  token_mean
dr_grpo     same                                                                  constant
dapo        same                                                                  global_token_mean
luspo       same                                                                  sequence_sum
cispo       -sg(min(rho, eps_h)) A logp_t                                         global_token_mean
sapo        -sigmoid(tau (rho - 1)) 4 / tau A, tau = tau_pos if A > 0 else tau_neg   sequence_mean
vespo       -phi(w) A logp_t, phi = gamma weight of the sequence ratio w          global_token_mean
==========  ====================================================================  =================

To add one: write ``def my_loss(inp: ObjectiveInputs) -> tuple[Tensor, dict[str, Tensor]]`` and
register it: ``register_policy_loss("my_loss", "global_token_mean")(my_loss)``. Run the checks:
``pytest tests/test_loss_objectives.py tests/test_loss_parity_trl.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

# name -> how (B, T) per-token losses become the micro-batch loss (see grpo.maths.loss.aggregate_loss)
AGGREGATIONS = ("sequence_mean", "token_mean", "constant", "global_token_mean", "sequence_sum")


@dataclass(frozen=True)
class ObjectiveInputs:
    """What every objective may read (the GRPOConfig fields keep TRL's names).

    Attributes:
        logps: (B, T) current log-probs, with grad.
        log_ratio: (B, T) logp_t - old_t per token (VESPO sums it per sequence itself).
        ratio: (B, T) token or (B, 1) sequence importance ratio rho, with grad.
        advantages: (B, 1).
        mask: (B, T) completion mask.
        sampling_weights: (B, T) rollout-engine correction weights or None (only an objective registered
            with ``takes_sampling_weights`` reads them; the others are multiplied by them afterwards).
        epsilon, epsilon_high: clip bounds (``epsilon_high`` already defaulted to ``epsilon``).
        delta: INTELLECT-2 upper bound on rho in the unclipped branch, None = off.
        sapo_temperature_pos, sapo_temperature_neg, vespo_k_pos, vespo_lambda_pos, vespo_k_neg, vespo_lambda_neg:
            the GRPOConfig fields of the same names.
    """

    logps: torch.Tensor
    log_ratio: torch.Tensor
    ratio: torch.Tensor
    advantages: torch.Tensor
    mask: torch.Tensor
    sampling_weights: torch.Tensor | None = None
    epsilon: float = 0.2
    epsilon_high: float = 0.2
    delta: float | None = None
    sapo_temperature_pos: float = 1.0
    sapo_temperature_neg: float = 1.05
    vespo_k_pos: float = 2.0
    vespo_lambda_pos: float = 3.0
    vespo_k_neg: float = 3.0
    vespo_lambda_neg: float = 2.0


@dataclass(frozen=True)
class PolicyLoss:
    """A registered objective: its function, its aggregation, and whether it consumes the engine weights itself."""

    name: str
    fn: Callable[[ObjectiveInputs], tuple[torch.Tensor, dict[str, torch.Tensor]]]
    aggregation: str
    takes_sampling_weights: bool = False


POLICY_LOSSES: dict[str, PolicyLoss] = {}


def register_policy_loss(name: str, aggregation: str, takes_sampling_weights: bool = False):
    """Decorator registering ``fn(ObjectiveInputs) -> (per_token_loss, logged tensors)`` as ``loss_type=name``.

    The logged tensors are (B, T) or (B, 1) values whose masked mean is logged under their key (TRL's
    ``global_masked_mean``); booleans count as 0/1.

    Raises:
        ValueError: an unknown aggregation.
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation={aggregation!r}: expected one of {AGGREGATIONS}")

    def register(fn):
        POLICY_LOSSES[name] = PolicyLoss(name, fn, aggregation, takes_sampling_weights)
        return fn

    return register


def clipped_surrogate(
    ratio: torch.Tensor, advantages: torch.Tensor, epsilon_low: float, epsilon_high: float, delta: float | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO/GRPO clipped objective, negated to a loss, with DAPO's asymmetric clip and INTELLECT-2's delta.

    l = -min(rho' A, clip(rho, 1 - eps_low, 1 + eps_high) A),  rho' = min(rho, delta) (rho' = rho without delta)

    (DeepSeekMath arXiv:2402.03300 eq. 3; DAPO arXiv:2503.14476 eq. 10 "clip-higher"; the two-sided clipping of
    the INTELLECT-2 report arXiv:2505.07291: with A < 0 the unclipped branch rho A grows without bound, delta caps it.)

    Args:
        ratio: (B, T) token ratios or (B, 1) GSPO sequence ratios.
        advantages: (B, 1) per-sequence advantages (broadcast over T).
        epsilon_low, epsilon_high: clip bounds. delta: cap on rho in the unclipped branch, None = off.

    Returns:
        per_token_loss: same shape as ``ratio``.
        clipped: boolean masks "low" (rho' < 1 - eps_low and A < 0), "high" (rho' > 1 + eps_high and A > 0)
            and "region" (either), counted on the delta-capped ratio as TRL does.
    """
    clipped_ratio = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)  # (B, T|1)
    if delta is not None:
        ratio = torch.clamp(ratio, max=delta)  # (B, T|1)
    per_token_loss = -torch.min(ratio * advantages, clipped_ratio * advantages)  # (B, T|1)
    low = (ratio < 1 - epsilon_low) & (advantages < 0)  # (B, T|1)
    high = (ratio > 1 + epsilon_high) & (advantages > 0)  # (B, T|1)
    return per_token_loss, {"low": low, "high": high, "region": low | high}


def clipped(inp: ObjectiveInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The clipped surrogate (:func:`clipped_surrogate`) with TRL's three clip metrics ``clip_ratio/*_mean``."""
    loss, masks = clipped_surrogate(inp.ratio, inp.advantages, inp.epsilon, inp.epsilon_high, inp.delta)
    return loss, {f"clip_ratio/{k}_mean": v for k, v in masks.items()}


for _name, _aggregation in (("grpo", "sequence_mean"), ("bnpo", "token_mean"), ("dr_grpo", "constant"),
                            ("dapo", "global_token_mean"), ("luspo", "sequence_sum")):
    # luspo (LUSPO arXiv:2602.05261): GSPO's clipped sequence objective with each sequence's loss scaled by its
    # length (a per-sequence sum where GSPO takes a mean), meant for importance_sampling_level="sequence"
    register_policy_loss(_name, _aggregation)(clipped)


@register_policy_loss("cispo", "global_token_mean")
def cispo(inp: ObjectiveInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """CISPO (the MiniMax-M1 report, arXiv:2506.13585): clip the importance weight, not the update.

    Every token keeps a gradient, however far its ratio moved.

    l_t = -sg(min(rho, eps_high)) A logp_t    (sg = stop-gradient; TRL reads eps_max from ``epsilon_high``)

    Logged: ``cispo_clip_ratio``, the share of tokens with rho > eps_high and A > 0.
    """
    weight = torch.clamp(inp.ratio, max=inp.epsilon_high).detach()  # (B, T|1)
    loss = -weight * inp.advantages * inp.logps  # (B, T)
    return loss, {"cispo_clip_ratio": (inp.ratio > inp.epsilon_high) & (inp.advantages > 0)}


@register_policy_loss("sapo", "sequence_mean")
def sapo(inp: ObjectiveInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """SAPO (arXiv:2511.20347, the soft gate f_{i,t}): a temperature-controlled sigmoid gate instead of a hard clip.

    l = -f_tau(rho) A,  f_tau(rho) = sigmoid(tau (rho - 1)) * 4 / tau,  tau = tau_pos if A > 0 else tau_neg

    (f_tau(1) = 2 / tau and its slope at rho = 1 is 1, so on-policy the gradient is the plain policy gradient;
    a larger tau_neg damps negative updates faster.) No metrics beyond the common ones.
    """
    tau = torch.where(inp.advantages > 0, inp.sapo_temperature_pos, inp.sapo_temperature_neg)  # (B, 1)
    gate = torch.sigmoid(tau * (inp.ratio - 1)) * 4 / tau  # (B, T|1)
    return -gate * inp.advantages, {}


@torch.no_grad()
def gamma_weights(
    advantages: torch.Tensor,
    log_ratio: torch.Tensor,
    mask: torch.Tensor,
    sampling_weights: torch.Tensor | None = None,
    k_pos: float = 2.0,
    lambda_pos: float = 3.0,
    k_neg: float = 3.0,
    lambda_neg: float = 2.0,
) -> torch.Tensor:
    """VESPO's Gamma weight of each sequence (VESPO arXiv:2602.10693, the variational weight phi), detached.

    log w = clamp(sum_t m_t clamp(log_ratio_t, -20, 20) [+ sum_t clamp(log c_t, log 1e-8, 20)], log 1e-8, 20)
    phi(w) = exp(lambda + k log w - lambda w)   (= e^lambda w^k e^{-lambda w}, so phi(1) = 1), NaN/inf -> 0
    with (k, lambda) = (k_pos, lambda_pos) where A >= 0, else (k_neg, lambda_neg); lambda >= 1e-4.

    Args:
        advantages: (B, 1). log_ratio: (B, T) logp_t - old_t. mask: (B, T).
        sampling_weights: (B, T) token-level engine weights c_t (TRL's ``importance_sampling_ratio``), or None.
        k_pos, lambda_pos, k_neg, lambda_neg: ``vespo_*``.

    Returns:
        (B, 1) weights phi.
    """
    low = math.log(1e-8)
    seq_log_ratio = (torch.clamp(log_ratio, -20.0, 20.0) * mask).sum(-1, keepdim=True)  # (B, 1): a sum, not a mean
    if sampling_weights is not None:
        seq_log_ratio = seq_log_ratio + torch.clamp(torch.log(sampling_weights), low, 20.0).sum(-1, keepdim=True)
    log_w = torch.clamp(seq_log_ratio, low, 20.0)  # (B, 1)
    nonneg = advantages >= 0  # (B, 1)
    k = torch.where(nonneg, k_pos, k_neg)  # (B, 1)
    lam = torch.where(nonneg, lambda_pos, lambda_neg).clamp(min=1e-4)  # (B, 1)
    return torch.exp(lam + k * log_w - lam * torch.exp(log_w)).nan_to_num(nan=0.0, posinf=0.0, neginf=0.0)


@register_policy_loss("vespo", "global_token_mean", takes_sampling_weights=True)
def vespo(inp: ObjectiveInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """VESPO (arXiv:2602.10693): l_t = -phi(w) A logp_t, phi the detached Gamma weight (:func:`gamma_weights`).

    The rollout-engine correction enters w (token modes only), not a product with l. Logged:
    ``vespo/phi_seq_mean``, the mean of phi over sequences.
    """
    phi = gamma_weights(inp.advantages, inp.log_ratio, inp.mask, inp.sampling_weights, inp.vespo_k_pos,
                        inp.vespo_lambda_pos, inp.vespo_k_neg, inp.vespo_lambda_neg)  # (B, 1)
    return -phi * inp.advantages * inp.logps, {"vespo/phi_seq_mean": phi}
