"""Which trl.GRPOConfig fields the native backend (grpo/training/native/loop.py) honours, ignores or refuses.

``check_supported(args)`` runs once, before any work (:func:`grpo.training.native.plan.build_plan`, called by
grpo.cli.pipeline.preflight): a field outside SUPPORTED/IGNORED set away from its default stops the run
with one line naming the field.
"""

from __future__ import annotations

import dataclasses

from grpo.common.errors import UserError
from grpo.maths.advantages import ADVANTAGE_ESTIMATORS
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
    entropy_target multi_objective_aggregation off_policy_mask_threshold
    steps_per_generation generation_batch_size sync_ref_model ref_model_mixup_alpha ref_model_sync_steps
    min_p repetition_penalty generation_kwargs chat_template_kwargs""".split())
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
    debug metric_for_best_model greater_is_better
    cache_implementation use_transformers_paged use_transformers_continuous_batching
    transformers_continuous_batching_config ds3_gather_for_generation""".split())
# Refused when set away from the default, with the reason (one field per line; a field leaves this table when the
# native backend learns it). Everything else not SUPPORTED or IGNORED is refused too, without a reason.
REFUSED = {
    "router_aux_loss_coef": "the native loss has no Mixture-of-Experts load-balancing term",
    "max_tool_calling_iterations": "tool calling (agent training) is not implemented by the native rollout",
    "log_completions_hub_repo": "completions are written to samples.jsonl, not pushed to a hub dataset",
    "vllm_model_impl": "the native vLLM engine loads vLLM's own model implementation",
    "vllm_structured_outputs_regex": "structured (regex-guided) outputs are not passed to the native vLLM engine",
    "vllm_tensor_parallel_size": "the native colocated vLLM engine runs on one GPU per process",
}

# What differs from trl.GRPOTrainer, or needs saying, for honoured/ignored fields (docs/grpo_config_fields.md's notes)
NOTES = {
    "per_device_train_batch_size": "unset together with the other layout fields on `grpo train`: completions per "
                                   "forward chosen from a token budget (same optimizer step; one warning line)",
    "steps_per_generation": "TRL's micro-step schedule; micro-batches keep generation order (TRL shuffles them)",
    "generation_batch_size": "as TRL: per_device_train_batch_size x processes x steps_per_generation",
    "sync_ref_model": "full fine-tuning only: refused with LoRA, whose reference is the adapter-free model (as TRL)",
    "ref_model_sync_steps": "on resume the reference restarts from the initial weights (TRL saves no reference)",
    "generation_kwargs": "keys temperature, top_p, top_k, min_p, repetition_penalty (the sampler's knobs)",
    "repetition_penalty": "over prompt and completion tokens; greedy output equals `model.generate`'s",
    "min_p": "after temperature, top-k and top-p, as transformers' MinPLogitsWarper",
    "gradient_checkpointing": "HF's version disables the KV cache the shared prompt forward uses",
    "cache_implementation": "the sampler keeps its own KV buffers",
    "use_transformers_paged": "the sampler replaces transformers' generation engines",
    "use_transformers_continuous_batching": "the sampler replaces transformers' generation engines",
    "transformers_continuous_batching_config": "the sampler replaces transformers' generation engines",
    "ds3_gather_for_generation": "the native backend does not run under DeepSpeed",
    "vllm_importance_sampling_correction": "also corrects the bf16 sampler copy (ScriptArgs.sampler_importance_"
                                           "sampling_correction)",
}


def _default(field):
    """A dataclass field's declared default (None when it has none)."""
    if field.default is not dataclasses.MISSING:
        return field.default
    return field.default_factory() if field.default_factory is not dataclasses.MISSING else None


def check_supported(args) -> None:
    """Refuse GRPOConfig fields this backend does not implement, when set away from their defaults.

    Raises:
        UserError: naming the first offending field, its value, why (:data:`REFUSED`) and the alternative.
    """
    from trl import GRPOConfig

    for field in (f for f in dataclasses.fields(GRPOConfig) if f.init):
        name = field.name
        if name in SUPPORTED or name in IGNORED or (name.startswith("vllm_") and not args.use_vllm):
            continue
        value, default = getattr(args, name), _default(field)
        if value != default and repr(value) != repr(default):
            why = f": {REFUSED[name]}" if name in REFUSED else ""
            raise UserError(f"{name}={value!r} is not implemented by the native backend (default {default!r}){why}; "
                            f"unset it or use --backend trl")
    for name, allowed in (("loss_type", tuple(POLICY_LOSSES)),  # the registered objectives, read at call time
                          ("multi_objective_aggregation", tuple(ADVANTAGE_ESTIMATORS)),
                          ("optim", ("adamw_torch", "adamw_torch_fused", *BNB_OPTIMIZERS)),
                          ("save_strategy", ("steps", "no")), ("fp16", ("False",))):
        value = str(getattr(getattr(args, name), "value", getattr(args, name))).lower()  # enums: their value
        if value not in {a.lower() for a in allowed}:
            raise UserError(f"{name}={getattr(args, name)!r}: the native backend supports {', '.join(allowed)}")


def grpo_fields() -> list:
    """The GRPO-specific fields of ``trl.GRPOConfig``: its dataclass fields minus ``transformers.TrainingArguments``'."""
    from transformers import TrainingArguments
    from trl import GRPOConfig

    base = {f.name for f in dataclasses.fields(TrainingArguments)}
    return [f for f in dataclasses.fields(GRPOConfig) if f.name not in base]


def classify(name: str) -> str:
    """``honoured``, ``ignored`` or ``refused: <reason>`` for the native backend; ``unclassified`` when no list names it."""
    if name in SUPPORTED:
        return "honoured"
    if name in IGNORED:
        return "ignored (no effect on the optimisation)"
    if name in REFUSED:
        return f"refused: {REFUSED[name]}" + (" (only with use_vllm)" if name.startswith("vllm_") else "")
    return "unclassified"


def fields_table() -> str:
    """docs/grpo_config_fields.md: one Markdown row per GRPO-specific GRPOConfig field, native vs TRL backend.

    Written by ``python scripts/grpo_config_fields.py``; tests/test_config_fields.py checks the file is current.
    """
    import trl

    fields = grpo_fields()
    verdicts = [classify(f.name) for f in fields]
    native = sum(v.startswith(("honoured", "ignored")) for v in verdicts)
    lines = [f"# GRPOConfig fields: native backend vs TRL backend (trl {trl.__version__})", "",
             "Generated by `python scripts/grpo_config_fields.py` from `grpo/training/native/fields.py`; do not edit.",
             f"The native backend honours or safely ignores {native} of the {len(fields)} GRPO-specific fields "
             "(`dataclasses.fields(trl.GRPOConfig)` minus `transformers.TrainingArguments`' fields); a refused field "
             "set away from its default stops a native run before any model loads. The TRL backend hands every field "
             "to `trl.GRPOTrainer` unchanged.", "",
             "| field | default | native backend | TRL backend | note |", "| --- | --- | --- | --- | --- |"]
    for f, verdict in zip(fields, verdicts):
        lines.append(f"| `{f.name}` | `{_default(f)!r}` | {verdict} | honoured | {NOTES.get(f.name, '')} |")
    return "\n".join(lines) + "\n"
