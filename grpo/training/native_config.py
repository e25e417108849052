"""Which trl.GRPOConfig fields the native backend (grpo/training/native.py) honours, ignores or refuses.

``check_supported(args)`` runs once, before any work (:func:`grpo.training.native_plan.build_plan`, called by
grpo.cli.pipeline.preflight): a field outside SUPPORTED/IGNORED set away from its default stops the run
with one line naming the field.
"""

from __future__ import annotations

import dataclasses

from grpo.common.errors import UserError
from grpo.maths.advantages import MULTI_OBJECTIVE_AGGREGATIONS
from grpo.maths.objectives import POLICY_LOSSES
from grpo.modeling.quantization import BNB_OPTIMIZERS

# Honoured exactly as trl.GRPOTrainer does (see the module docstring for the differences).
SUPPORTED = set("""
    num_generations per_device_train_batch_size gradient_accumulation_steps learning_rate lr_scheduler_type
    lr_scheduler_kwargs warmup_steps weight_decay adam_beta1 adam_beta2 adam_epsilon optim max_steps num_train_epochs
    num_iterations beta epsilon epsilon_high loss_type scale_rewards importance_sampling_level use_bias_correction_kl
    mask_truncated_completions max_grad_norm temperature top_p top_k max_completion_length logging_steps save_steps
    save_strategy save_total_limit seed reward_weights bf16 disable_dropout use_vllm vllm_gpu_memory_utilization
    vllm_max_model_length vllm_enable_sleep_mode shuffle_dataset resume_from_checkpoint use_cpu vllm_mode
    vllm_server_base_url vllm_server_host vllm_server_port vllm_server_timeout vllm_group_port
    vllm_importance_sampling_correction vllm_importance_sampling_mode vllm_importance_sampling_clip_min
    vllm_importance_sampling_clip_max vllm_importance_sampling_cap pad_to_multiple_of
    delta sapo_temperature_neg sapo_temperature_pos vespo_k_pos vespo_lambda_pos vespo_k_neg vespo_lambda_neg
    top_entropy_quantile entropy_coef use_adaptive_entropy entropy_coef_min entropy_coef_max entropy_coef_delta
    entropy_target multi_objective_aggregation off_policy_mask_threshold""".split())
# No effect on the optimisation: paths, reporting, hub, dataloader and launcher plumbing, and activation
# checkpointing (a memory knob; HF's version disables the KV cache that `completion_logps` shares), and the
# best-model fields (no evaluation during native training; HF derives them from lr_scheduler_type).
IGNORED = set("""
    gradient_checkpointing activation_checkpointing
    output_dir run_name project report_to logging_strategy logging_first_step log_level log_level_replica
    log_on_each_node logging_nan_inf_filter disable_tqdm log_completions num_completions_to_print log_unique_prompts
    log_multimodal push_to_hub hub_token hub_private_repo hub_model_id hub_strategy hub_always_push hub_revision
    trackio_space_id trackio_bucket_id trackio_static_space_id dataloader_drop_last dataloader_num_workers
    dataloader_pin_memory dataloader_persistent_workers dataloader_prefetch_factor dataloader_multiprocessing_context
    dataloader_in_order remove_unused_columns local_rank ddp_backend ddp_timeout ddp_find_unused_parameters
    ddp_bucket_cap_mb ddp_broadcast_buffers ddp_static_graph do_train do_eval do_predict skip_memory_metrics
    save_on_each_node save_only_model per_device_eval_batch_size num_generations_eval accelerator_config
    model_init_kwargs trust_remote_code tf32 include_num_input_tokens_seen ignore_data_skip
    gradient_checkpointing_kwargs activation_checkpointing_kwargs torch_empty_cache_steps cast_lm_head_to_fp32
    debug metric_for_best_model greater_is_better""".split())


def _default(field):
    """A dataclass field's declared default (None when it has none)."""
    if field.default is not dataclasses.MISSING:
        return field.default
    return field.default_factory() if field.default_factory is not dataclasses.MISSING else None


def check_supported(args) -> None:
    """Refuse GRPOConfig fields this backend does not implement, when set away from their defaults.

    Two fields are derived by ``GRPOConfig.__post_init__`` from SUPPORTED ones, so their expected value is
    derived the same way (no second GRPOConfig is built): ``steps_per_generation`` =
    ``gradient_accumulation_steps``, ``generation_batch_size`` = per-device batch x processes x that.

    Raises:
        UserError: naming the first offending field, its value and the alternative.
    """
    from trl import GRPOConfig

    ga = args.gradient_accumulation_steps
    derived = {"steps_per_generation": ga, "generation_batch_size": args.per_device_train_batch_size * args.world_size * ga}
    for field in (f for f in dataclasses.fields(GRPOConfig) if f.init):
        name = field.name
        if name in SUPPORTED or name in IGNORED or (name.startswith("vllm_") and not args.use_vllm):
            continue
        value, default = getattr(args, name), derived.get(name, _default(field))
        if value != default and repr(value) != repr(default):
            raise UserError(f"{name}={value!r} is not implemented by the native backend (default {default!r}): "
                            f"unset it or use --backend trl")
    for name, allowed in (("loss_type", tuple(POLICY_LOSSES)),  # the registered objectives, read at call time
                          ("multi_objective_aggregation", MULTI_OBJECTIVE_AGGREGATIONS),
                          ("optim", ("adamw_torch", "adamw_torch_fused", *BNB_OPTIMIZERS)),
                          ("save_strategy", ("steps", "no")), ("fp16", ("False",))):
        value = str(getattr(getattr(args, name), "value", getattr(args, name))).lower()  # enums: their value
        if value not in {a.lower() for a in allowed}:
            raise UserError(f"{name}={getattr(args, name)!r}: the native backend supports {', '.join(allowed)}")
