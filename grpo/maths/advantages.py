"""Group-relative advantages for GRPO (pure tensor functions, no model, no config).

GRPO replaces PPO's learned value baseline with the mean reward of the G completions sampled
for the same prompt (DeepSeekMath, arXiv:2402.03300, eq. 3 / section 4.1.2 "outcome supervision"):

    A_i = (r_i - mean(r_1..r_G)) / (std(r_1..r_G) + 1e-4)

Dr. GRPO (arXiv:2503.20783) argues the division by the group std biases the update toward
too-easy / too-hard prompts and drops it (`scale_rewards="none"`); TRL also offers the batch std
(`scale_rewards="batch"`, as in PPO-style reward whitening). Semantics follow trl 1.16
`GRPOTrainer._generate_and_score_completions` ("sum_then_normalize"):

- a reward function's `None` is NaN here and is skipped (`nansum`) when the weighted rewards are
  summed; a completion that every function skipped gets a NaN reward, is left out of its group's
  mean/std, and its advantage is 0;
- the std is Bessel-corrected (n - 1); a group whose rewards all tie has std 0 and advantage 0
  (numerator 0) and counts toward `frac_reward_zero_std`.

With several reward functions, `multi_objective_aggregation="normalize_then_sum"` (GDPO,
arXiv:2601.05242) normalises each function within its group first, sums the weighted normalised
rewards, then whitens the sum over the batch (`normalize_then_sum`; `scale_rewards` is not used).

Each aggregation is an advantage estimator in :data:`ADVANTAGE_ESTIMATORS`, looked up by name as the loss types
are (:mod:`grpo.maths.objectives`): a new one is ``@register_advantage_estimator("name")`` over a function
``(rewards_per_func (N, F), num_generations, weights, scale_rewards) -> (advantages (N,), metrics)``, then
``multi_objective_aggregation="name"`` selects it.

Run the hand-computed checks with: `pytest tests/test_advantages.py tests/test_loss_objectives.py -k advantages`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

SCALE_REWARDS = ("group", "batch", "none")
# multi_objective_aggregation name -> estimator (filled by register_advantage_estimator below)
ADVANTAGE_ESTIMATORS: dict[str, Callable] = {}


def register_advantage_estimator(name: str):
    """Decorator registering ``fn(rewards_per_func, num_generations, weights, scale_rewards) -> (advantages,
    metrics)`` as ``multi_objective_aggregation=name`` (metrics must hold ``frac_reward_zero_std``)."""
    def register(fn):
        ADVANTAGE_ESTIMATORS[name] = fn
        return fn

    return register


def nanstd(x: torch.Tensor, dim: int | None = None, keepdim: bool = False) -> torch.Tensor:
    """Bessel-corrected standard deviation ignoring NaNs (torch has no `nanstd`).

    Args:
        x: float tensor of any shape.
        dim: dimension to reduce; None reduces everything.
        keepdim: keep the reduced dimension (size 1).

    Returns:
        std with `dim` reduced; NaN where fewer than two finite values exist.
    """
    if dim is None:
        x, dim = x.reshape(-1), 0  # (N,)
    mean = torch.nanmean(x, dim=dim, keepdim=True)  # (..., 1, ...)
    sq = torch.nanmean((x - mean) ** 2, dim=dim, keepdim=True)  # (..., 1, ...)
    count = (~torch.isnan(x)).sum(dim=dim, keepdim=True).to(x.dtype)  # (..., 1, ...)
    var = torch.where(count > 1, sq * count / (count - 1), torch.full_like(sq, float("nan")))
    std = var.sqrt()  # (..., 1, ...)
    return std if keepdim else std.squeeze(dim)


def combine_rewards(rewards_per_func: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted sum of the reward functions, before any normalisation.

    Args:
        rewards_per_func: (N, F) rewards of N completions from F functions; NaN = the function
            returned None for that completion.
        weights: (F,) reward weights; None means all 1.0 (GRPOConfig.reward_weights=None).

    Returns:
        (N,) total reward per completion; NaN where every function returned None.
    """
    num_funcs = rewards_per_func.shape[1]
    if weights is None:
        weights = torch.ones(num_funcs, dtype=rewards_per_func.dtype)  # (F,)
    weights = weights.to(rewards_per_func)  # (F,)
    total = (rewards_per_func * weights.unsqueeze(0)).nansum(dim=1)  # (N,)
    unscorable = torch.isnan(rewards_per_func).all(dim=1)  # (N,)
    return total.masked_fill(unscorable, float("nan"))  # (N,)


def group_advantages(
    rewards: torch.Tensor, num_generations: int, scale_rewards: str = "group"
) -> tuple[torch.Tensor, dict[str, float]]:
    """GRPO advantages: reward minus its group mean, optionally divided by a std.

    Equation (DeepSeekMath eq. 3; Dr. GRPO sec. 3.2 for "none"):
        A_i = (r_i - mean_g(r)) / (s + 1e-4),  s = std_g(r) ("group"), std_batch(r) ("batch"),
        and no division for "none".

    Args:
        rewards: (N,) combined rewards, N = number of prompts x num_generations, each prompt's
            completions contiguous; NaN = unscorable (excluded from mean/std, advantage 0).
        num_generations: G, completions per prompt (N % G == 0).
        scale_rewards: "group", "batch" or "none".

    Returns:
        advantages: (N,) float tensor, no NaN.
        metrics: {"frac_reward_zero_std": fraction of completions whose scaling std is 0
            (for "group"/"none" the group std, for "batch" the batch std)}.

    Raises:
        ValueError: unknown scale_rewards or N not divisible by G.
    """
    if scale_rewards not in SCALE_REWARDS:
        raise ValueError(f"scale_rewards={scale_rewards!r}: expected one of {SCALE_REWARDS}")
    if rewards.numel() % num_generations:
        raise ValueError(f"{rewards.numel()} rewards are not a whole number of groups of {num_generations}")
    grouped = rewards.view(-1, num_generations)  # (P, G)
    mean = torch.nanmean(grouped, dim=1).repeat_interleave(num_generations)  # (N,)
    if scale_rewards == "batch":
        std = nanstd(rewards).expand_as(rewards) if rewards.numel() > 1 else torch.zeros_like(rewards)  # (N,)
    elif num_generations > 1:  # "none" still computes the group std, only to report zero-spread groups
        std = nanstd(grouped, dim=1).repeat_interleave(num_generations)  # (N,)
    else:
        std = torch.zeros_like(rewards)  # (N,)
    advantages = rewards - mean  # (N,)
    if scale_rewards != "none":
        advantages = advantages / (std + 1e-4)  # (N,)
    is_std_zero = torch.isclose(std, torch.zeros_like(std))  # (N,)
    advantages = torch.nan_to_num(advantages, nan=0.0)  # (N,) unscorable rows carry no signal
    return advantages, {"frac_reward_zero_std": is_std_zero.float().mean().item()}


@register_advantage_estimator("sum_then_normalize")
def sum_then_normalize(
    rewards_per_func: torch.Tensor, num_generations: int, weights: torch.Tensor | None = None,
    scale_rewards: str = "group",
) -> tuple[torch.Tensor, dict[str, float]]:
    """TRL's default: :func:`group_advantages` of the weighted sum :func:`combine_rewards` (with ``scale_rewards``)."""
    return group_advantages(combine_rewards(rewards_per_func, weights), num_generations, scale_rewards)


@register_advantage_estimator("normalize_then_sum")
def normalize_then_sum(
    rewards_per_func: torch.Tensor, num_generations: int, weights: torch.Tensor | None = None,
    scale_rewards: str = "group",
) -> tuple[torch.Tensor, dict[str, float]]:
    """GDPO advantages (arXiv:2601.05242, group reward-decoupled normalisation), as trl 1.16 computes them.

        z_ik = (r_ik - mean_g(r_k)) / (std_g(r_k) + 1e-4)         per function k, within each group g
        s_i  = sum_k w_k z_ik   (NaN terms skipped; NaN where every function returned None)
        A_i  = (s_i - mean_batch(s)) / (std_batch(s) + 1e-4)

    Args:
        rewards_per_func: (N, F) rewards, prompt-major groups of ``num_generations``; NaN = returned None.
        num_generations: G. weights: (F,) or None (all 1.0). scale_rewards: not used (GDPO always whitens).

    Returns:
        advantages: (N,) no NaN (unscorable rows 0); metrics: {"frac_reward_zero_std": share of rows whose
        batch std of s is 0}.

    Raises:
        ValueError: N not divisible by G.
    """
    n, num_funcs = rewards_per_func.shape
    if n % num_generations:
        raise ValueError(f"{n} rewards are not a whole number of groups of {num_generations}")
    if weights is None:
        weights = torch.ones(num_funcs, dtype=rewards_per_func.dtype)  # (F,)
    grouped = rewards_per_func.view(-1, num_generations, num_funcs)  # (P, G, F)
    mean_k = torch.nanmean(grouped, dim=1, keepdim=True)  # (P, 1, F)
    std_k = nanstd(grouped, dim=1, keepdim=True) if num_generations > 1 else torch.zeros_like(mean_k)  # (P, 1, F)
    z = ((grouped - mean_k) / (std_k + 1e-4)).view(-1, num_funcs)  # (N, F)
    summed = (z * weights.to(z).unsqueeze(0)).nansum(dim=1)  # (N,)
    summed = summed.masked_fill(torch.isnan(rewards_per_func).all(dim=1), float("nan"))  # (N,)
    std = nanstd(summed).expand_as(summed) if summed.numel() > 1 else torch.zeros_like(summed)  # (N,)
    advantages = (summed - torch.nanmean(summed)) / (std + 1e-4)  # (N,)
    is_std_zero = torch.isclose(std, torch.zeros_like(std))  # (N,)
    return torch.nan_to_num(advantages, nan=0.0), {"frac_reward_zero_std": is_std_zero.float().mean().item()}


def advantages_from_rewards(
    rewards_per_func: torch.Tensor,
    num_generations: int,
    weights: torch.Tensor | None = None,
    scale_rewards: str = "group",
    multi_objective_aggregation: str = "sum_then_normalize",
) -> tuple[torch.Tensor, dict[str, float]]:
    """Advantages from the (N, F) reward table by GRPOConfig's ``multi_objective_aggregation``: the estimator
    registered under that name (:data:`ADVANTAGE_ESTIMATORS`; "sum_then_normalize": :func:`sum_then_normalize`,
    "normalize_then_sum": :func:`normalize_then_sum`).

    Raises:
        ValueError: an unknown aggregation (or the errors of the chosen function).
    """
    if multi_objective_aggregation not in ADVANTAGE_ESTIMATORS:
        raise ValueError(f"multi_objective_aggregation={multi_objective_aggregation!r}: expected one of "
                         f"{tuple(ADVANTAGE_ESTIMATORS)}")
    return ADVANTAGE_ESTIMATORS[multi_objective_aggregation](rewards_per_func, num_generations, weights, scale_rewards)


def reward_metrics(
    rewards_per_func: torch.Tensor, weights: torch.Tensor | None, names: list[str]
) -> dict[str, float]:
    """TRL's reward log lines: `reward`, `reward_std`, `rewards/<name>/mean`, `rewards/<name>/std`.

    Args:
        rewards_per_func: (N, F) rewards, NaN where a function returned None.
        weights: (F,) reward weights or None (all 1.0).
        names: F function names (`__name__`), used in the metric keys.

    Returns:
        dict of floats (NaN when a function returned None for every completion, as TRL).
    """
    out: dict[str, float] = {}
    for i, name in enumerate(names):
        out[f"rewards/{name}/mean"] = torch.nanmean(rewards_per_func[:, i]).item()
        out[f"rewards/{name}/std"] = nanstd(rewards_per_func[:, i]).item()
    total = combine_rewards(rewards_per_func, weights)  # (N,)
    out["reward"] = torch.nanmean(total).item()
    out["reward_std"] = nanstd(total).item()
    return out
