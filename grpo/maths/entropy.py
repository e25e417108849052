"""Entropy terms of the GRPO loss, as trl 1.16 ``GRPOTrainer._compute_loss`` computes them.

- High-entropy token mask (``top_entropy_quantile`` = rho; "Beyond the 80/20 Rule", arXiv:2506.01939,
  its policy gradient restricted to the forking tokens): only tokens whose entropy is at or above the
  (1 - rho) quantile of the micro-batch's completion-token entropies (gathered over every process)
  train the policy.
- Entropy bonus (``entropy_coef``): L = L_policy - c * H, H the mean per-token entropy over the
  tokens the policy loss acts on, divided only by the gradient-accumulation steps (never by a
  loss type's normaliser, so c means the same for every ``loss_type``).
- Adaptive coefficient (``use_adaptive_entropy``; the adaptive entropy control of the Skywork-OR1
  report, arXiv:2505.22312): after each optimiser step, c += delta_c if the step's token-mean entropy H_step
  <= target, else c -= delta_c, kept in [c_min, c_max]; the bonus is applied only while the last
  step's H_step <= target (none before the first measurement).

Run the checks: ``pytest tests/test_loss_objectives.py -k entropy``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


def high_entropy_mask(
    entropies: torch.Tensor,
    mask: torch.Tensor,
    top_entropy_quantile: float,
    gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Tokens whose entropy is in the top ``top_entropy_quantile`` share (TRL's ``get_high_entropy_mask``).

    tau = quantile_{1 - rho}(H over every unmasked token of every process) (linear interpolation, torch.quantile);
    keep_t = m_t and H_t m_t >= tau.

    Args:
        entropies: (B, T) per-token entropies (nats). mask: (B, T) completion mask.
        top_entropy_quantile: rho in [0, 1]; 0 keeps the highest-entropy token(s) only.
        gather: maps this process's (N,) unmasked entropies to every process's, concatenated (None = one process).

    Returns:
        (B, T) bool mask; all False when no process has an unmasked token.
    """
    local = entropies.detach()[mask.bool()].float()  # (N,)
    values = gather(local) if gather is not None else local  # (N_all,)
    if values.numel() == 0:
        return torch.zeros_like(entropies, dtype=torch.bool)
    threshold = torch.quantile(values, 1 - top_entropy_quantile)  # scalar
    return ((entropies.detach() * mask.float()) >= threshold) & mask.bool()  # (B, T)


def entropy_bonus(entropies: torch.Tensor, effective_mask: torch.Tensor, grad_accum_steps: int = 1) -> torch.Tensor:
    """H = sum_t H_t e_t / max(sum_t e_t, 1) / GA over the tokens the policy loss acts on (``e`` = mask x entropy mask).

    Args:
        entropies: (B, T) with grad (the bonus differentiates it). effective_mask: (B, T). grad_accum_steps: GA.

    Returns:
        scalar tensor; the caller subtracts ``coef * H`` from the loss.
    """
    e = effective_mask.to(entropies.dtype)  # (B, T)
    return (entropies * e).sum() / e.sum().clamp(min=1.0) / grad_accum_steps


class EntropyControl:
    """The entropy-bonus coefficient over a run: static (``entropy_coef``) or adaptive (``use_adaptive_entropy``).

    Per micro-batch: :attr:`applied_coef` is subtracted times :func:`entropy_bonus`, then :meth:`observe`
    records its entropy sum and token count. Per optimiser step: :meth:`end_step` (with a cross-process
    sum) updates the coefficient and returns the value TRL logs as ``entropy_coef``. The state
    (:meth:`state_dict`) is TRL's ``entropy_ctrl_state.json``: ``entropy_coef`` and ``last_world_entropy``.

    Args: the GRPOConfig fields ``entropy_coef``, ``use_adaptive_entropy``, ``entropy_coef_min``,
        ``entropy_coef_max``, ``entropy_coef_delta``, ``entropy_target``.
    """

    def __init__(self, entropy_coef: float, use_adaptive_entropy: bool = False, entropy_coef_min: float = 0.0,
                 entropy_coef_max: float = 1.0, entropy_coef_delta: float = 0.005, entropy_target: float = 0.2):
        self.entropy_coef, self.adaptive = float(entropy_coef), bool(use_adaptive_entropy)
        self.coef_min, self.coef_max = entropy_coef_min, entropy_coef_max
        self.coef_delta, self.target = entropy_coef_delta, entropy_target
        self.last_world_entropy = math.inf  # no bonus until a step has measured the entropy
        self._window = torch.zeros(2, dtype=torch.float64)  # [entropy sum, token count] of this step

    @property
    def applied_coef(self) -> float:
        """The coefficient this step's micro-batches use (set at the end of the previous step)."""
        if self.adaptive:
            return self.entropy_coef if self.last_world_entropy <= self.target else 0.0
        return self.entropy_coef

    def observe(self, entropies: torch.Tensor, effective_mask: torch.Tensor) -> None:
        """Add one micro-batch's entropy sum and token count to the step's window (adaptive only). Shapes (B, T)."""
        if self.adaptive:
            e = effective_mask.detach().float()  # (B, T)
            self._window += torch.stack([(entropies.detach().float() * e).sum(), e.sum()]).double().cpu()

    def end_step(self, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> float:
        """Close the optimiser step: H_step = (sum over processes) entropy / tokens; move c; return c.

        Args:
            reduce: sums a (2,) tensor over processes (None = one process); every process must call it.
        """
        if self.adaptive:
            window = reduce(self._window) if reduce is not None else self._window  # (2,)
            world_entropy = (window[0] / window[1].clamp(min=1.0)).item()
            if world_entropy <= self.target:
                self.entropy_coef = min(self.entropy_coef + self.coef_delta, self.coef_max)
            else:
                self.entropy_coef = max(self.entropy_coef - self.coef_delta, self.coef_min)
            self.last_world_entropy = world_entropy
            self._window = torch.zeros(2, dtype=torch.float64)
        return self.entropy_coef

    def state_dict(self) -> dict[str, float]:
        """Plain floats, as TRL's ``entropy_ctrl_state.json``."""
        return {"entropy_coef": self.entropy_coef, "last_world_entropy": self.last_world_entropy}

    def load_state_dict(self, state: dict[str, float]) -> None:
        """Restore :meth:`state_dict`."""
        self.entropy_coef, self.last_world_entropy = float(state["entropy_coef"]), float(state["last_world_entropy"])
