"""Backend ``trl``: translate our config into a ``trl.GRPOTrainer`` and run it.

Nothing here changes TRL's algorithm. The additions are a ``TrainerCallback`` that mirrors
TRL's per-step logs into the run directory's ``metrics.jsonl`` (same names, as TRL computes them; plus
``completions/placeholder_reasoning_rate`` of the step's generation batch, which TRL does not compute)
and watches for the zero-spread failure mode, and :mod:`grpo.runs.tracking`'s callback for ``report_to``.
"""

from __future__ import annotations

import logging

from grpo.training.diagnostics import warn_if_no_signal
from rewards.reasoning import placeholder_reasoning_rate

logger = logging.getLogger(__name__)


def _metrics_callback(metrics_logger, recorder, periodic_eval=None):
    from transformers import TrainerCallback

    class MirrorMetrics(TrainerCallback):
        """Copies each training log line into metrics.jsonl, flushes recorded samples, and runs the periodic
        evaluation (its ``eval/*`` metrics join the log line of the step it ran after; the step is forced to log).

        The periodic evaluation is a collective: every process answers its share of the problems at the same
        step (:class:`grpo.evaluation.periodic_eval.PeriodicEval`), and the decision to run it depends only on
        the step, the same on every process. Sharded weights (FSDP, ZeRO-3) cannot generate outside the
        wrapped forward, so it is then skipped with one warning (:meth:`attach`)."""

        def __init__(self):
            self.history: list[dict] = []
            self.evaluated: dict = {}
            self.periodic_eval = periodic_eval

        def attach(self, trainer) -> None:
            """Switch the periodic evaluation off for a trainer that shards the weights."""
            from grpo.modeling.sharded import is_sharded

            if self.periodic_eval is not None and is_sharded(trainer):
                if trainer.accelerator.is_main_process:
                    logger.warning("periodic evaluation skipped: FSDP / ZeRO-3 shard the weights across processes, "
                                   "and the evaluation generates outside the wrapped model (set periodic_eval_steps 0 "
                                   "to silence this; eval_before/eval_after still run on the gathered model)")
                self.periodic_eval = None

        def _evaluate(self, args, model, step: int) -> dict:
            from grpo.common.distributed import init_distributed

            rank, world = init_distributed(args.device)
            return self.periodic_eval(model, step, rank, world, args.device)

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            if self.periodic_eval is not None and state.global_step == 0:
                evaluated = self._evaluate(args, model, 0)  # the curve's starting point
                if state.is_world_process_zero:
                    metrics_logger.log(0, evaluated)

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if self.periodic_eval is not None and self.periodic_eval.due(state.global_step, state.max_steps):
                self.evaluated = self._evaluate(args, model, state.global_step)
                control.should_log = True

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "reward" not in logs or not state.is_world_process_zero:
                return
            logs.update(self.evaluated)  # in place: the console's callback, called after this one, shows them too
            if recorder is not None and recorder.pending:  # TRL does not log it: this process's batch, as native
                logs["completions/placeholder_reasoning_rate"] = placeholder_reasoning_rate(recorder.pending["completions"])
            self.evaluated = {}
            metrics_logger.log(state.global_step, logs)
            self.history.append(logs)
            warn_if_no_signal(self.history)
            if recorder is not None:
                recorder.flush(state.global_step)

    return MirrorMetrics()


def fresh_accelerator_state(args) -> None:
    """Make ``args`` (a copy of the run's config) set up accelerate afresh when its Trainer is built.

    A Trainer built earlier in this process (the warm-start SFT's) leaves accelerate's shared state
    behind, with its DeepSpeed plugin, and accelerate refuses a second ``Accelerator`` given a plugin
    (``NotImplementedError``; transformers issue #35073). ``TrainingArguments`` caches its device setup,
    which is what resets that state, and the parsed config has run it already; the copy drops the cache
    and runs the setup again (resetting the state now, before the Trainer builds its ``Accelerator``), and
    gets its own DeepSpeed config and plugin (the parsed config's are left as they are).
    """
    args.__dict__.pop("_setup_devices", None)  # functools.cached_property keeps its value in the instance dict
    _ = args.device  # runs the setup: accelerate's shared state reset, this process's state made again
    if args.deepspeed:
        from accelerate.utils import DeepSpeedPlugin
        from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

        args.hf_deepspeed_config = HfTrainerDeepSpeedConfig(args.deepspeed)
        args.hf_deepspeed_config.trainer_config_process(args)
        args.deepspeed_plugin = DeepSpeedPlugin(hf_ds_config=args.hf_deepspeed_config)


def trainer_config(training_args, report_to):
    """The ``trl.GRPOConfig`` the Trainer gets: :func:`grpo.runs.tracking.trainer_args`' copy of ``training_args``
    (``report_to``, ``push_to_hub`` off: the pipeline pushes the finished run) with ``pad_to_multiple_of`` as the
    native backend reads it: left unset on a CPU, 32 (:func:`grpo.common.hardware.pad_to_multiple_of`; oneDNN keeps
    a kernel and its memory per sequence width, so unpadded widths grow the process every step).

    Raises:
        UserError: ``pad_to_multiple_of`` < 1.
    """
    from grpo.common.hardware import pad_to_multiple_of
    from grpo.runs.tracking import trainer_args

    args = trainer_args(training_args, list(report_to), push_to_hub=False)
    fresh_accelerator_state(args)
    pad = pad_to_multiple_of(args.pad_to_multiple_of, args.use_cpu)
    if pad > 1:  # None on a GPU stays None (TRL's own default there)
        args.pad_to_multiple_of = pad
    return args


def train(model, tokenizer, train_dataset, reward_funcs, training_args, script_args, metrics_logger, recorder=None,
          report_to=(), on_trainer=None, periodic_eval=None):
    """Run ``trl.GRPOTrainer``.

    Args:
        model: causal LM, LoRA already applied (peft) or full.
        tokenizer: its tokenizer.
        train_dataset: rows with ``prompt`` plus the columns the rewards read (``answer``).
        reward_funcs: TRL-signature reward callables.
        training_args: ``trl.GRPOConfig``; the Trainer gets :func:`trainer_config`'s copy.
        script_args: :class:`grpo.config.script_args.ScriptArgs` (the run config the trackers record; the unsharding
            of FSDP runs).
        metrics_logger: :class:`grpo.runs.run_dir.MetricsLogger`; TRL's log lines are mirrored into metrics.jsonl.
        recorder: :class:`grpo.runs.run_dir.SampleRecorder` wrapped around each reward (validating it) and flushed
            at each log, or None (rewards validated by TRL only).
        report_to: the integrations, as :func:`grpo.runs.tracking.configure` returned them (preflight).
        on_trainer: called with the ``GRPOTrainer`` once built (the caller saves its live model on Ctrl-C), or None.
        periodic_eval: :class:`grpo.evaluation.periodic_eval.PeriodicEval` run by every process (each its share) before
            training and when due (skipped when the weights are sharded)
            (its ``eval/*`` metrics join that step's log line), or None.

    Returns:
        The trained model: ``trainer.model``, or under FSDP / ZeRO-3 an unsharded copy on the main
        process (:func:`grpo.modeling.sharded.unsharded_model`).

    Raises:
        KeyboardInterrupt: propagated after TRL stops; the caller saves what exists.
    """
    from trl import GRPOTrainer

    from grpo.common.console import quiet_progress
    from grpo.modeling.sharded import unsharded_model
    from grpo.runs.tracking import trl_callback

    extras = trl_callback(script_args, list(report_to))  # script args in the run config + tensorboard table
    mirror = _metrics_callback(metrics_logger, recorder, periodic_eval)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[recorder.wrap(f) for f in reward_funcs] if recorder is not None else list(reward_funcs),
        args=trainer_config(training_args, report_to),
        train_dataset=train_dataset,
        processing_class=tokenizer,
        callbacks=[mirror] + ([extras] if extras else []),
    )
    mirror.attach(trainer)
    quiet_progress(trainer, "GRPO (trl)")
    if extras is not None:
        extras.trainer = trainer  # reads TRL's buffer of the last generation batch for the tensorboard table
    if on_trainer is not None:
        on_trainer(trainer)
    resume = training_args.resume_from_checkpoint
    if resume in {"latest", "true", "True"}:  # our spelling for "the newest checkpoint-N in output_dir"
        resume = True
    trainer.train(resume_from_checkpoint=resume)
    return unsharded_model(trainer, script_args)  # FSDP / ZeRO-3: gathered into one module on the main process
