"""GRPO policy loss as pure tensor functions (one per equation), matching trl 1.16 `_compute_loss`.

Notation: B sequences (completions) in a micro-batch, T completion positions (right padded),
V vocabulary, H hidden size, m the (B, T) completion mask (1 = token counts in the loss).

- Log-probs: log pi(y_t | x, y_<t) at sampling temperature tau, i.e. log_softmax(z / tau)[y_t]
  (TRL divides logits by `temperature` before scoring, so the ratio compares the same
  distributions the sampler drew from). Computed chunk by chunk: no (B, T, V) softmax is kept.
- Importance ratio (DeepSeekMath arXiv:2402.03300 eq. 3, PPO clip): rho_t = exp(logp_t - old_t);
  GSPO (arXiv:2507.18071 eq. 7): one ratio per sequence, rho = exp(sum_t m_t (logp_t - old_t) / sum_t m_t).
- Clipped surrogate with asymmetric bounds (DAPO arXiv:2503.14476 eq. 10, "clip-higher"):
  l_t = -min(rho_t A, clip(rho_t, 1 - eps_low, 1 + eps_high) A).
- KL to the reference, k3 estimator (DeepSeekMath eq. 4; Schulman 2020 "Approximating KL"):
  KL_t = exp(ref_t - logp_t) - (ref_t - logp_t) - 1, times rho_t when `use_bias_correction_kl`.
- Rollout-engine correction (`sampling_correction`, trl 1.16's `vllm_importance_sampling_*`; TIS/MIS,
  Yao et al. 2025 "Your Efficient RL Framework Secretly Brings You Off-Policy RL Training"): the
  per-token loss is weighted by exp(old_t - sampling_t), per token or summed per sequence, truncated
  or masked outside [C_min, C_max], when the completions came from an engine whose log-probs differ
  from the policy's (vLLM, a bf16 copy); the weight multiplies the surrogate, not the KL term.
- Aggregation by `loss_type` (see `aggregate_loss`): grpo (DeepSeekMath eq. 3, per-sequence mean
  then batch mean), bnpo (token mean of the micro-batch), dr_grpo (Dr. GRPO arXiv:2503.20783 eq. 3,
  constant normaliser B * max_completion_length), dapo (DAPO eq. 12, token mean over the whole
  generation batch across processes).

Everything here takes tensors and floats and returns a loss plus detached float metrics whose
names are TRL's (`kl`, `clip_ratio/low_mean`, `clip_ratio/high_mean`, `clip_ratio/region_mean`).
Run the hand-computed checks: `pytest tests/test_loss.py tests/test_loss_parity_trl.py`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")
IMPORTANCE_SAMPLING_LEVELS = ("token", "sequence")
SAMPLING_CORRECTION_MODES = ("token_truncate", "token_mask", "sequence_truncate", "sequence_mask")


def token_logprobs(
    logits: torch.Tensor, ids: torch.Tensor, temperature: float = 1.0, chunk_size: int = 1, with_entropy: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probs log_softmax(logits / tau)[ids], memory-lean.

    log p(y) = z_y / tau - logsumexp(z / tau): only a gather and a logsumexp per chunk of
    `chunk_size` rows, so no full (B, T, V) log-softmax exists at once.

    Args:
        logits: (B, T, V) next-token logits aligned with `ids` (logits[:, t] predicts ids[:, t]).
        ids: (B, T) token ids.
        temperature: tau > 0, the sampling temperature.
        chunk_size: rows of B processed at a time.
        with_entropy: also return the entropy of softmax(logits / tau), detached.

    Returns:
        logps: (B, T) float32 log-probs; entropy: (B, T) detached float32 or None.

    Raises:
        ValueError: temperature <= 0.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logps, entropies = [], []
    for start in range(0, logits.shape[0], chunk_size):
        z = logits[start : start + chunk_size].float() / temperature  # (b, T, V)
        idx = ids[start : start + chunk_size].unsqueeze(-1)  # (b, T, 1)
        lse = torch.logsumexp(z, dim=-1)  # (b, T)
        logps.append(z.gather(-1, idx).squeeze(-1) - lse)  # (b, T)
        if with_entropy:
            with torch.no_grad():
                logp_all = z - lse.unsqueeze(-1)  # (b, T, V), one chunk only
                entropies.append(-(logp_all.exp() * logp_all).sum(-1))  # (b, T)
    entropy = torch.cat(entropies) if with_entropy else None  # (B, T)
    return torch.cat(logps), entropy  # (B, T)


def _head_logprobs(hidden, weight, bias, ids, temperature):
    """One chunk of `logprobs_from_hidden`: project, scale, score. Shapes (b, H) -> (b,)."""
    z = F.linear(hidden, weight, bias).float() / temperature  # (b, V)
    lse = torch.logsumexp(z, dim=-1)  # (b,)
    logp = z.gather(-1, ids.unsqueeze(-1)).squeeze(-1) - lse  # (b,)
    with torch.no_grad():
        p_log = z - lse.unsqueeze(-1)  # (b, V)
        entropy = -(p_log.exp() * p_log).sum(-1)  # (b,)
    return logp, entropy


def logprobs_from_hidden(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    ids: torch.Tensor,
    temperature: float = 1.0,
    chunk_tokens: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probs straight from final hidden states, never holding (B, T, V) logits.

    The LM head is applied to `chunk_tokens` positions at a time under activation
    checkpointing, so backward recomputes each chunk's logits instead of storing them (the
    same idea as TRL 1.16's fused LM head). Same equation as `token_logprobs`.

    Args:
        hidden: (B, T, H) final hidden states at the positions that predict `ids`.
        weight: (V, H) LM head weight; bias: (V,) or None.
        ids: (B, T) token ids to score.
        temperature: tau > 0.
        chunk_tokens: positions per chunk.

    Returns:
        logps: (B, T) float32 with grad; entropy: (B, T) float32 detached.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    b, t, h = hidden.shape
    flat_h, flat_ids = hidden.reshape(b * t, h), ids.reshape(b * t)  # (B*T, H), (B*T,)
    logps, ents = [], []
    for start in range(0, b * t, chunk_tokens):
        sl = slice(start, start + chunk_tokens)
        if torch.is_grad_enabled() and (flat_h.requires_grad or weight.requires_grad):
            lp, ent = checkpoint(_head_logprobs, flat_h[sl], weight, bias, flat_ids[sl], temperature,
                                 use_reentrant=False)  # backward recomputes this chunk's (c, V) logits
        else:
            lp, ent = _head_logprobs(flat_h[sl], weight, bias, flat_ids[sl], temperature)
        logps.append(lp)  # (c,)
        ents.append(ent.detach())  # (c,)
    return torch.cat(logps).view(b, t), torch.cat(ents).view(b, t)  # (B, T), (B, T)


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


def clipped_surrogate(
    ratio: torch.Tensor, advantages: torch.Tensor, epsilon_low: float, epsilon_high: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO/GRPO clipped objective, negated to a loss, with DAPO's asymmetric clip.

    l = -min(rho A, clip(rho, 1 - eps_low, 1 + eps_high) A)

    Args:
        ratio: (B, T) token ratios or (B, 1) GSPO sequence ratios.
        advantages: (B, 1) per-sequence advantages (broadcast over T).
        epsilon_low, epsilon_high: clip bounds.

    Returns:
        per_token_loss: same shape as `ratio`.
        clipped: boolean masks "low" (rho < 1 - eps_low and A < 0), "high" (rho > 1 + eps_high
            and A > 0) and "region" (either): where the clip removed the gradient, as TRL counts.
    """
    clipped_ratio = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)  # (B, T|1)
    per_token_loss = -torch.min(ratio * advantages, clipped_ratio * advantages)  # (B, T|1)
    low = (ratio < 1 - epsilon_low) & (advantages < 0)  # (B, T|1)
    high = (ratio > 1 + epsilon_high) & (advantages > 0)  # (B, T|1)
    return per_token_loss, {"low": low, "high": high, "region": low | high}


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
) -> torch.Tensor:
    """Reduce (B, T) per-token losses to the micro-batch loss that is back-propagated.

    With L = sum_t l_t m_t per sequence, n_i = sum_t m_t, GA = grad_accum_steps:
      grpo:    (1/B) sum_i L_i / max(n_i, 1) / GA                    (DeepSeekMath eq. 3)
      bnpo:    sum_i L_i / max(sum_i n_i, 1) / GA
      dr_grpo: sum_i L_i / (B * max_completion_length) / GA          (Dr. GRPO eq. 3)
      dapo:    sum_i L_i / (N / P * GA / S)                          (DAPO eq. 12)
    where N = `num_items_in_batch`, the unmasked tokens of the whole generation batch summed
    over all P processes, and S = steps_per_generation (default GA). After the GA micro-batches
    are summed and DDP averages over P, dapo is exactly sum(l m) / N over the generation batch.

    Args:
        per_token_loss: (B, T) or (B, 1) (GSPO without KL) per-token loss.
        mask: (B, T) completion mask.
        loss_type: one of LOSS_TYPES.
        grad_accum_steps, max_completion_length, num_items_in_batch, num_processes,
        steps_per_generation: see above (only the ones the loss_type uses are required).

    Returns:
        scalar loss tensor.
    """
    m = mask.to(per_token_loss.dtype)  # (B, T)
    masked = per_token_loss * m  # (B, T) (a (B, 1) loss broadcasts over T, as in TRL)
    if loss_type == "grpo":
        return (masked.sum(-1) / m.sum(-1).clamp(min=1.0)).mean() / grad_accum_steps
    if loss_type == "bnpo":
        return masked.sum() / m.sum().clamp(min=1.0) / grad_accum_steps
    if loss_type == "dr_grpo":
        if max_completion_length is None:
            raise ValueError("loss_type='dr_grpo' needs max_completion_length")
        return masked.sum() / (per_token_loss.shape[0] * max_completion_length) / grad_accum_steps
    if loss_type == "dapo":
        if num_items_in_batch is None:
            raise ValueError("loss_type='dapo' needs num_items_in_batch (tokens in the generation batch)")
        steps = steps_per_generation or grad_accum_steps
        n = torch.as_tensor(num_items_in_batch, dtype=masked.dtype).clamp(min=1.0)
        return masked.sum() / (n / num_processes * grad_accum_steps / steps)
    raise ValueError(f"loss_type={loss_type!r}: the native backend implements {LOSS_TYPES}")


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
    loss_type: str = "dapo",
    importance_sampling_level: str = "token",
    use_bias_correction_kl: bool = True,
    grad_accum_steps: int = 1,
    max_completion_length: int | None = None,
    num_items_in_batch: float | torch.Tensor | None = None,
    num_processes: int = 1,
    steps_per_generation: int | None = None,
    sampling_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The whole GRPO objective for one micro-batch: ratio -> clip -> (* sampling weights) -> + beta KL -> aggregate.

    l_t = -min(rho_t A, clip(rho_t, 1-eps, 1+eps_high) A) + beta * KL_t (* rho_t if bias-corrected)

    Args:
        logps: (B, T) current log-probs (with grad).
        advantages: (B,) per-sequence advantages.
        mask: (B, T) completion mask.
        old_logps: (B, T) sampling-policy log-probs; None = `logps.detach()` (num_iterations=1:
            rho = 1 in value, gradient of rho = gradient of logp).
        ref_logps: (B, T) reference log-probs; required when beta != 0.
        beta, epsilon, epsilon_high (None = epsilon), loss_type, importance_sampling_level,
        use_bias_correction_kl: GRPOConfig fields of the same name.
        grad_accum_steps ... steps_per_generation: forwarded to `aggregate_loss`.
        sampling_weights: (B, T) or (B, 1) from `sampling_correction`; None = no rollout-engine correction.

    Returns:
        loss: scalar tensor to back-propagate.
        metrics: detached floats `clip_ratio/low_mean`, `clip_ratio/high_mean`,
            `clip_ratio/region_mean`, `kl` (only when beta != 0), and `policy_loss`
            (the loss before the gradient-accumulation division, TRL's logged value).
    """
    if old_logps is None:
        old_logps = logps.detach()  # (B, T)
    adv = advantages.unsqueeze(1) if advantages.dim() == 1 else advantages  # (B, 1)
    log_w = log_importance_weights(logps, old_logps, mask, importance_sampling_level)  # (B, T|1)
    ratio = torch.exp(log_w)  # (B, T|1)
    eps_high = epsilon if epsilon_high is None else epsilon_high
    per_token_loss, clipped = clipped_surrogate(ratio, adv, epsilon, eps_high)  # (B, T|1)
    if sampling_weights is not None:
        per_token_loss = per_token_loss * sampling_weights  # (B, T): the surrogate only, not the KL below
    metrics: dict[str, float] = {}
    if beta != 0.0:
        if ref_logps is None:
            raise ValueError("beta != 0 needs ref_logps")
        kl = kl_k3(logps, ref_logps)  # (B, T)
        if use_bias_correction_kl:
            kl = kl * ratio  # (B, T)
        per_token_loss = per_token_loss + beta * kl  # (B, T)
        metrics["kl"] = masked_mean(kl.detach(), mask)
    loss = aggregate_loss(
        per_token_loss, mask, loss_type, grad_accum_steps=grad_accum_steps,
        max_completion_length=max_completion_length, num_items_in_batch=num_items_in_batch,
        num_processes=num_processes, steps_per_generation=steps_per_generation,
    )
    for key in ("low", "high", "region"):
        metrics[f"clip_ratio/{key}_mean"] = masked_mean(clipped[key].float(), mask)
    scale = 1.0 if loss_type == "dapo" else grad_accum_steps
    metrics["policy_loss"] = loss.detach().item() * scale
    return loss, metrics
