"""``run_training``: the GSM8K exercise from config to run directory, for either backend.

config -> data (train rows + held-out rows) -> rewards -> model (+ warm-start SFT) -> LoRA ->
eval before -> backend.train -> checkpoint -> eval after -> curves.png + model card.

A run directory is resumable: the warm-start checkpoint and ``eval_before.json`` are reused when
present, and a Ctrl-C during GRPO saves the current weights to ``checkpoint-interrupted`` (TRL's
own ``checkpoint-N`` directories, with optimizer state, stay as they were).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import rewards
from grpo.cli.reference_tasks import ensure_recipe_checkpoint, load_reference_splits
from grpo.common.checkpoint_io import save_checkpoint, write_json_atomic
from grpo.common.console import is_terminal
from grpo.common.errors import UserError
from grpo.common.hardware import describe, pad_to_multiple_of
from grpo.common.memory import MemoryLog
from grpo.common.placement import evaluate_on_main
from grpo.data.loaders import load_gsm8k, split_holdout
from grpo.evaluation.evaluate import eval_columns, evaluate, run_comparison
from grpo.evaluation.periodic_eval import PeriodicEval
from grpo.evaluation.statistics import linear_trend
from grpo.evaluation.text_eval import evaluate_text
from grpo.generation.inference_copy import release_copies
from grpo.generation.vllm_server import check_vllm_setup
from grpo.modeling.loading import full_precision_copy, load_for_training
from grpo.modeling.models import apply_lora, check_causal_lm
from grpo.modeling.quantization import check_quantization_supported
from grpo.modeling.sharded import is_sharded
from grpo.runs.publish import push_run, require_push
from grpo.runs.run_dir import MetricsLogger, SampleRecorder, plot_curves, save_final_checkpoint, write_model_card
from grpo.runs.tracking import configure, open_trackers
from grpo.training import native, trl_backend
from grpo.training.launch import check_native_launch
from grpo.training.native.plan import NativePlan, build_plan
from grpo.training.sft import warm_start as run_warm_start

logger = logging.getLogger(__name__)


def load_reward_funcs(specs: list[str], weights, reward_kwargs: dict | None = None) -> list:
    """Resolve reward specs (registry names or ``file.py:func``) and check ``reward_weights`` matches.

    Args:
        specs: reward specs, in order.
        weights: ``GRPOConfig.reward_weights`` (None = all 1.0).
        reward_kwargs: ``{spec: {param: value}}`` for parameterised rewards (``rewards.get`` params).

    Raises:
        UserError: unknown reward, bad parameters, unloadable file, or a weights list of the wrong length.
    """
    reward_kwargs = reward_kwargs or {}
    unused = set(reward_kwargs) - set(specs)
    if unused:
        raise UserError(f"reward_kwargs names {sorted(unused)}, which are not in reward_funcs {specs}: give "
                        f"--reward_kwargs with parameters for those rewards only (or '{{}}' for none)")
    funcs = []
    for spec in specs:
        try:
            funcs.append(rewards.resolve(spec, **reward_kwargs.get(spec, {})))
        except rewards.RewardError as err:
            raise UserError(str(err)) from None
    if weights is not None and len(weights) != len(funcs):
        raise UserError(f"reward_weights has {len(weights)} values but reward_funcs has {len(funcs)} ({specs}): give "
                        f"--reward_weights with {len(funcs)} value{'s' * (len(funcs) != 1)}, one per reward in order, "
                        f"or leave it out (1.0 each)")
    return funcs


def load_splits(script_args, seed: int):
    """Training rows and held-out evaluation rows, as :func:`grpo.data.loaders.load_gsm8k` returns them
    (a recipe task's prompt/source/reference rows: :func:`grpo.cli.reference_tasks.load_reference_splits`)."""
    if script_args.task != "gsm8k":
        return load_reference_splits(script_args, seed)
    fmt = script_args.prompt_format
    train = load_gsm8k(script_args.dataset_spec, split=script_args.dataset_train_split, prompt_format=fmt)
    if script_args.eval_dataset and script_args.eval_size == 0:  # 0 = skip, as with a held-out slice
        heldout = None
    elif script_args.eval_dataset:
        heldout = load_gsm8k(script_args.eval_dataset, split="test", limit=script_args.eval_size, prompt_format=fmt)
    else:
        train, heldout = split_holdout(train, script_args.eval_size, seed=seed)
    if script_args.train_limit is not None:
        train = train.select(range(min(script_args.train_limit, len(train))))
    return train, heldout


def periodic_holdout(train_rows, script_args, seed: int):
    """``(train, periodic)``: the problems of the periodic evaluation split off the training rows (None when off).

    Split before the warm-start, so neither SFT nor GRPO sees them (:func:`grpo.data.loaders.split_holdout`).

    Raises:
        UserError: fewer training rows than ``periodic_eval_size + 1``.
    """
    if not script_args.periodic_eval_steps:
        return train_rows, None
    return split_holdout(train_rows, script_args.periodic_eval_size, seed=seed, setting="periodic_eval_size",
                         purpose=" for the periodic evaluation (or set periodic_eval_steps 0)")


def eval_dtype(training_args):
    """The precision evaluation generates in: bf16 (the sampler's fast path) when training runs in bf16, else the model's."""
    import torch

    return torch.bfloat16 if training_args.bf16 else None


def run_eval(model, tokenizer, heldout, script_args, path: Path, progress: bool = True, dtype=None):
    """Evaluate on the held-out rows and write the report atomically (reused if already there).

    Args:
        dtype: generate in this precision (:func:`eval_dtype`); None = the model's own.
    """
    if heldout is None or len(heldout) == 0:
        return None
    if path.exists():
        logger.info("Reusing %s", path)
        return json.loads(path.read_text())
    if script_args.task != "gsm8k":  # translation / summarization: sacreBLEU or ROUGE against the references
        report = evaluate_text(model, tokenizer, heldout, script_args.task, script_args.eval_max_new_tokens,
                               script_args.eval_batch_size, progress, dtype)
    else:
        report = evaluate(model, tokenizer, heldout, script_args.eval_max_new_tokens, script_args.eval_batch_size,
                          progress, prompt_format=script_args.prompt_format, dtype=dtype)
    release_copies(model)  # the GRPO stage rolls out from its own copy of the peft model
    write_json_atomic(path, report)
    return report


def release_memory() -> None:
    """Free what training left unreachable before the evaluation after it: the TRL Trainer and its callbacks
    reference each other, so only a collection frees them; then the accelerator's cache returns the memory."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def reward_trend(metrics_logger) -> dict | None:
    """Slope of the mean total reward over the logged steps, with its 95 % interval
    (:func:`grpo.evaluation.statistics.linear_trend`); None under 3 steps."""
    totals = [m["reward"] for m in metrics_logger.read() if m.get("reward") is not None]
    return linear_trend(totals) if len(totals) >= 3 else None


@dataclass(frozen=True)
class Preflight:
    """What :func:`preflight` settled: whether to push the finished run, the integrations to report to
    (``report_to`` spelled out by :func:`grpo.runs.tracking.configure`), and the native backend's plan (None for trl)."""

    push: bool
    report_to: list[str]
    plan: NativePlan | None


def preflight(script_args, training_args, given: frozenset | None = None) -> Preflight:
    """Every check that can fail before data, model or evaluation is touched, so a bad setting costs seconds.

    Refuses a model that is not a causal LM (:func:`grpo.modeling.models.check_causal_lm`); settings the
    native backend lacks (building its :class:`grpo.training.native.plan.NativePlan`, once) and launches it cannot
    shard; vLLM without CUDA, vllm or a reachable server; unknown or uninstalled
    trackers (and prepares offline wandb, logs under ``output_dir``); quantization this machine cannot
    do; a hub push that cannot happen (offline, no token). With ``push_to_hub`` the finished run is
    pushed by :func:`grpo.runs.publish.push_run`; the TRL backend hands its Trainer a copy of the config with
    ``push_to_hub`` off (the Trainer would upload every adapter-only ``checkpoint-N``). Nothing here changes
    the parsed config. ``given``: the keys the user set (:func:`grpo.config.parser.given_keys`), for the native
    plan's micro-batch choice; None = all of them.

    Returns:
        The :class:`Preflight`.

    Raises:
        UserError: naming the setting and what to set instead.
    """
    pad_to_multiple_of(training_args.pad_to_multiple_of, training_args.use_cpu)  # the warm-start pads on either backend
    check_causal_lm(script_args.model_name_or_path)  # an encoder fails later at the chat template, 12 frames deep
    plan = None
    if script_args.backend == "native":
        plan = build_plan(training_args, script_args, num_rewards=len(script_args.reward_funcs), given=given)
        check_native_launch()
    if training_args.use_vllm:
        check_vllm_setup(training_args)
    report_to = configure(training_args, native=script_args.backend == "native")
    check_quantization_supported(script_args, training_args)
    push = training_args.push_to_hub
    if push:
        require_push(training_args.hub_model_id, training_args.hub_token, Path(training_args.output_dir))
    return Preflight(push, report_to, plan)


def save_interrupted(model, tokenizer, out: Path, trainer=None) -> Path | None:
    """After Ctrl-C on the main process: the weights as they are to ``out/checkpoint-interrupted``, and the curves.

    The TRL backend's live model is ``trainer.model`` (the ``trainer`` it handed back); the native
    backend has already checkpointed its last whole step itself (``model`` is saved here as well). Under
    FSDP or DeepSpeed ZeRO-3 this process holds only a shard and the others may be anywhere, so no
    gather is attempted: nothing is saved and the warning points to the Trainer's last
    ``checkpoint-N`` (written by all processes together every ``save_steps``).

    Returns:
        The checkpoint directory, or None when the weights are sharded.
    """
    plot_curves(out)
    if trainer is not None and is_sharded(trainer):
        logger.warning("Interrupted: the weights are sharded across processes (FSDP / ZeRO-3), so no "
                       "checkpoint-interrupted is written; resume from the newest %s/checkpoint-N with "
                       "--resume_from_checkpoint latest", out)
        return None
    path = save_checkpoint(trainer.model if trainer is not None else model, tokenizer, out / "checkpoint-interrupted",
                           replace=True)
    logger.warning("Interrupted: weights saved to %s", path)
    return path


def before_grpo(model, tokenizer, train_rows, heldout, script_args, training_args, *, warm_start: bool,
                memory=None):
    """The stages before GRPO, shared by ``grpo train`` (:func:`run_training`) and ``grpo sft``.

    With ``script_args.eval_base`` the base model is evaluated first (``eval_before.json``); with
    ``warm_start`` the warm-start SFT (:func:`grpo.training.sft.warm_start`) follows, then its evaluation
    (``eval_after_sft.json``). Evaluations run on the main process, on the training device.

    Args:
        model, tokenizer: as loaded for training (:func:`grpo.modeling.quantization.load_for_training`).
        train_rows, heldout: :func:`load_splits` of ``script_args``.
        script_args, training_args: the run's config; files go to ``training_args.output_dir``.
        warm_start: run the SFT stage (``grpo sft`` always does; ``grpo train`` if ``script_args.warm_start``).
        memory: a :class:`grpo.common.memory.MemoryLog` that times each stage, or None.

    Returns:
        ``(model, reports)``: the model (warm-started if asked) and ``{"eval_before", "eval_after_sft"}``
        for the evaluations that ran (None on non-main processes).
    """
    from contextlib import nullcontext


    out = Path(training_args.output_dir)
    progress, dtype = not training_args.disable_tqdm and is_terminal(), eval_dtype(training_args)
    stage = memory.stage if memory is not None else (lambda name: nullcontext())
    reports = {}
    if script_args.eval_base:
        with stage("eval_before"):
            reports["eval_before"] = evaluate_on_main(training_args, model, lambda m: run_eval(  # main process, its device
                m, tokenizer, heldout, script_args, out / "eval_before.json", progress, dtype))
    if warm_start:
        with stage("warm_start"):
            model = run_warm_start(model, tokenizer, train_rows, script_args, training_args, out)
        with stage("eval_after_sft"):
            reports["eval_after_sft"] = evaluate_on_main(training_args, model, lambda m: run_eval(
                m, tokenizer, heldout, script_args, out / "eval_after_sft.json", progress, dtype))
    return model, reports


def run_training(script_args, training_args, command: str | None = None, given: frozenset | None = None) -> dict:
    """Run the exercise: warm-start (optional), GRPO with the chosen backend, before/after eval.

    Args:
        script_args: :class:`grpo.config.script_args.ScriptArgs`.
        training_args: ``trl.GRPOConfig``; ``output_dir`` is the run directory. With ``push_to_hub``
            the hub is checked first and the finished run is pushed by :func:`grpo.runs.publish.push_run`.
        command: the command line that started the run, for the model card.
        given: the config keys the user set (:func:`grpo.config.parser.given_keys`); None = all (see :func:`preflight`).

    Returns:
        ``{"output_dir", "checkpoint", "eval_before", "eval_after_sft", "eval_after", "curves"}`` (+ ``"hub"`` URLs).

    Raises:
        UserError: bad specs, data or config (already explained); a push that cannot happen (before
            training) or failed (after it, with the run directory complete and the retry command).
        KeyboardInterrupt: after saving ``checkpoint-interrupted`` and the curves so far (:func:`save_interrupted`).
    """
    from transformers import set_seed


    out = Path(training_args.output_dir)
    set_seed(training_args.seed)
    checked = preflight(script_args, training_args, given)
    if ensure_recipe_checkpoint(script_args):  # a recipe task's missing checkpoint: the recipe runs first
        check_causal_lm(script_args.model_name_or_path)
    train_rows, heldout = load_splits(script_args, training_args.seed)
    train_rows, periodic_rows = periodic_holdout(train_rows, script_args, training_args.seed)
    main_process = training_args.process_index == 0
    metrics_logger = MetricsLogger(out, enabled=main_process)
    memory = MemoryLog(out / "memory.json" if main_process else None)
    if main_process:
        out.mkdir(parents=True, exist_ok=True)
        hardware = describe()
        write_json_atomic(out / "hardware.json", {"hardware": hardware, "bf16": training_args.bf16,
                                                  "backend": script_args.backend})
        logger.info("hardware: %s; backend %s, %s", hardware, script_args.backend,
                       "bf16" if training_args.bf16 else "fp32")
    dtype = eval_dtype(training_args)
    reward_funcs = load_reward_funcs(script_args.reward_funcs, training_args.reward_weights, script_args.reward_kwargs)
    model, tokenizer = load_for_training(script_args.model_name_or_path, script_args)  # QLoRA: frozen 4/8-bit base, fp32 norms
    progress = not training_args.disable_tqdm and is_terminal()  # a log file gets no bar redraws

    result = {"output_dir": str(out)}
    model, reports = before_grpo(model, tokenizer, train_rows, heldout, script_args, training_args,
                                 warm_start=script_args.warm_start, memory=memory)
    result.update(reports)
    if script_args.use_peft:
        set_seed(training_args.seed)  # the adapter's init draws from the global RNG, which evaluations on the main process moved
        model = apply_lora(model, script_args.lora_r, script_args.lora_alpha, script_args.lora_dropout,
                           script_args.lora_target_modules)
    if training_args.resume_from_checkpoint is None:
        metrics_logger.truncate_after(0)  # a fresh GRPO stage starts fresh logs
    recorder, live = SampleRecorder(metrics_logger), {}  # live: the TRL backend's trainer, for Ctrl-C
    periodic = PeriodicEval(tokenizer, periodic_rows, script_args.periodic_eval_steps, script_args.eval_max_new_tokens,
                            script_args.eval_batch_size, script_args.prompt_format, dtype) if periodic_rows else None
    try:
        with memory.stage("grpo"):
            if checked.plan is not None:
                tracker = open_trackers(checked.report_to, training_args, script_args, enabled=main_process)
                model = native.train(model, tokenizer, train_rows, reward_funcs, checked.plan, metrics_logger,
                                     recorder, tracker, periodic_eval=periodic)  # every process: a collective
            else:
                model = trl_backend.train(model, tokenizer, train_rows, reward_funcs, training_args, script_args,
                                          metrics_logger, recorder, checked.report_to,
                                          on_trainer=lambda t: live.update(trainer=t),
                                          periodic_eval=periodic)
    except KeyboardInterrupt:
        if metrics_logger.enabled:
            save_interrupted(model, tokenizer, out, live.get("trainer"))
        raise
    live.clear()  # the TRL Trainer (optimizer state, colocated vLLM engine) must not outlive training
    release_memory()
    if not metrics_logger.enabled:
        return result

    result["checkpoint"] = str(save_final_checkpoint(full_precision_copy(model, script_args), tokenizer, out))
    (out / "eval_after.json").unlink(missing_ok=True)
    with memory.stage("eval_after"):
        result["eval_after"] = run_eval(model, tokenizer, heldout, script_args, out / "eval_after.json", progress, dtype)
    if result["eval_after"] is not None:
        write_json_atomic(out / "eval_comparison.json", run_comparison(result))
    result["reward_trend"] = reward_trend(metrics_logger)
    if result["reward_trend"] is not None:
        write_json_atomic(out / "reward_trend.json", result["reward_trend"])
    result["memory"] = memory.stages
    result["curves"] = str(plot_curves(out)) if (out / "metrics.jsonl").exists() else None
    write_model_card(out, script_args, training_args, eval_columns(result), script_args.model_name_or_path, command,
                     trend=result["reward_trend"])
    if checked.push:
        result["hub"] = push_run(out, training_args.hub_model_id or out.resolve().name, training_args.hub_private_repo,
                                 training_args.hub_token, script_args.push_merged)
    return result
