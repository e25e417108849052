"""What a native GRPO run will do, derived once from the parsed config: :class:`NativePlan`.

``build_plan(training_args, script_args)`` runs in :func:`grpo.cli.pipeline.preflight`, before any data or
model is touched, and is handed to :func:`grpo.training.native.train`. Every check of the config against the
native backend (:func:`grpo.training.native_config.check_supported`, whole groups per process, reward weights)
and every value the loop derives from it (batch sizes, precision, reference model, importance
sampling, loss options) lives here, so the loop itself reads no config defaults. Test it with
``pytest tests/test_native.py``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch

from grpo.common.errors import UserError
from grpo.common.hardware import pad_to_multiple_of
from grpo.config.script_args import ScriptArgs
from grpo.maths.entropy import EntropyControl
from grpo.training.native_config import check_supported

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NativePlan:
    """The native loop's settings: the two parsed configs plus everything derived from them.

    Attributes:
        args: the ``trl.GRPOConfig`` (read, never changed).
        script_args: :class:`grpo.config.script_args.ScriptArgs` (defaults when the caller gave none).
        num_generations: G, completions per prompt.
        micro_batch_size: completions per forward/backward (``per_device_train_batch_size``).
        grad_accum_steps: micro-batches per optimizer step (``gradient_accumulation_steps``).
        prompts_per_generation: prompts this process rolls out per generation batch.
        completions_per_generation: completions per process per generation batch (= micro * accumulation).
        autocast_dtype: ``torch.bfloat16`` under ``bf16`` (training forwards), else None (fp32).
        rollout_dtype: the precision rollouts generate in (bf16 under ``bf16``), None = the model's own: a weight
            copy on a CPU, the model itself under autocast on an accelerator (:func:`grpo.generation.sampler.uses_weight_copy`).
        needs_reference: ``beta != 0``: reference log-probs are computed (frozen copy, or LoRA disabled).
        stores_old_logps: ``num_iterations > 1``: the generating policy's log-probs are stored.
        reward_weights: (F,) float32 weights, or None (all 1.0).
        correct_sampling: weight the loss by TRL's importance-sampling correction (vLLM's flag with
            ``use_vllm``, else ``ScriptArgs.sampler_importance_sampling_correction``); only where the
            rollout engine differs from the training forward (vLLM or the bf16 sampler copy).
        correction: ``mode``/``clip_min``/``clip_max`` for :func:`grpo.maths.loss.sampling_correction`.
        loss_kwargs: :func:`grpo.maths.loss.grpo_loss` options except ``num_processes`` (known at run time).
        max_grad_norm: the clipping threshold (inf when ``max_grad_norm`` is 0 or unset).
        pad_to_multiple_of: prompt and completion widths of a micro-batch are padded to a multiple of this
            (TRL's field; unset = 32 on CPU, where oneDNN keeps a kernel and its memory per shape, else 1:
            :func:`grpo.common.hardware.pad_to_multiple_of`).
        entropy_bonus: :class:`grpo.maths.entropy.EntropyControl` arguments when the entropy bonus is on
            (``entropy_coef != 0`` or ``use_adaptive_entropy``, as TRL), else None (see :meth:`new_entropy_control`).
    """

    args: object
    script_args: ScriptArgs
    num_generations: int
    micro_batch_size: int
    grad_accum_steps: int
    prompts_per_generation: int
    completions_per_generation: int
    autocast_dtype: torch.dtype | None
    rollout_dtype: torch.dtype | None
    needs_reference: bool
    stores_old_logps: bool
    reward_weights: torch.Tensor | None
    correct_sampling: bool
    correction: dict
    loss_kwargs: dict
    max_grad_norm: float
    pad_to_multiple_of: int = 1
    entropy_bonus: dict | None = None

    def new_entropy_control(self) -> EntropyControl | None:
        """A fresh entropy-bonus controller for a run (None when the bonus is off); the loop checkpoints its state."""
        return EntropyControl(**self.entropy_bonus) if self.entropy_bonus is not None else None

    @property
    def approximate_rollouts(self) -> bool:
        """Whether completions come from another engine than the training forward (vLLM, or the bf16 copy)."""
        return self.args.use_vllm or self.rollout_dtype is not None

    def max_steps(self, num_rows: int, world: int) -> int:
        """Optimizer steps: ``max_steps`` when set, else enough for ``num_train_epochs`` over ``num_rows`` prompts."""
        if self.args.max_steps > 0:
            return self.args.max_steps
        epochs = self.args.num_train_epochs * num_rows / (self.prompts_per_generation * world)
        return self.args.num_iterations * math.ceil(epochs)


def build_plan(training_args, script_args: ScriptArgs | None = None, num_rewards: int | None = None) -> NativePlan:
    """Check ``training_args`` against the native backend and derive the loop's settings, once.

    Args:
        training_args: the parsed ``trl.GRPOConfig``; not modified.
        script_args: :class:`grpo.config.script_args.ScriptArgs`; None = its defaults.
        num_rewards: number of reward functions, to check ``reward_weights`` against (None skips it).

    Returns:
        The :class:`NativePlan`.

    Raises:
        UserError: a GRPOConfig field the backend does not implement (:func:`check_supported`), micro-batches
            that do not hold whole groups, ``reward_weights`` of the wrong length, ``top_entropy_quantile``
            outside [0, 1], or ``loss_type='vespo'`` with a sequence-level sampling correction (TRL refuses it too).
    """
    args = training_args
    script_args = script_args if script_args is not None else ScriptArgs()
    check_supported(args)
    g, ga, micro = args.num_generations, args.gradient_accumulation_steps, args.per_device_train_batch_size
    if (micro * ga) % g:
        raise UserError(f"per_device_train_batch_size * gradient_accumulation_steps = {micro * ga} is not a "
                        f"multiple of num_generations={g}: the native backend keeps whole groups on each process")
    weights = None if args.reward_weights is None else torch.tensor(args.reward_weights, dtype=torch.float32)
    if weights is not None and num_rewards is not None and len(weights) != num_rewards:
        raise UserError(f"reward_weights has {len(weights)} values for {num_rewards} reward functions")
    low = torch.bfloat16 if args.bf16 else None
    pad = pad_to_multiple_of(args.pad_to_multiple_of, args.use_cpu)
    correct = args.vllm_importance_sampling_correction if args.use_vllm else script_args.sampler_importance_sampling_correction
    correct = bool(correct) and (args.use_vllm or low is not None)  # only an engine other than the forward is corrected
    if not 0.0 <= args.top_entropy_quantile <= 1.0:
        raise UserError(f"top_entropy_quantile={args.top_entropy_quantile}: must be in [0, 1] (1 keeps every token)")
    if args.loss_type == "vespo" and correct and args.vllm_importance_sampling_mode.startswith("sequence"):
        raise UserError(f"loss_type='vespo' takes token-level sampling correction only: set "
                        f"vllm_importance_sampling_mode to token_truncate or token_mask (got "
                        f"{args.vllm_importance_sampling_mode!r})")
    bonus = args.entropy_coef != 0.0 or args.use_adaptive_entropy
    level = args.importance_sampling_level  # TRL's advice on objective/level pairs, as warnings (GRPOTrainer.__init__)
    if (args.loss_type, level) in (("luspo", "token"), ("vespo", "sequence")) or (
            level == "sequence" and args.loss_type in ("bnpo", "dr_grpo", "dapo", "cispo")):
        log.warning("loss_type=%r with importance_sampling_level=%r: the paper's setup is %s", args.loss_type, level,
                    {"luspo": "'sequence'", "vespo": "'token' (VESPO weighs whole sequences itself)"}.get(
                        args.loss_type, "loss_type='grpo' at sequence level (GSPO); this one weights sequences by "
                        "length"))
    return NativePlan(
        args=args, script_args=script_args, num_generations=g, micro_batch_size=micro, grad_accum_steps=ga,
        prompts_per_generation=micro * ga // g, completions_per_generation=micro * ga,
        autocast_dtype=low, rollout_dtype=low, needs_reference=args.beta != 0.0, stores_old_logps=args.num_iterations > 1,
        reward_weights=weights, correct_sampling=correct,
        correction=dict(mode=args.vllm_importance_sampling_mode, clip_min=args.vllm_importance_sampling_clip_min,
                        clip_max=args.vllm_importance_sampling_clip_max),
        loss_kwargs=dict(beta=args.beta, epsilon=args.epsilon, epsilon_high=args.epsilon_high, loss_type=args.loss_type,
                         importance_sampling_level=args.importance_sampling_level, grad_accum_steps=ga,
                         use_bias_correction_kl=args.use_bias_correction_kl,
                         max_completion_length=args.max_completion_length, delta=args.delta,
                         sapo_temperature_pos=args.sapo_temperature_pos, sapo_temperature_neg=args.sapo_temperature_neg,
                         **{k: getattr(args, k) for k in ("vespo_k_pos", "vespo_lambda_pos", "vespo_k_neg",
                                                          "vespo_lambda_neg", "top_entropy_quantile",
                                                          "off_policy_mask_threshold")}),
        max_grad_norm=args.max_grad_norm if args.max_grad_norm and args.max_grad_norm > 0 else float("inf"),
        pad_to_multiple_of=pad,
        entropy_bonus=dict(entropy_coef=args.entropy_coef, use_adaptive_entropy=args.use_adaptive_entropy,
                           entropy_coef_min=args.entropy_coef_min, entropy_coef_max=args.entropy_coef_max,
                           entropy_coef_delta=args.entropy_coef_delta,
                           entropy_target=args.entropy_target) if bonus else None,
    )
