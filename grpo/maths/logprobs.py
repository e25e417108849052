"""Per-token log-probs and entropies of a causal LM's completions, without a (B, T, V) softmax in memory.

log pi(y_t | x, y_<t) at sampling temperature tau is log_softmax(z / tau)[y_t] (TRL divides the logits
by ``temperature`` before scoring, so ratios compare the distributions the sampler drew from); the
entropy is H_t = -sum_v p_v log p_v of the same distribution. Both are computed chunk by chunk.
Run the checks: ``pytest tests/test_loss.py -k logprobs``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


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


def _head_logprobs(hidden, weight, bias, ids, temperature, entropy_grad=False):
    """One chunk of `logprobs_from_hidden`: project, scale, score. Shapes (b, H) -> (b,)."""
    z = F.linear(hidden, weight, bias).float() / temperature  # (b, V)
    lse = torch.logsumexp(z, dim=-1)  # (b,)
    logp = z.gather(-1, ids.unsqueeze(-1)).squeeze(-1) - lse  # (b,)
    with torch.enable_grad() if entropy_grad else torch.no_grad():
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
    entropy_grad: bool = False,
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
        entropy_grad: keep the entropy's graph (TRL's fused head differentiates it: the entropy bonus
            ``entropy_coef`` needs dH/dtheta); False = detached, no extra backward work.

    Returns:
        logps: (B, T) float32 with grad; entropy: (B, T) float32, detached unless ``entropy_grad``.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    b, t, h = hidden.shape
    flat_h, flat_ids = hidden.reshape(b * t, h), ids.reshape(b * t)  # (B*T, H), (B*T,)
    logps, ents = [], []
    for start in range(0, b * t, chunk_tokens):
        sl = slice(start, start + chunk_tokens)
        if torch.is_grad_enabled() and (flat_h.requires_grad or weight.requires_grad):
            lp, ent = checkpoint(_head_logprobs, flat_h[sl], weight, bias, flat_ids[sl], temperature, entropy_grad,
                                 use_reentrant=False)  # backward recomputes this chunk's (c, V) logits
        else:
            lp, ent = _head_logprobs(flat_h[sl], weight, bias, flat_ids[sl], temperature)
        logps.append(lp)  # (c,)
        ents.append(ent if entropy_grad else ent.detach())  # (c,)
    return torch.cat(logps).view(b, t), torch.cat(ents).view(b, t)  # (B, T), (B, T)
