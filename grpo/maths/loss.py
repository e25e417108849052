"""The GRPO loss of one micro-batch as pure tensor functions, matching trl 1.16 ``GRPOTrainer._compute_loss``.

Notation: B sequences (completions) in a micro-batch, T completion positions (right padded),
m the (B, T) completion mask (1 = token counts in the loss), A the per-sequence advantages.

- Log-probs and entropies: :mod:`grpo.maths.logprobs` (re-exported here).
- Importance ratio (DeepSeekMath arXiv:2402.03300 eq. 3, PPO clip): rho_t = exp(logp_t - old_t);
  GSPO (arXiv:2507.18071 eq. 7): one ratio per sequence, rho = exp(sum_t m_t (logp_t - old_t) / sum_t m_t).
- The objective of ``loss_type`` (grpo, bnpo, dr_grpo, dapo, luspo, cispo, sapo, vespo) and how it is
  aggregated: the registry in :mod:`grpo.maths.objectives` (``register_policy_loss``).
- Off-policy sequence mask (``off_policy_mask_threshold``; DeepSeek-V3.2 arXiv:2512.02556 eq. 9):
  a sequence with A < 0 whose mean KL(sampling || current) exceeds the threshold is dropped.
- High-entropy token mask and entropy bonus (``top_entropy_quantile``, ``entropy_coef``): :mod:`grpo.maths.entropy`.
- KL to the reference, k3 estimator (DeepSeekMath eq. 4; Schulman 2020 "Approximating KL"):
  KL_t = exp(ref_t - logp_t) - (ref_t - logp_t) - 1, times rho_t when ``use_bias_correction_kl``.
- Rollout-engine correction (``sampling_correction``, trl 1.16's ``vllm_importance_sampling_*``; TIS/MIS,
  Yao et al. 2025 "Your Efficient RL Framework Secretly Brings You Off-Policy RL Training"): the
  per-token loss is weighted by exp(old_t - sampling_t), per token or summed per sequence, truncated
  or masked outside [C_min, C_max], when the completions came from an engine whose log-probs differ
  from the policy's (vLLM, a bf16 copy); the weight multiplies the surrogate, not the KL term
  (VESPO folds it into its sequence weight instead).

Order, as TRL: objective -> x off-policy mask -> x entropy mask -> x engine weights -> + beta KL ->
aggregate -> - entropy_coef * H. Everything takes tensors and floats and returns a loss plus detached
float metrics under TRL's names. Run the checks: ``pytest tests/test_loss.py tests/test_loss_objectives.py
tests/test_loss_parity_trl.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from grpo.maths.entropy import EntropyControl, entropy_bonus, high_entropy_mask
from grpo.maths.objectives import POLICY_LOSSES, ObjectiveInputs

LOSS_TYPES = tuple(POLICY_LOSSES)  # grpo bnpo dr_grpo dapo luspo cispo sapo vespo
IMPORTANCE_SAMPLING_LEVELS = ("token", "sequence")
SAMPLING_CORRECTION_MODES = ("token_truncate", "token_mask", "sequence_truncate", "sequence_mask")


def log_importance_weights(
    logps: torch.Tensor, old_logps: torch.Tensor, mask: torch.Tensor, level: str = "token"
) -> torch.Tensor:
    """log rho: token-level (PPO/GRPO) or sequence-level (GSPO arXiv:2507.18071 eq. 7).

    token:    log rho_t = logp_t - old_t                              -> (B, T)
    sequence: log rho   = sum_t m_t (logp_t - old_t) / max(sum_t m_t, 1) -> (B, 1)

    Args:
        logps: (B, T) current policy log-probs (with grad).
        old_logps: (B, T) log-probs of the policy that sampled (detached).
        mask: (B, T) completion mask.
        level: "token" or "sequence".
    """
    log_ratio = logps - old_logps  # (B, T)
    if level == "token":
        return log_ratio  # (B, T)
    if level == "sequence":
        m = mask.to(log_ratio.dtype)  # (B, T)
        return ((log_ratio * m).sum(-1) / m.sum(-1).clamp(min=1.0)).unsqueeze(-1)  # (B, 1)
    raise ValueError(f"importance_sampling_level={level!r}: expected one of {IMPORTANCE_SAMPLING_LEVELS}")


def sampling_correction(
    old_logps: torch.Tensor,
    sampling_logps: torch.Tensor,
    mask: torch.Tensor,
    mode: str = "sequence_mask",
    clip_min: float | None = None,
    clip_max: float | None = 3.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Importance weights for completions drawn by another engine than the policy (trl 1.16 semantics).

    d_t = m_t (old_t - sampling_t), NaN -> 0 (a token the engine did not score gets weight 1);
    token modes: w_t = exp(d_t); sequence modes: w = exp(sum_t d_t) (a sum, not a mean, as TRL).
    ``*_truncate``: w = clamp(w, clip_min, clip_max) (TIS); ``*_mask``: w = 0 outside
    [clip_min, clip_max] (MIS; None = unbounded on that side). The caller multiplies the per-token
    surrogate by w before adding the KL term, as ``GRPOTrainer._compute_loss`` does.

    Args:
        old_logps: (B, T) log-probs of the completions under the policy that generated them
            (detached; with num_iterations=1 the current forward's values).
        sampling_logps: (B, T) the engine's log-probs of the same tokens (vLLM's processed
            logprobs, or :func:`grpo.generation.sampler.generate`'s), same temperature.
        mask: (B, T) completion mask.
        mode: one of ``SAMPLING_CORRECTION_MODES`` (TRL's ``vllm_importance_sampling_mode``).
        clip_min, clip_max: TRL's ``vllm_importance_sampling_clip_min`` / ``_clip_max``.

    Returns:
        weights: (B, T) for token modes, (B, 1) for sequence modes (detached).
        metrics: TRL's names: ``sampling/sampling_logp_difference/mean`` and ``/max`` (|old - sampling|
            over unmasked, non-NaN tokens), ``sampling/importance_sampling_ratio/min``, ``/mean``, ``/max``
            (over sequences, or over unmasked tokens).

    Raises:
        ValueError: an unknown ``mode``.
    """
    if mode not in SAMPLING_CORRECTION_MODES:
        raise ValueError(f"unknown sampling correction mode {mode!r}; expected one of {SAMPLING_CORRECTION_MODES}")
    old_logps, sampling_logps, mask = old_logps.detach().float(), sampling_logps.float(), mask.float()
    diff = torch.nan_to_num((old_logps - sampling_logps) * mask, nan=0.0)  # (B, T)
    sequence = mode.startswith("sequence")
    weights = torch.exp(diff.sum(dim=-1, keepdim=True) if sequence else diff)  # (B, 1) or (B, T)
    if mode.endswith("truncate"):
        weights = torch.clamp(weights, min=clip_min, max=clip_max)
    else:
        low = -float("inf") if clip_min is None else clip_min
        high = float("inf") if clip_max is None else clip_max
        weights = weights.masked_fill((weights < low) | (weights > high), 0.0)
    keep = mask.bool()
    delta = (old_logps - sampling_logps).abs()[keep]  # (N,)
    delta = delta[~torch.isnan(delta)]
    flat = weights.flatten() if sequence else weights[keep]
    stat = lambda x, f: f(x).item() if x.numel() else 0.0  # noqa: E731
    metrics = {
        "sampling/sampling_logp_difference/mean": stat(delta, torch.mean),
        "sampling/sampling_logp_difference/max": stat(delta, torch.max),
        "sampling/importance_sampling_ratio/min": stat(flat, torch.min),
        "sampling/importance_sampling_ratio/mean": stat(flat, torch.mean),
        "sampling/importance_sampling_ratio/max": stat(flat, torch.max),
    }
    return weights, metrics


def kl_k3(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """k3 estimator of KL(pi || pi_ref) per token (DeepSeekMath eq. 4): always >= 0.

    KL_t = exp(ref_t - logp_t) - (ref_t - logp_t) - 1

    Args:
        logps: (B, T) policy log-probs; ref_logps: (B, T) reference log-probs.

    Returns:
        (B, T) per-token KL estimate.
    """
    delta = ref_logps - logps  # (B, T)
    return torch.exp(delta) - delta - 1  # (B, T)


def off_policy_mask(
    advantages: torch.Tensor, logps: torch.Tensor, sampling_logps: torch.Tensor, mask: torch.Tensor, threshold: float
) -> torch.Tensor:
    """Off-policy sequence mask (DeepSeek-V3.2 arXiv:2512.02556 eq. 9; TRL's ``get_off_policy_mask``).

    keep_i = A_i >= 0  or  sum_t m_t (sampling_t - logp_t) / max(sum_t m_t, 1) <= threshold
    (a token the engine could not score, NaN, counts as 0).

    Args:
        advantages: (B, 1). logps: (B, T) current log-probs (used detached). sampling_logps: (B, T) log-probs of the
            policy/engine that sampled. mask: (B, T). threshold: ``off_policy_mask_threshold`` (nats).

    Returns:
        (B, 1) in the mask's dtype: 1 = keep, 0 = drop.
    """
    kl = torch.nan_to_num(sampling_logps - logps.detach(), nan=0.0)  # (B, T)
    mean_kl = (kl * mask).sum(dim=1, keepdim=True) / mask.sum(dim=1, keepdim=True).clamp(min=1.0)  # (B, 1)
    return ((advantages >= 0) | (mean_kl <= threshold)).to(dtype=mask.dtype)  # (B, 1)


def aggregate_loss(
    per_token_loss: torch.Tensor,
    mask: torch.Tensor,
    loss_type: str,
    *,
    grad_accum_steps: int = 1,
    max_completion_length: int | None = None,
    num_items_in_batch: float | torch.Tensor | None = None,
    num_processes: int = 1,
    steps_per_generation: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reduce (B, T) per-token losses to the micro-batch loss that is back-propagated.

    With L_i = sum_t l_t m_t, n_i = sum_t m_t, GA = grad_accum_steps, by the objective's aggregation:
      sequence_mean (grpo, sapo):   (1/B) sum_i L_i / max(n_i, 1) / GA       (DeepSeekMath eq. 3)
      token_mean (bnpo):            sum_i L_i / max(sum_i n_i, 1) / GA
      constant (dr_grpo):           sum_i L_i / (B * max_completion_length) / GA   (Dr. GRPO arXiv:2503.20783 eq. 3)
      global_token_mean (dapo, cispo, vespo): sum_i L_i / (N / P * GA / S)   (DAPO arXiv:2503.14476 eq. 12)
      sequence_sum (luspo):         (1/B) sum_i L_i / GA                      (LUSPO arXiv:2602.05261)
    where N = ``num_items_in_batch``, the unmasked tokens of the whole generation batch summed over all P
    processes, and S = steps_per_generation (default GA): after the GA micro-batches are summed and DDP
    averages over P, the global token mean is exactly sum(l m) / N over the generation batch.

    Args:
        per_token_loss: (B, T) or (B, 1) (GSPO without KL) per-token loss.
        mask: (B, T) completion mask.
        loss_type: one of LOSS_TYPES.
        grad_accum_steps, max_completion_length, num_items_in_batch, num_processes,
        steps_per_generation: see above (only the ones the loss_type uses are required).

    Returns:
        (loss, policy_loss): the scalar to back-propagate, and TRL's logged ``policy_loss`` (the same
        before the division by GA; detached).

    Raises:
        ValueError: an unknown loss_type, or a normaliser it needs is missing.
    """
    if loss_type not in POLICY_LOSSES:
        raise ValueError(f"loss_type={loss_type!r}: the native backend implements {LOSS_TYPES}")
    aggregation = POLICY_LOSSES[loss_type].aggregation
    m = mask.to(per_token_loss.dtype)  # (B, T)
    masked = per_token_loss * m  # (B, T) (a (B, 1) loss broadcasts over T, as in TRL)
    if aggregation == "global_token_mean":
        if num_items_in_batch is None:
            raise ValueError(f"loss_type={loss_type!r} needs num_items_in_batch (tokens in the generation batch)")
        steps = steps_per_generation or grad_accum_steps
        n = torch.as_tensor(num_items_in_batch, dtype=masked.dtype).clamp(min=1.0)
        loss = masked.sum() / (n / num_processes * grad_accum_steps / steps)
        return loss, loss.detach()
    if aggregation == "sequence_mean":
        loss = (masked.sum(-1) / m.sum(-1).clamp(min=1.0)).mean()
    elif aggregation == "token_mean":
        loss = masked.sum() / m.sum().clamp(min=1.0)
    elif aggregation == "constant":
        if max_completion_length is None:
            raise ValueError(f"loss_type={loss_type!r} needs max_completion_length")
        loss = masked.sum() / (per_token_loss.shape[0] * max_completion_length)
    else:  # sequence_sum
        loss = masked.sum(-1).mean()
    return loss / grad_accum_steps, loss.detach()


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> float:
    """Token mean of x over mask (a (B, 1) x counts once per sequence, as TRL logs GSPO)."""
    if x.shape[1] == 1 and mask.shape[1] != 1:
        return x.float().mean().item()
    m = mask.to(torch.float32)  # (B, T)
    return ((x.float() * m).sum() / m.sum().clamp(min=1.0)).item()


def grpo_loss(
    logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    old_logps: torch.Tensor | None = None,
    ref_logps: torch.Tensor | None = None,
    beta: float = 0.0,
    epsilon: float = 0.2,
    epsilon_high: float | None = None,
    delta: float | None = None,
    loss_type: str = "dapo",
    importance_sampling_level: str = "token",
    use_bias_correction_kl: bool = True,
    sapo_temperature_pos: float = 1.0,
    sapo_temperature_neg: float = 1.05,
    vespo_k_pos: float = 2.0,
    vespo_lambda_pos: float = 3.0,
    vespo_k_neg: float = 3.0,
    vespo_lambda_neg: float = 2.0,
    top_entropy_quantile: float = 1.0,
    off_policy_mask_threshold: float | None = None,
    entropies: torch.Tensor | None = None,
    entropy_control: EntropyControl | None = None,
    entropy_gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
    sampling_logps: torch.Tensor | None = None,
    grad_accum_steps: int = 1,
    max_completion_length: int | None = None,
    num_items_in_batch: float | torch.Tensor | None = None,
    num_processes: int = 1,
    steps_per_generation: int | None = None,
    sampling_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The whole GRPO objective for one micro-batch, in TRL's order (see the module docstring).

    l_t = objective_t (x off-policy mask) (x entropy mask) (x engine weight) + beta KL_t (x rho_t if bias-corrected);
    loss = aggregate(l) - c H   (c from ``entropy_control``, H the entropy bonus).

    Args:
        logps: (B, T) current log-probs (with grad).
        advantages: (B,) per-sequence advantages (or (B, 1)).
        mask: (B, T) completion mask.
        old_logps: (B, T) sampling-policy log-probs; None = ``logps.detach()`` (num_iterations=1:
            rho = 1 in value, gradient of rho = gradient of logp).
        ref_logps: (B, T) reference log-probs; required when beta != 0.
        beta, epsilon, epsilon_high (None = epsilon), delta, loss_type, importance_sampling_level,
        use_bias_correction_kl, sapo_temperature_*, vespo_*, top_entropy_quantile, off_policy_mask_threshold:
            the GRPOConfig fields of the same names.
        entropies: (B, T) per-token entropies; needed by ``top_entropy_quantile < 1`` and the entropy bonus
            (with grad there, as TRL differentiates it).
        entropy_control: the run's :class:`grpo.maths.entropy.EntropyControl` when the bonus is on
            (``entropy_coef != 0`` or ``use_adaptive_entropy``), else None; it is told this micro-batch's entropy.
        entropy_gather: concatenates every process's (N,) entropies for the quantile (None = one process).
        sampling_logps: (B, T) log-probs of the engine that sampled, for the off-policy mask (None = ``old_logps``).
        grad_accum_steps ... steps_per_generation: forwarded to :func:`aggregate_loss`.
        sampling_weights: (B, T) or (B, 1) from :func:`sampling_correction`; None = no rollout-engine correction.

    Returns:
        loss: scalar tensor to back-propagate.
        metrics: detached floats under TRL's names: the objective's own (``clip_ratio/{low,high,region}_mean``,
            ``cispo_clip_ratio``, ``vespo/phi_seq_mean``), ``kl`` (beta != 0), and with the entropy bonus on
            ``policy_loss`` (the loss before the bonus and the GA division, as TRL logs it then).

    Raises:
        ValueError: an unknown loss_type or importance_sampling_level, beta != 0 without ``ref_logps``, or
            entropies missing where a knob needs them.
    """
    if loss_type not in POLICY_LOSSES:
        raise ValueError(f"loss_type={loss_type!r}: the native backend implements {LOSS_TYPES}")
    objective = POLICY_LOSSES[loss_type]
    if entropies is None and (top_entropy_quantile < 1.0 or entropy_control is not None):
        raise ValueError("top_entropy_quantile < 1 and the entropy bonus need the per-token entropies")
    if beta != 0.0 and ref_logps is None:
        raise ValueError("beta != 0 needs ref_logps")
    entropy_mask = None
    if top_entropy_quantile < 1.0:
        entropy_mask = high_entropy_mask(entropies, mask, top_entropy_quantile, entropy_gather)  # (B, T)
    if old_logps is None:
        old_logps = logps.detach()  # (B, T)
    adv = advantages.unsqueeze(1) if advantages.dim() == 1 else advantages  # (B, 1)
    keep = None
    if off_policy_mask_threshold is not None:
        drawn = sampling_logps if sampling_logps is not None else old_logps  # (B, T)
        keep = off_policy_mask(adv, logps, drawn, mask, off_policy_mask_threshold)  # (B, 1)
    log_w = log_importance_weights(logps, old_logps, mask, importance_sampling_level)  # (B, T|1)
    ratio = torch.exp(log_w)  # (B, T|1)
    eps_high = epsilon if epsilon_high is None else epsilon_high
    inputs = ObjectiveInputs(
        logps=logps, log_ratio=logps - old_logps, ratio=ratio, advantages=adv, mask=mask,
        sampling_weights=sampling_weights if objective.takes_sampling_weights else None, epsilon=epsilon,
        epsilon_high=eps_high, delta=delta, sapo_temperature_pos=sapo_temperature_pos,
        sapo_temperature_neg=sapo_temperature_neg, vespo_k_pos=vespo_k_pos, vespo_lambda_pos=vespo_lambda_pos,
        vespo_k_neg=vespo_k_neg, vespo_lambda_neg=vespo_lambda_neg)
    per_token_loss, logged = objective.fn(inputs)  # (B, T|1), {name: (B, T|1)}
    if keep is not None:
        per_token_loss = per_token_loss * keep  # (B, T|1)
    if entropy_mask is not None:
        per_token_loss = per_token_loss * entropy_mask  # (B, T)
    if sampling_weights is not None and not objective.takes_sampling_weights:
        per_token_loss = per_token_loss * sampling_weights  # (B, T): the surrogate only, not the KL below
    metrics: dict[str, float] = {}
    if beta != 0.0:
        kl = kl_k3(logps, ref_logps)  # (B, T)
        if use_bias_correction_kl:
            kl = kl * ratio  # (B, T): rho before the delta cap, as TRL
        per_token_loss = per_token_loss + beta * kl  # (B, T)
        metrics["kl"] = masked_mean(kl.detach(), mask)
    loss, policy_loss = aggregate_loss(
        per_token_loss, mask, loss_type, grad_accum_steps=grad_accum_steps,
        max_completion_length=max_completion_length, num_items_in_batch=num_items_in_batch,
        num_processes=num_processes, steps_per_generation=steps_per_generation,
    )
    if entropy_control is not None:  # L = L_policy - c H over the tokens the policy loss acts on
        effective = mask if entropy_mask is None else mask * entropy_mask  # (B, T)
        loss = loss - entropy_control.applied_coef * entropy_bonus(entropies, effective, grad_accum_steps)
        entropy_control.observe(entropies, effective)
        metrics["policy_loss"] = policy_loss.item()
    for name, value in logged.items():
        metrics[name] = masked_mean(value.detach().float(), mask)
    return loss, metrics
