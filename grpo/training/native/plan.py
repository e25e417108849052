"""What a native GRPO run will do, derived once from the parsed config: :class:`NativePlan`.

``build_plan(training_args, script_args)`` runs in :func:`grpo.cli.pipeline.preflight`, before any data or
model is touched, and is handed to :func:`grpo.training.native.train`. Every check of the config against the
native backend (:func:`grpo.training.native.fields.check_supported`, whole groups per process, reward weights)
and every value the loop and its experience step read from it (batch sizes, precision, reference model,
importance sampling, loss options, schedule, logging and checkpoint settings) lives here: the loop reads its
configuration from the plan only, and hands ``plan.args`` whole to the builders that take a GRPOConfig (the
optimizer, the vLLM engine, the trackers). Test it with ``pytest tests/test_native.py``.
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
from grpo.training.native.fields import check_supported

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NativePlan:
    """The native loop's settings: the two parsed configs plus everything derived from them.

    Attributes:
        args: the ``trl.GRPOConfig`` (read, never changed).
        script_args: :class:`grpo.config.script_args.ScriptArgs` (defaults when the caller gave none).
        num_generations: G, completions per prompt.
        micro_batch_size: completions per forward/backward (``per_device_train_batch_size``, or chosen by
            :func:`choose_micro_batch` when the user set neither it nor the accumulation).
        grad_accum_steps: micro-batches per optimizer step (``gradient_accumulation_steps``, scaled likewise).
        steps_per_generation: micro-batches per generation batch (TRL's ``steps_per_generation``, scaled likewise):
            one rollout serves ``steps_per_generation / grad_accum_steps`` optimizer steps (times ``num_iterations``).
        prompts_per_generation: prompts this process rolls out per generation batch.
        completions_per_generation: completions per process per generation batch (= micro * steps_per_generation).
        autocast_dtype: ``torch.bfloat16`` under ``bf16`` (training forwards), else None (fp32).
        rollout_dtype: the precision rollouts generate in (bf16 under ``bf16``), None = the model's own: a weight
            copy on a CPU, the model itself under autocast on an accelerator (:func:`grpo.generation.sampler.uses_weight_copy`).
        needs_reference: ``beta != 0``: reference log-probs are computed (frozen copy, or LoRA disabled).
        stores_old_logps: the generating policy's log-probs are stored, because some micro-batch of a generation
            batch is trained after an optimizer step (TRL: ``gradient_accumulation_steps % (steps_per_generation *
            num_iterations) != 0``).
        sync_ref_every: ``sync_ref_model``: mix the policy into the frozen reference every this many optimizer
            steps (``ref_model_sync_steps``), with weight ``ref_mixup_alpha``; 0 = never.
        ref_mixup_alpha: TR-DPO's alpha (``ref_model_mixup_alpha``).
        sampling: the sampler's options (:func:`grpo.generation.sampler.generate` keywords: temperature, top_p,
            top_k, min_p, repetition_penalty), ``generation_kwargs`` merged over them as TRL merges them.
        chat_template_kwargs: extra ``apply_chat_template`` keywords for chat prompts (TRL's field).
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
        use_vllm, disable_dropout, temperature, num_iterations, seed, shuffle_dataset, max_completion_length,
        scale_rewards, multi_objective_aggregation, mask_truncated_completions, logging_steps, lr_scheduler_type,
        lr_scheduler_kwargs, output_dir, resume_from_checkpoint, disable_tqdm, save_total_limit: the GRPOConfig
            fields of those names, as given (``lr_scheduler_kwargs`` None -> ``{}``).
        save_steps: save a checkpoint every this many optimizer steps; 0 = never (``save_strategy`` not ``steps``,
            or ``save_steps`` unset).
        dynamic_sampling, dynamic_sampling_max_retries: the ScriptArgs fields (DAPO's dynamic sampling).
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
    sync_ref_every: int
    ref_mixup_alpha: float
    sampling: dict
    chat_template_kwargs: dict
    steps_per_generation: int
    reward_weights: torch.Tensor | None
    correct_sampling: bool
    correction: dict
    loss_kwargs: dict
    max_grad_norm: float
    use_vllm: bool
    disable_dropout: bool
    temperature: float
    num_iterations: int
    seed: int
    shuffle_dataset: bool
    max_completion_length: int
    scale_rewards: object
    multi_objective_aggregation: str
    mask_truncated_completions: bool
    logging_steps: float
    lr_scheduler_type: object
    lr_scheduler_kwargs: dict
    output_dir: str
    resume_from_checkpoint: object
    disable_tqdm: bool | None
    save_steps: float
    save_total_limit: int | None
    dynamic_sampling: bool
    dynamic_sampling_max_retries: int
    pad_to_multiple_of: int = 1
    entropy_bonus: dict | None = None

    def new_entropy_control(self) -> EntropyControl | None:
        """A fresh entropy-bonus controller for a run (None when the bonus is off); the loop checkpoints its state."""
        return EntropyControl(**self.entropy_bonus) if self.entropy_bonus is not None else None

    @property
    def approximate_rollouts(self) -> bool:
        """Whether completions come from another engine than the training forward (vLLM, or the bf16 copy)."""
        return self.use_vllm or self.rollout_dtype is not None

    def warmup_steps(self, max_steps: int) -> int:
        """Warm-up steps of the learning-rate schedule for a run of ``max_steps`` (``TrainingArguments.get_warmup_steps``)."""
        return self.args.get_warmup_steps(max_steps)

    def default_device(self) -> torch.device:
        """Where to train when the caller names no device: ``TrainingArguments.device`` (this process's GPU under a
        launcher, else the CPU)."""
        return self.args.device

    def should_save(self, step: int) -> bool:
        """Whether to write a checkpoint after optimizer step ``step``."""
        return bool(self.save_steps) and step % self.save_steps == 0

    def max_steps(self, num_rows: int, world: int) -> int:
        """Optimizer steps: ``max_steps`` when set, else enough for ``num_train_epochs`` over ``num_rows`` prompts."""
        if self.args.max_steps > 0:
            return self.args.max_steps
        generations = math.ceil(self.args.num_train_epochs * num_rows / (self.prompts_per_generation * world))
        return math.ceil(generations * self.args.num_iterations * self.steps_per_generation / self.grad_accum_steps)


# Completion tokens one training forward may hold when the user left the micro-batch to us. The activations kept
# for backward grow with completions x tokens: ~1.9 MB per token for SmolLM2-135M with LoRA under bf16 autocast
# (the demo config: 2 x 200 tokens per forward peaked at 3.6 GB, 4 x 200 at 4.3-4.6 GB). One forward + backward
# of completions of 240..512 tokens peaked at 6.9 GB with 8 per forward (TRL's defaults), 3.1 GB with 2, 2.5 GB
# with 1 (scripts/bench_memory.py --micro_batch 8 2 1 --widths 240 512, 2026-12-07, contended 2-core EPYC).
# `grpo train` with no config on a one-row file (completions 237 tokens on average): peak 3.5 GB for one step
# (/usr/bin/time -v), against 10.3 GB before this choice existed.
TOKENS_PER_FORWARD = 512
# The fields that fix the micro-batch layout; when the user gave none of them, :func:`choose_micro_batch` may split.
LAYOUT_FIELDS = frozenset({"per_device_train_batch_size", "gradient_accumulation_steps", "steps_per_generation",
                           "generation_batch_size"})
# generation_kwargs keys the sampler (and the native vLLM engines) implement, as GenerationConfig / SamplingParams name them
SAMPLING_KEYS = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty")


def choose_micro_batch(per_device: int, max_completion_length: int, loss_type: str) -> int:
    """Completions per forward when the user set no batch layout: the largest divisor of ``per_device`` whose
    forward holds at most :data:`TOKENS_PER_FORWARD` completion tokens (at least 1).

    Splitting a micro-batch of B into B/m micro-batches of m, with the accumulation and ``steps_per_generation``
    multiplied by B/m, leaves each optimizer step's loss the same (up to float rounding) for every TRL loss type
    but one: grpo, sapo and luspo average per sequence, dr_grpo divides by B x max_completion_length, and
    dapo, cispo and vespo by the generation batch's tokens; ``bnpo`` divides by the micro-batch's own token
    count, so it keeps ``per_device``.
    """
    if loss_type == "bnpo":
        return per_device
    fits = [m for m in range(1, per_device + 1) if per_device % m == 0 and m * max_completion_length <= TOKENS_PER_FORWARD]
    return max(fits, default=1)


def _sampling(args) -> dict:
    """The sampler's keyword options: GRPOConfig's sampling fields, with ``generation_kwargs`` over them (TRL's order)."""
    extra = args.generation_kwargs or {}
    if isinstance(extra, str):  # GRPOConfig keeps a JSON string from the command line as given
        import json

        extra = json.loads(extra)
    unknown = sorted(set(extra) - set(SAMPLING_KEYS))
    if unknown:
        raise UserError(f"generation_kwargs {unknown}: the native sampler implements {', '.join(SAMPLING_KEYS)}; "
                        f"drop the others or use --backend trl")
    values = {**{k: getattr(args, k) for k in SAMPLING_KEYS}, **extra}
    if values["min_p"] is not None and not 0 <= values["min_p"] <= 1:
        raise UserError(f"min_p={values['min_p']}: must be in [0, 1]")
    if not values["repetition_penalty"] > 0:
        raise UserError(f"repetition_penalty={values['repetition_penalty']}: must be > 0 (1.0 = no penalty)")
    return values


def build_plan(training_args, script_args: ScriptArgs | None = None, num_rewards: int | None = None,
               given: frozenset | None = None) -> NativePlan:
    """Check ``training_args`` against the native backend and derive the loop's settings, once.

    Args:
        training_args: the parsed ``trl.GRPOConfig``; not modified.
        script_args: :class:`grpo.config.script_args.ScriptArgs`; None = its defaults.
        num_rewards: number of reward functions, to check ``reward_weights`` against (None skips it).
        given: the config keys the user set (YAML or command line, :func:`grpo.config.parser.given_keys`);
            when it names none of :data:`LAYOUT_FIELDS`, the micro-batch is chosen by :func:`choose_micro_batch`
            (one warning line says so). None = treat every field as set (library callers, tests).

    Returns:
        The :class:`NativePlan`.

    Raises:
        UserError: a GRPOConfig field the backend does not implement (:func:`check_supported`), micro-batches
            that do not hold whole groups, ``reward_weights`` of the wrong length, ``top_entropy_quantile``
            outside [0, 1], ``loss_type='vespo'`` with a sequence-level sampling correction (TRL refuses it too),
            ``sync_ref_model`` without a reference to sync (``beta == 0``) or with LoRA (TRL refuses both), bad
            ``generation_kwargs``.
    """
    args = training_args
    script_args = script_args if script_args is not None else ScriptArgs()
    check_supported(args)
    g, ga, micro, spg = (args.num_generations, args.gradient_accumulation_steps, args.per_device_train_batch_size,
                         args.steps_per_generation)
    if (micro * spg) % g:
        raise UserError(f"per_device_train_batch_size * steps_per_generation = {micro * spg} is not a multiple of "
                        f"num_generations={g}: the native backend keeps whole groups on each process")
    if given is not None and not LAYOUT_FIELDS & set(given):
        chosen = choose_micro_batch(micro, args.max_completion_length, args.loss_type)
        if chosen != micro:
            log.info("micro-batch chosen for memory: per_device_train_batch_size=%d, gradient_accumulation_steps=%d "
                        "(unset, %d completions of up to %d tokens would keep their activations in one forward); the "
                        "optimizer step is the same; set per_device_train_batch_size to choose", chosen,
                        ga * micro // chosen, micro, args.max_completion_length)
            ga, spg, micro = ga * micro // chosen, spg * micro // chosen, chosen
    if args.sync_ref_model and args.beta == 0.0:
        raise UserError("sync_ref_model=True with beta=0.0: no reference model is used, so there is nothing to sync; "
                        "set beta > 0 or unset sync_ref_model")
    if args.sync_ref_model and (script_args.use_peft or script_args.load_in_4bit):
        raise UserError("sync_ref_model=True with LoRA (use_peft): the reference is the model with its adapters "
                        "disabled, not a separate copy to sync (TRL refuses this too); use --use_peft false or unset it")
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
    chat_kwargs = args.chat_template_kwargs or {}
    if isinstance(chat_kwargs, str):
        import json

        chat_kwargs = json.loads(chat_kwargs)
    return NativePlan(
        args=args, script_args=script_args, num_generations=g, micro_batch_size=micro, grad_accum_steps=ga,
        steps_per_generation=spg, prompts_per_generation=micro * spg // g, completions_per_generation=micro * spg,
        autocast_dtype=low, rollout_dtype=low, needs_reference=args.beta != 0.0,
        stores_old_logps=ga % (spg * args.num_iterations) != 0,
        sync_ref_every=args.ref_model_sync_steps if args.sync_ref_model else 0, ref_mixup_alpha=args.ref_model_mixup_alpha,
        sampling=_sampling(args), chat_template_kwargs=dict(chat_kwargs),
        reward_weights=weights, correct_sampling=correct,
        correction=dict(mode=args.vllm_importance_sampling_mode, clip_min=args.vllm_importance_sampling_clip_min,
                        clip_max=args.vllm_importance_sampling_clip_max),
        loss_kwargs=dict(beta=args.beta, epsilon=args.epsilon, epsilon_high=args.epsilon_high, loss_type=args.loss_type,
                         importance_sampling_level=args.importance_sampling_level, grad_accum_steps=ga,
                         steps_per_generation=spg, use_bias_correction_kl=args.use_bias_correction_kl,
                         max_completion_length=args.max_completion_length, delta=args.delta,
                         sapo_temperature_pos=args.sapo_temperature_pos, sapo_temperature_neg=args.sapo_temperature_neg,
                         **{k: getattr(args, k) for k in ("vespo_k_pos", "vespo_lambda_pos", "vespo_k_neg",
                                                          "vespo_lambda_neg", "top_entropy_quantile",
                                                          "off_policy_mask_threshold")}),
        max_grad_norm=args.max_grad_norm if args.max_grad_norm and args.max_grad_norm > 0 else float("inf"),
        pad_to_multiple_of=pad, use_vllm=args.use_vllm, disable_dropout=args.disable_dropout,
        temperature=args.temperature, num_iterations=args.num_iterations, seed=args.seed,
        shuffle_dataset=args.shuffle_dataset, max_completion_length=args.max_completion_length,
        scale_rewards=args.scale_rewards, multi_objective_aggregation=args.multi_objective_aggregation,
        mask_truncated_completions=args.mask_truncated_completions, logging_steps=args.logging_steps,
        lr_scheduler_type=args.lr_scheduler_type, lr_scheduler_kwargs=args.lr_scheduler_kwargs or {},
        output_dir=args.output_dir, resume_from_checkpoint=args.resume_from_checkpoint, disable_tqdm=args.disable_tqdm,
        save_steps=args.save_steps if str(args.save_strategy).lower().endswith("steps") and args.save_steps else 0,
        save_total_limit=args.save_total_limit, dynamic_sampling=script_args.dynamic_sampling,
        dynamic_sampling_max_retries=script_args.dynamic_sampling_max_retries,
        entropy_bonus=dict(entropy_coef=args.entropy_coef, use_adaptive_entropy=args.use_adaptive_entropy,
                           entropy_coef_min=args.entropy_coef_min, entropy_coef_max=args.entropy_coef_max,
                           entropy_coef_delta=args.entropy_coef_delta,
                           entropy_target=args.entropy_target) if bonus else None,
    )
