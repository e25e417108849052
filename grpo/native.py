"""Native GRPO backend: the whole algorithm in one readable loop, no Trainer, no callbacks.

    grpo train --config grpo/configs/gsm8k.yaml --backend native
    torchrun --nproc_per_node 2 -m grpo.cli train ... --backend native     (CPU: gloo, 2 processes)

Each optimizer step: rollout (G completions per prompt, grpo.sampler) -> rewards -> group
advantages (grpo.advantages) -> per-token log-probs and the GRPO loss (grpo.loss) over
gradient_accumulation_steps micro-batches -> all-reduce gradients -> clip -> step -> log.
Metric names are TRL's, so `--backend trl` and `--backend native` runs compare line by line.

Speed: a group's G completions share one prompt forward (its KV cache, with gradient); the
sampler computes each prompt once too. Deviations from trl.GRPOTrainer 1.16: each process holds
whole groups (per_device_train_batch_size * gradient_accumulation_steps % num_generations == 0);
micro-batches keep generation order (TRL shuffles; only bnpo notices); gradients are all-reduced
by hand (log-probs come from hidden states outside the forward DDP would hook), same mean;
gradient_checkpointing is ignored (HF's disables the shared KV cache); clip/kl/entropy are
per-micro-batch token means; optional DAPO dynamic sampling (ScriptArgs.dynamic_sampling);
the vLLM importance-sampling correction takes the generating policy's log-probs from the loss's own
forward when num_iterations = 1 (TRL runs one more forward for them), and can also correct the
bf16 sampler (ScriptArgs.sampler_importance_sampling_correction).
GRPOConfig fields outside SUPPORTED/IGNORED are refused by `check_supported` when set."""

from __future__ import annotations

import copy
import logging
import math
import time
from collections import defaultdict
from contextlib import nullcontext

import torch

from grpo import hf_compat, native_checkpoint as ckpt, tracking
from grpo.advantages import combine_rewards, group_advantages, reward_metrics
from grpo.console import StepProgress
from grpo.diagnostics import warn_if_no_signal
from grpo.distributed import all_gather_cat, all_sum, init_distributed
from grpo.errors import UserError
from grpo.loss import grpo_loss, logprobs_from_hidden, sampling_correction
from grpo.native_config import check_supported
from grpo.native_rollout import informative, rollout as rollout_and_score
from grpo.placement import place_model
from grpo.optim import make_optimizer

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- log-probs


def _collate(records: list[dict], pad_id: int, mask_truncated: bool) -> dict:
    """Each distinct prompt once, left-padded (U, P); completions right-padded (B, T); row -> prompt (B,)."""
    prompts = list(dict.fromkeys(tuple(r["prompt_ids"]) for r in records))  # a group's G rows share one
    u, width_p, width_c = len(prompts), max(map(len, prompts)), max(1, max(len(r["completion_ids"]) for r in records))
    prompt_ids, prompt_mask = torch.full((u, width_p), pad_id), torch.zeros(u, width_p, dtype=torch.long)
    for i, p in enumerate(prompts):
        prompt_ids[i, width_p - len(p):], prompt_mask[i, width_p - len(p):] = torch.tensor(p), 1
    ids, attn = torch.full((len(records), width_c), pad_id), torch.zeros(len(records), width_c, dtype=torch.long)
    sampling = torch.zeros(len(records), width_c)  # (B, T) the rollout engine's log-probs
    for i, r in enumerate(records):
        ids[i, : len(r["completion_ids"])], attn[i, : len(r["completion_ids"])] = torch.tensor(r["completion_ids"]), 1
        logps = r.get("sampling_logps", [])  # absent in hand-made records
        sampling[i, : len(logps)] = torch.tensor(logps, dtype=torch.float32)
    truncated = torch.tensor([r["truncated"] for r in records])  # (B,)
    loss_mask = attn * (~truncated).long().unsqueeze(1) if mask_truncated else attn  # (B, T)
    return {"prompt_ids": prompt_ids, "prompt_mask": prompt_mask, "completion_ids": ids, "completion_attn": attn,
            "mask": loss_mask, "sampling_logps": sampling,
            "prompt_index": torch.tensor([prompts.index(tuple(r["prompt_ids"])) for r in records])}


def _completion_logps(model, batch: dict, temperature: float, autocast) -> tuple[torch.Tensor, torch.Tensor]:
    """log pi(completion token | prompt, prefix) at `temperature`: (B, T) with grad, and (B, T) entropy.

    The G completions of a prompt share its forward: the prompt runs once (batch U), its KV cache
    is indexed out to the B rows (differentiable, so LoRA still gets the prompt positions' gradient),
    then only completion tokens run. Same numbers as one forward over [prompt, completion] rows.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    index, p_mask, attn = batch["prompt_index"], batch["prompt_mask"], batch["completion_attn"]  # (B,), (U, P), (B, T)
    with autocast():
        p_pos = (p_mask.cumsum(-1) - 1).clamp(min=0)  # (U, P), as generation numbered them
        out = base.base_model(input_ids=batch["prompt_ids"], attention_mask=p_mask, position_ids=p_pos, use_cache=True)
        cache = hf_compat.output_cache(out)
        cache.batch_select_indices(index)  # (U, ...) -> (B, ...)
        c_pos = p_pos[index, -1:] + 1 + torch.arange(attn.shape[1], device=attn.device)  # (B, T)
        hidden = base.base_model(input_ids=batch["completion_ids"], attention_mask=torch.cat([p_mask[index], attn], 1),
                                 position_ids=c_pos, use_cache=True,
                                 **hf_compat.cache_kwargs(base.base_model, cache)).last_hidden_state  # (B, T, H)
        hidden = torch.cat([out.last_hidden_state[index, -1:], hidden[:, :-1]], 1)  # (B, T, H): predicts token t
        head = base.get_output_embeddings()
        return logprobs_from_hidden(hidden, head.weight, head.bias, batch["completion_ids"], temperature)


def _reference_logps(model, ref_model, batch, temperature, autocast) -> torch.Tensor:
    """Reference log-probs: the same model with LoRA adapters disabled, else a frozen copy."""
    with torch.no_grad(), model.disable_adapter() if ref_model is None else nullcontext():
        return _completion_logps(model if ref_model is None else ref_model, batch, temperature, autocast)[0]


# ---------------------------------------------------------------------------- training loop


def train(model, tokenizer, train_dataset, reward_funcs, training_args, script_args, logger=None, device=None):
    """Train `model` with GRPO; same signature and run-directory output as grpo.trl_backend.train.

    Args:
        model: causal LM or a peft model of one (only trainable parameters move).
        tokenizer: its tokenizer (pad token set). train_dataset: rows with a `prompt` column (text or
            chat messages) plus any columns the rewards read. reward_funcs: TRL-signature callables.
        training_args: trl.GRPOConfig (see SUPPORTED). script_args: ScriptArgs or None (read with
            getattr: dynamic_sampling, dynamic_sampling_max_retries, resume).
        logger: grpo.run_dir.MetricsLogger or None.
        device: where to train; default ``training_args.device`` (this process's GPU under a launcher).
            The model is moved there (a bitsandbytes ``device_map`` model must already be there), and
            every tensor handed to a collective or to the sampler (its generator) is created there.

    Returns the trained model (same object). Raises UserError for unsupported or inconsistent
    settings, and KeyboardInterrupt again after the last completed step is checkpointed.
    """
    from transformers import get_scheduler, set_seed

    args, metrics_log = training_args, logger
    check_supported(args)
    device = torch.device(device) if device is not None else args.device
    rank, world = init_distributed(device)
    g, ga, micro_size = args.num_generations, args.gradient_accumulation_steps, args.per_device_train_batch_size
    if (micro_size * ga) % g:
        raise UserError(f"per_device_train_batch_size * gradient_accumulation_steps = {micro_size * ga} is not a "
                        f"multiple of num_generations={g}: the native backend keeps whole groups on each process")
    local_prompts = micro_size * ga // g
    names = [getattr(f, "__name__", type(f).__name__) for f in reward_funcs]
    weights = None if args.reward_weights is None else torch.tensor(args.reward_weights, dtype=torch.float32)
    if weights is not None and len(weights) != len(reward_funcs):
        raise UserError(f"reward_weights has {len(weights)} values for {len(reward_funcs)} reward functions")
    max_steps = args.max_steps if args.max_steps > 0 else args.num_iterations * math.ceil(
        args.num_train_epochs * len(train_dataset) / (local_prompts * world))
    dynamic, retries = getattr(script_args, "dynamic_sampling", False), getattr(script_args, "dynamic_sampling_max_retries", 3)
    set_seed(args.seed)

    # ------------------------------------------------------------ model, optimizer, schedule
    model = place_model(model, device)  # the model, its optimizer state and its frozen reference copy live there
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if args.bf16 else nullcontext
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    engine = None  # use_vllm: vLLM colocated or a server (vllm_mode), the policy's weights pushed before every rollout
    if args.use_vllm:
        from grpo.vllm_server import make_engine
        engine = make_engine(args, base.config._name_or_path, rank, world, device)
    if getattr(base, "is_gradient_checkpointing", False):  # it would switch off the shared prompt's KV cache
        base.gradient_checkpointing_disable()
    for m in model.modules() if args.disable_dropout else ():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    ref_model = None  # with LoRA the reference is the model with adapters disabled; else a frozen copy
    if args.beta != 0.0 and not hasattr(model, "disable_adapter"):
        ref_model = copy.deepcopy(model).eval().requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer([{"params": [p for p in params if p.ndim >= 2]},  # torch or bitsandbytes 8-bit AdamW
                                {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}], args, model)  # HF: no decay
    scheduler = get_scheduler(args.lr_scheduler_type, optimizer, num_warmup_steps=args.get_warmup_steps(max_steps),
                              num_training_steps=max_steps, scheduler_specific_kwargs=args.lr_scheduler_kwargs or {})
    # completions from another engine than the training forward (vLLM, or the sampler's bf16 copy): log how far
    # its log-probs are from the policy's, and weight the loss by TRL's importance-sampling correction if asked
    rollout_dtype = torch.bfloat16 if args.bf16 else None
    approximate = engine is not None or rollout_dtype is not None
    correct = approximate and (args.vllm_importance_sampling_correction if engine is not None
                               else getattr(script_args, "sampler_importance_sampling_correction", False))
    correction = dict(mode=args.vllm_importance_sampling_mode, clip_min=args.vllm_importance_sampling_clip_min,
                      clip_max=args.vllm_importance_sampling_clip_max)
    loss_kwargs = dict(beta=args.beta, epsilon=args.epsilon, epsilon_high=args.epsilon_high, loss_type=args.loss_type,
                       importance_sampling_level=args.importance_sampling_level, grad_accum_steps=ga,
                       use_bias_correction_kl=args.use_bias_correction_kl, num_processes=world,
                       max_completion_length=args.max_completion_length)

    # ------------------------------------------------------------ loop state (all of it is checkpointed)
    state = {"step": 0, "cursor": 0, "generation": 0, "buffer": None, "window": defaultdict(list), "signal": []}
    ckpt.resume(args.resume_from_checkpoint or getattr(script_args, "resume", None), args.output_dir, state,
                model, optimizer, scheduler, metrics_log, device)
    tracker = tracking.open_trackers(args, script_args, enabled=rank == 0)  # report_to: no-op off rank 0 / none
    orders: dict[int, list[int]] = {}

    def rollout(round_: int) -> list[dict]:
        """This process's share of the next world*local_prompts prompts (shuffled per epoch), rolled out."""
        n, start, rows = len(train_dataset), state["cursor"] + rank * local_prompts, []
        for k in range(start, start + local_prompts):
            if k // n not in orders:
                perm = torch.randperm(n, generator=torch.Generator().manual_seed(args.seed + k // n))
                orders[k // n] = perm.tolist() if args.shuffle_dataset else list(range(n))
            rows.append(train_dataset[orders[k // n][k % n]])
        state["cursor"] += world * local_prompts
        seed = args.seed * 1_000_003 + state["generation"] * 7919 + round_ * 104_729 + rank
        return rollout_and_score(model, tokenizer, rows, reward_funcs, args, seed, rollout_dtype, state["step"], device,
                                 engine)

    def gather(values: list) -> torch.Tensor:
        """Every process's ``values`` (N, ...) concatenated in rank order: (world*N, ...), on the device."""
        return all_gather_cat(torch.tensor(values, dtype=torch.float32, device=device), world, device)

    def make_generation_batch() -> tuple[dict, dict]:
        """Rollout -> rewards -> advantages -> stored old/ref log-probs, for this process."""
        records = rollout(0)
        # every tensor that meets a collective is created on the device (NCCL takes no CPU tensors)
        per_func = gather([r["rewards"] for r in records])  # (world*N, F)
        lengths = gather([float(len(r["completion_ids"])) for r in records])  # (world*N,)
        truncated = gather([float(r["truncated"]) for r in records])  # (world*N,)
        _, first = group_advantages(combine_rewards(per_func, weights), g, args.scale_rewards)
        metrics = {**reward_metrics(per_func, weights, names), **first, "completions/mean_length": lengths.mean().item(),
                   "completions/clipped_ratio": truncated.mean().item()}
        if dynamic:  # DAPO dynamic sampling: swap zero-spread groups for fresh prompts, bounded rounds
            groups = [records[i : i + g] for i in range(0, len(records), g)]
            kept, spare = [x for x in groups if informative(x, weights)], [x for x in groups if not informative(x, weights)]
            for round_ in range(1, retries + 1):
                if all_sum(torch.tensor([float(len(kept) < local_prompts)], device=device), world, device).item() == 0:
                    break  # every process is full
                if len(kept) < local_prompts:
                    fresh = rollout(round_)
                    kept += [x for x in (fresh[i : i + g] for i in range(0, len(fresh), g)) if informative(x, weights)]
                else:
                    state["cursor"] += world * local_prompts  # keep the prompt stream in step with the others
                metrics["dynamic_sampling/rounds"] = float(round_)
            records = [r for grp in (kept + spare)[:local_prompts] for r in grp]
        rewards = combine_rewards(gather([r["rewards"] for r in records]), weights)  # (world*N,)
        advantages = group_advantages(rewards, g, args.scale_rewards)[0].view(world, -1)[rank]  # (N,)
        recorder = getattr(metrics_log, "recorder", None)  # the pipeline's reward wrapper keeps the samples
        if rank == 0 and recorder is not None:
            recorder.flush(state["step"] + 1)
        elif rank == 0 and metrics_log is not None and (state["step"] + 1) % args.logging_steps == 0:
            metrics_log.log_samples(state["step"] + 1, [r["prompt"] for r in records], [r["completion"] for r in records],
                                    {n: [r["rewards"][i] for r in records] for i, n in enumerate(names)})
        tracker.log_completions(state["step"] + 1, records, names, advantages)  # every logging_steps
        micro = []
        for i in range(0, len(records), micro_size):
            batch = _collate(records[i : i + micro_size], tokenizer.pad_token_id, args.mask_truncated_completions)
            batch = {k: v.to(device) for k, v in batch.items()} | {"advantages": advantages[i : i + micro_size].to(device)}
            if args.num_iterations > 1:  # later iterations need the sampling policy's log-probs
                with torch.no_grad():
                    batch["old_logps"] = _completion_logps(model, batch, args.temperature, autocast)[0]
            if args.beta != 0.0:
                batch["ref_logps"] = _reference_logps(model, ref_model, batch, args.temperature, autocast)
            micro.append(batch)
        num_items = all_sum(torch.tensor(float(sum(b["mask"].sum().item() for b in micro)), device=device), world,
                            device)  # dapo's N
        state["generation"] += 1
        return {"micro": micro, "num_items": num_items}, metrics

    # ------------------------------------------------------------ the loop
    committed = {"loop": ckpt.loop_snapshot(state), "rng": ckpt.rng_state()}  # last step boundary, for Ctrl-C
    progress = StepProgress(max_steps, "GRPO", initial=state["step"], disable=rank != 0 or args.disable_tqdm)
    try:
        while state["step"] < max_steps:
            committed = {"loop": ckpt.loop_snapshot(state), "rng": ckpt.rng_state()}
            start, window = time.perf_counter(), state["window"]
            model.train()  # every forward in training mode (dropout), as TRL
            if state["step"] % args.num_iterations == 0 or state["buffer"] is None:
                state["buffer"], gen_metrics = make_generation_batch()
                for k, v in gen_metrics.items():
                    window[k].append(v)
                state["signal"].append({"frac_reward_zero_std": gen_metrics["frac_reward_zero_std"]})
                warn_if_no_signal(state["signal"])  # shared with the trl backend: loud, with the fixes
            step_loss, step_metrics = 0.0, defaultdict(list)
            for batch in state["buffer"]["micro"]:
                logps, entropy = _completion_logps(model, batch, args.temperature, autocast)  # (B, T), (B, T)
                is_weights, sampling_metrics = None, {}  # (not `weights`: the reward weights)
                if approximate and "sampling_logps" in batch:  # (absent from a buffer saved by an older version)
                    # old = the generating policy's log-probs: stored (num_iterations > 1) or this forward's values
                    is_weights, sampling_metrics = sampling_correction(
                        batch.get("old_logps", logps), batch["sampling_logps"], batch["mask"], **correction)  # (B, T|1)
                    if not correct:
                        is_weights = None
                        sampling_metrics = {k: v for k, v in sampling_metrics.items() if "logp_difference" in k}
                loss, m = grpo_loss(logps, batch["advantages"], batch["mask"], old_logps=batch.get("old_logps"),
                                    ref_logps=batch.get("ref_logps"), num_items_in_batch=state["buffer"]["num_items"],
                                    sampling_weights=is_weights, **loss_kwargs)
                m.update(sampling_metrics)
                loss.backward()
                step_loss += loss.item()
                mask = batch["mask"].float()  # (B, T)
                m["entropy"] = ((entropy * mask).sum() / mask.sum().clamp(min=1)).item()
                for k, v in m.items():
                    step_metrics[k].append(v)
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
            if world > 1:  # one flat all-reduce of every gradient: the DDP mean, by hand
                flat = all_sum(torch.cat([x.reshape(-1) for x in grads]), world, device).div_(world)
                for p, chunk in zip(params, flat.split([x.numel() for x in grads])):
                    p.grad = chunk.view_as(p).clone()
            clip = args.max_grad_norm if args.max_grad_norm and args.max_grad_norm > 0 else float("inf")
            grad_norm = torch.nn.utils.clip_grad_norm_(params, clip).item()
            step_total = torch.tensor(step_loss, dtype=torch.float64, device=device)
            total_loss = all_sum(step_total, world, device).item()  # same verdict on every rank
            if math.isfinite(grad_norm) and math.isfinite(total_loss):
                optimizer.step()
                scheduler.step()
            else:
                log.warning("step %d: non-finite loss (%s) or gradient norm (%s): skipping the update, weights "
                            "unchanged", state["step"] + 1, step_loss, grad_norm)
                window["nonfinite_skipped"].append(1.0)
            optimizer.zero_grad(set_to_none=True)
            state["step"] += 1
            for k, v in [("loss", step_loss), ("grad_norm", grad_norm), ("step_time", time.perf_counter() - start)]:
                window[k].append(v)
            for k, v in step_metrics.items():
                window[k].append(sum(v) / len(v))
            logged = {"step_time": window["step_time"][-1]}
            if log_now := state["step"] % args.logging_steps == 0 or state["step"] == max_steps:
                keys = sorted(k for k in window if k != "policy_loss")
                values = torch.tensor([sum(window[k]) / len(window[k]) for k in keys], dtype=torch.float64,
                                      device=device)
                logged = dict(zip(keys, (all_sum(values, world, device) / world).tolist()))  # mean over processes
                if rank == 0 and metrics_log is not None:
                    metrics_log.log(state["step"], {**logged, "learning_rate": scheduler.get_last_lr()[0]})
                tracker.log(state["step"], {**logged, "learning_rate": scheduler.get_last_lr()[0]})
                state["window"] = defaultdict(list)
            progress.update(state["step"], logged, log_row=log_now)  # the bar, and a table row when logged
            if ckpt.should_save(args, state["step"]) and rank == 0:
                ckpt.save(args.output_dir, state["step"], model, tokenizer, optimizer, scheduler,
                          ckpt.loop_snapshot(state), ckpt.rng_state(), args.save_total_limit)
    except KeyboardInterrupt:
        if rank == 0:
            log.warning("interrupted: saving the state after step %d, then stopping", committed["loop"]["step"])
            ckpt.save(args.output_dir, committed["loop"]["step"], model, tokenizer, optimizer, scheduler,
                      committed["loop"], committed["rng"], args.save_total_limit)
        raise
    finally:
        progress.close()
    tracker.finish()
    return model
