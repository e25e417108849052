"""The native GRPO loop: the whole algorithm in one readable loop, no Trainer, no callbacks.

    grpo train --config grpo/configs/gsm8k.yaml --backend native
    torchrun --nproc_per_node 2 -m grpo.cli train ... --backend native     (CPU: gloo, 2 processes)

Each optimizer step: rollout (G completions per prompt, grpo.generation.sampler) -> rewards -> group
advantages (grpo.maths.advantages) -> per-token log-probs and the GRPO loss (grpo.maths.loss) over
gradient_accumulation_steps micro-batches -> all-reduce gradients -> clip -> step -> log. As in TRL, a
generation batch holds steps_per_generation micro-batches, so one rollout may serve several optimizer steps
(or a step span several rollouts); with sync_ref_model the frozen reference is mixed toward the policy
every ref_model_sync_steps steps (TR-DPO; refused with LoRA, whose reference is the adapter-free model).
Metric names are TRL's, so `--backend trl` and `--backend native` runs compare line by line.

Speed: a group's G completions share one prompt forward (its KV cache, with gradient); the
sampler computes each prompt once too. Deviations from trl.GRPOTrainer 1.16: each process holds
whole groups (per_device_train_batch_size * gradient_accumulation_steps % num_generations == 0);
micro-batches keep generation order (TRL shuffles; only bnpo notices); gradients are all-reduced
by hand (log-probs come from hidden states outside the forward DDP would hook), same mean;
gradient_checkpointing is ignored (HF's disables the shared KV cache); under autocast the frozen
weights are cast once per step (grpo.training.native.frozen_casts), not per forward; clip/kl/entropy are
per-micro-batch token means; optional DAPO dynamic sampling (ScriptArgs.dynamic_sampling);
the vLLM importance-sampling correction takes the generating policy's log-probs from the loss's own
forward when num_iterations = 1 (TRL runs one more forward for them), and can also correct the
bf16 sampler (ScriptArgs.sampler_importance_sampling_correction).
The config is checked and derived once, before the run, by :func:`grpo.training.native.plan.build_plan`; the loop
reads its settings from that plan only."""

from __future__ import annotations

import copy
import logging
import math
import time
from collections import defaultdict
from contextlib import nullcontext

import torch

import grpo.training.native.checkpoint as ckpt
from grpo.common.console import StepProgress
from grpo.common.distributed import all_gather_ragged, all_sum, broadcast_parameters, init_distributed
from grpo.common.placement import place_model
from grpo.maths.loss import grpo_loss, sampling_correction
from grpo.runs import tracking
from grpo.training.diagnostics import warn_if_no_signal
from grpo.training.native.experience import GenerationBatch, LoopState, ScoredRollout, completion_logps, make_experience
from grpo.training.native.frozen_casts import frozen_weights_cast
from grpo.training.native.optim import make_optimizer
from grpo.training.native.plan import NativePlan

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- pieces of one step


def _prepare_model(model, plan: NativePlan, rank: int, world: int, device):
    """Engine and reference for ``model`` (already on ``device``): ``(vLLM engine or None, frozen reference or None)``.

    Switches off HF gradient checkpointing (it would disable the shared prompt's KV cache) and, with
    ``disable_dropout``, every dropout. With LoRA the reference is the model with adapters disabled (None here).
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    engine = None  # use_vllm: vLLM colocated or a server (vllm_mode), the policy's weights pushed before every rollout
    if plan.use_vllm:
        from grpo.generation.vllm_server import make_engine
        engine = make_engine(plan.args, base.config._name_or_path, rank, world, device)
    if getattr(base, "is_gradient_checkpointing", False):
        base.gradient_checkpointing_disable()
    for m in model.modules() if plan.disable_dropout else ():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    needs_copy = plan.needs_reference and not hasattr(model, "disable_adapter")
    return engine, copy.deepcopy(model).eval().requires_grad_(False) if needs_copy else None


def _record(step: int, scored: ScoredRollout, advantages, names, plan, metrics_logger, recorder, tracker) -> None:
    """This generation batch's samples: samples.jsonl (through the recorder, else every logging_steps) and the tracker table."""
    prompts, rewards = scored.completion_prompts(), {n: [r[i] for r in scored.rewards] for i, n in enumerate(names)}
    if recorder is not None:
        recorder.record(prompts, scored.completions, rewards, scored.completion_rows())
        recorder.flush(step)
    elif metrics_logger is not None and step % plan.logging_steps == 0:
        metrics_logger.log_samples(step, prompts, scored.completions, rewards, scored.completion_rows())
    tracker.log_completions(step, prompts, scored.completions, rewards, advantages)  # every logging_steps


def _backward(model, experiences, buffer: GenerationBatch, plan: NativePlan, world: int, autocast, entropy_control=None,
              device=None) -> tuple[float, dict]:
    """Loss and backward over ``experiences`` (micro-batches of ``buffer``); returns the summed loss and the metrics' lists.

    ``entropy_control``: the run's :class:`grpo.maths.entropy.EntropyControl` (entropy bonus on), else None."""
    step_loss, metrics = 0.0, defaultdict(list)
    gather = (lambda x: all_gather_ragged(x, world, device)) if world > 1 else None  # top_entropy_quantile's quantile
    for batch in experiences:
        logps, entropy = completion_logps(model, batch, plan.temperature, autocast,
                                          entropy_grad=entropy_control is not None)  # (B, T), (B, T)
        is_weights, sampling_metrics = None, {}  # (not `weights`: the reward weights)
        if plan.approximate_rollouts and batch.sampling_per_token_logps is not None:
            # old = the generating policy's log-probs: stored (num_iterations > 1) or this forward's values
            old = batch.old_per_token_logps if batch.old_per_token_logps is not None else logps
            is_weights, sampling_metrics = sampling_correction(old, batch.sampling_per_token_logps,
                                                               batch.completion_mask, **plan.correction)  # (B, T|1)
            if not plan.correct_sampling:
                is_weights = None
                sampling_metrics = {k: v for k, v in sampling_metrics.items() if "logp_difference" in k}
        loss, m = grpo_loss(logps, batch.advantages, batch.completion_mask, old_logps=batch.old_per_token_logps,
                            ref_logps=batch.ref_per_token_logps, num_items_in_batch=buffer.num_items_in_batch,
                            sampling_weights=is_weights, num_processes=world, entropies=entropy,
                            entropy_control=entropy_control, entropy_gather=gather,
                            sampling_logps=batch.sampling_per_token_logps if plan.approximate_rollouts else None,
                            **plan.loss_kwargs)  # off-policy mask: the engine's log-probs, as TRL's vLLM ones
        m.update(sampling_metrics)
        loss.backward()
        step_loss += loss.item()
        mask = batch.completion_mask.float()  # (B, T)
        m["entropy"] = ((entropy.detach() * mask).sum() / mask.sum().clamp(min=1)).item()
        for k, v in m.items():
            metrics[k].append(v)
    return step_loss, metrics


def _micro_batch_runs(step: int, plan: NativePlan) -> list[tuple[bool, list[int]]]:
    """Optimizer step ``step``'s micro-batches as runs ``(generate first?, buffer indices)``, TRL's schedule.

    Micro-step ``s`` (``step * grad_accum_steps + j``) trains ``buffer.experiences[s % steps_per_generation]``, and a
    new generation batch is rolled out when ``s % (steps_per_generation * num_iterations) == 0``
    (``GRPOTrainer._prepare_inputs``): one rollout serves several optimizer steps when ``steps_per_generation``
    exceeds the accumulation, and a step spans several rollouts when it is smaller.
    """
    runs, every = [], plan.steps_per_generation * plan.num_iterations
    for s in range(step * plan.grad_accum_steps, (step + 1) * plan.grad_accum_steps):
        if s % every == 0 or not runs:
            runs.append((s % every == 0, []))
        runs[-1][1].append(s % plan.steps_per_generation)
    return runs


def sync_reference(model, ref_model, alpha: float) -> None:
    """TR-DPO's reference update, in place: ref <- alpha * policy + (1 - alpha) * ref, parameter by parameter.

    Gorbatovski et al. 2024, "Learn Your Reference Model for Real Good Alignment" (arXiv:2404.09656), the soft
    update; TRL's ``SyncRefModelCallback`` applies it every ``ref_model_sync_steps`` optimizer steps (alpha =
    ``ref_model_mixup_alpha``; alpha = 1 is the hard update).
    """
    with torch.no_grad():
        for ref, cur in zip(ref_model.parameters(), model.parameters(), strict=True):
            ref.mul_(1.0 - alpha).add_(cur.detach(), alpha=alpha)


def _all_reduce_grads(params, world: int, device) -> None:
    """One flat all-reduce of every gradient: the DDP mean, by hand (a missing gradient counts as zeros)."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = all_sum(torch.cat([x.reshape(-1) for x in grads]), world, device).div_(world)
    for p, chunk in zip(params, flat.split([x.numel() for x in grads])):
        p.grad = chunk.view_as(p).clone()


def _window_means(window: dict, world: int, device) -> dict:
    """The logging window's mean of every metric, averaged over processes."""
    keys = sorted(window)
    values = torch.tensor([sum(window[k]) / len(window[k]) for k in keys], dtype=torch.float64, device=device)
    return dict(zip(keys, (all_sum(values, world, device) / world).tolist()))


# ---------------------------------------------------------------------------- training loop


def _log_row(step: int, row: dict, metrics_logger, tracker) -> None:
    """One row of ``step`` into metrics.jsonl (when a logger is given) and the trackers."""
    if metrics_logger is not None:
        metrics_logger.log(step, row)
    tracker.log(step, row)


def train(model, tokenizer, train_dataset, reward_funcs, plan: NativePlan, metrics_logger=None, recorder=None,
          tracker=None, device=None, periodic_eval=None):
    """Train ``model`` with GRPO, writing the same run-directory output as :func:`grpo.training.trl_backend.train`.

    Args:
        model: causal LM or a peft model of one (only trainable parameters move); trained in place.
        tokenizer: its tokenizer (pad token set).
        train_dataset: rows with a ``prompt`` column (text or chat messages) plus any columns the rewards read.
        reward_funcs: TRL-signature reward callables (each called once per generation batch, validated).
        plan: :func:`grpo.training.native.plan.build_plan` of the run's GRPOConfig and ScriptArgs (checked already).
        metrics_logger: :class:`grpo.runs.run_dir.MetricsLogger` for metrics.jsonl/samples.jsonl, or None.
        recorder: :class:`grpo.runs.run_dir.SampleRecorder`, given each generation batch's samples (rank 0);
            None = samples.jsonl gets every completion every ``logging_steps``.
        tracker: :class:`grpo.runs.tracking.Trackers` (opened on rank 0 only), finished when training ends; None = none.
        device: where to train; default :meth:`NativePlan.default_device` (this process's GPU under a launcher).
            The model is moved there (a bitsandbytes ``device_map`` model must already be there), and
            every tensor handed to a collective or to the sampler (its generator) is created there.
        periodic_eval: :class:`grpo.evaluation.periodic_eval.PeriodicEval` run by every process (each answers its share of
            the problems; the counts are summed) before the first step and
            whenever it is due; its ``eval/*`` metrics join that step's row. None = no periodic evaluation.

    Returns:
        The trained model (the same object).

    Raises:
        UserError: a checkpoint to resume from that is unsafe or does not fit (:func:`grpo.training.native.checkpoint.resume`),
            or a vLLM setup that cannot start.
        KeyboardInterrupt: again, after the last completed step is checkpointed (rank 0).
    """
    from transformers import get_scheduler, set_seed

    device = torch.device(device) if device is not None else plan.default_device()
    rank, world = init_distributed(device)
    names = [getattr(f, "__name__", type(f).__name__) for f in reward_funcs]
    max_steps = plan.max_steps(len(train_dataset), world)
    tracker = tracker if tracker is not None else tracking.Trackers([], plan.args, {})
    set_seed(plan.seed)

    # ------------------------------------------------------------ model, optimizer, schedule
    model = place_model(model, device)  # the model, its optimizer state and its frozen reference copy live there
    broadcast_parameters(model, world, device)  # rank 0's weights everywhere (LoRA init, evaluations moved RNGs)
    autocast = (lambda: torch.autocast(device.type, dtype=plan.autocast_dtype)) if plan.autocast_dtype else nullcontext
    engine, ref_model = _prepare_model(model, plan, rank, world, device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer([{"params": [p for p in params if p.ndim >= 2]},  # torch or bitsandbytes 8-bit AdamW
                                {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}],  # HF: no decay
                               plan.args, model)
    scheduler = get_scheduler(plan.lr_scheduler_type, optimizer, num_warmup_steps=plan.warmup_steps(max_steps),
                              num_training_steps=max_steps, scheduler_specific_kwargs=plan.lr_scheduler_kwargs)

    # ------------------------------------------------------------ loop state (all of it is checkpointed)
    entropy_control = plan.new_entropy_control()  # entropy_coef / use_adaptive_entropy, else None
    state = LoopState(entropy_control=entropy_control.state_dict() if entropy_control else None)
    state = ckpt.resume(plan.resume_from_checkpoint, plan.output_dir, state, model, optimizer, scheduler,
                        metrics_logger, device)
    if entropy_control is not None and state.entropy_control:
        entropy_control.load_state_dict(state.entropy_control)  # TRL's entropy_ctrl_state.json
    committed = {"loop": state.snapshot(), "rng": ckpt.rng_state()}  # last step boundary, for Ctrl-C
    progress = StepProgress(max_steps, "GRPO", initial=state.step, disable=rank != 0,
                            bar=False if plan.disable_tqdm else None)  # disable_tqdm: the rows, no bar
    if periodic_eval is not None and state.step == 0:  # the curve's starting point
        _log_row(0, evaluated := periodic_eval(model, 0, rank, world, device), metrics_logger, tracker)
        progress.update(0, evaluated, log_row=False)  # shown (and carried) from the first table row on
    try:
        while state.step < max_steps:
            committed = {"loop": state.snapshot(), "rng": ckpt.rng_state()}
            start, window = time.perf_counter(), state.window
            model.train()  # every forward in training mode (dropout), as TRL
            step_loss, step_metrics = 0.0, defaultdict(list)
            for generate, indices in _micro_batch_runs(state.step, plan):
                # ---- generate -> rewards -> advantages (a generation batch of steps_per_generation micro-batches,
                # each trained num_iterations times)
                if generate or state.buffer is None:
                    state, scored, advantages, gen_metrics = make_experience(
                        model, ref_model, tokenizer, train_dataset, reward_funcs, names, plan, state, rank, world,
                        device, autocast, engine)
                    if rank == 0:
                        _record(state.step + 1, scored, advantages, names, plan, metrics_logger, recorder, tracker)
                    for k, v in gen_metrics.items():
                        window[k].append(v)
                    state.signal.append({"frac_reward_zero_std": gen_metrics["frac_reward_zero_std"]})
                    warn_if_no_signal(state.signal)  # shared with the trl backend: loud, with the fixes
                # ---- loss -> backward (then all-reduce -> clip -> step)
                buffer = state.buffer
                with frozen_weights_cast(model, plan.autocast_dtype):  # one bf16 cast per run, not two per micro-batch
                    run_loss, run_metrics = _backward(model, [buffer.experiences[i] for i in indices], buffer, plan,
                                                      world, autocast, entropy_control, device)
                step_loss += run_loss
                for k, v in run_metrics.items():
                    step_metrics[k] += v
            if entropy_control is not None:  # the adaptive coefficient moves once per optimizer step, as TRL
                window["entropy_coef"].append(entropy_control.end_step(
                    lambda t: all_sum(t.to(device), world, device).cpu()))
                state.entropy_control = entropy_control.state_dict()
            if world > 1:
                _all_reduce_grads(params, world, device)
            grad_norm = torch.nn.utils.clip_grad_norm_(params, plan.max_grad_norm).item()
            total_loss = all_sum(torch.tensor(step_loss, dtype=torch.float64, device=device), world, device).item()
            if math.isfinite(grad_norm) and math.isfinite(total_loss):  # same verdict on every rank
                optimizer.step()
                scheduler.step()
            else:
                log.warning("step %d: non-finite loss (%s) or gradient norm (%s): skipping the update, weights "
                            "unchanged", state.step + 1, step_loss, grad_norm)
                window["nonfinite_skipped"].append(1.0)
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            if plan.sync_ref_every and state.step % plan.sync_ref_every == 0:
                sync_reference(model, ref_model, plan.ref_mixup_alpha)  # after the update, as TRL's on_step_end
            # ---- log, checkpoint
            for k, v in [("loss", step_loss), ("grad_norm", grad_norm), ("step_time", time.perf_counter() - start)]:
                window[k].append(v)
            for k, v in step_metrics.items():
                window[k].append(sum(v) / len(v))
            logged = {"step_time": window["step_time"][-1]}
            # every process evaluates its share (a collective), so the logging decision below is the same everywhere
            evaluated = periodic_eval(model, state.step, rank, world, device) if periodic_eval and periodic_eval.due(
                state.step, max_steps) else {}
            if log_now := state.step % plan.logging_steps == 0 or state.step == max_steps or evaluated:
                logged = {**_window_means(window, world, device), **evaluated}  # mean over processes
                _log_row(state.step, {**logged, "learning_rate": scheduler.get_last_lr()[0]},
                         metrics_logger if rank == 0 else None, tracker)
                state.window = defaultdict(list)
            progress.update(state.step, logged, log_row=log_now)  # the bar, and a table row when logged
            if plan.should_save(state.step) and rank == 0:
                ckpt.save(plan.output_dir, state.step, model, tokenizer, optimizer, scheduler, state.snapshot(),
                          ckpt.rng_state(), plan.save_total_limit)
    except KeyboardInterrupt:
        if rank == 0:
            log.warning("interrupted: saving the state after step %d, then stopping", committed["loop"]["step"])
            ckpt.save(plan.output_dir, committed["loop"]["step"], model, tokenizer, optimizer, scheduler,
                      committed["loop"], committed["rng"], plan.save_total_limit)
        raise
    finally:
        progress.close()
    tracker.finish()
    return model
