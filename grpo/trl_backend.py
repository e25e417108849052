"""Backend ``trl``: translate our config into a ``trl.GRPOTrainer`` and run it.

Nothing here changes TRL's algorithm. The additions are a ``TrainerCallback`` that mirrors
TRL's per-step logs into the run directory's ``metrics.jsonl`` (same names, as TRL computes them)
and watches for the zero-spread failure mode, and :mod:`grpo.tracking`'s callback for ``report_to``.
"""

from __future__ import annotations

import logging

from grpo.diagnostics import warn_if_no_signal

logger = logging.getLogger(__name__)


def _metrics_callback(metrics_logger, recorder):
    from transformers import TrainerCallback

    class MirrorMetrics(TrainerCallback):
        """Copies each training log line into metrics.jsonl and flushes recorded samples."""

        def __init__(self):
            self.history: list[dict] = []

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "reward" not in logs or not state.is_world_process_zero:
                return
            metrics_logger.log(state.global_step, logs)
            self.history.append(logs)
            warn_if_no_signal(self.history)
            if recorder is not None:
                recorder.flush(state.global_step)

    return MirrorMetrics()


def train(model, tokenizer, train_dataset, reward_funcs, training_args, script_args, logger_):
    """Run ``trl.GRPOTrainer`` (signature shared with :func:`grpo.native.train`).

    Args:
        model: causal LM, LoRA already applied (peft) or full.
        tokenizer: its tokenizer.
        train_dataset: rows with ``prompt`` plus the columns the rewards read (``answer``).
        reward_funcs: TRL-signature reward callables.
        training_args: ``trl.GRPOConfig``, passed to TRL unchanged.
        script_args: :class:`grpo.script_args.ScriptArgs` (unused by this backend beyond logging).
        logger_: :class:`grpo.run_dir.MetricsLogger`; ``logger_.recorder`` (optional) flushes samples.

    Returns:
        The trained model: ``trainer.model``, or under FSDP / ZeRO-3 an unsharded copy on the main
        process (:func:`grpo.sharded.unsharded_model`).

    Raises:
        KeyboardInterrupt: propagated after TRL stops; the caller saves what exists.
    """
    from trl import GRPOTrainer

    from grpo.console import quiet_progress
    from grpo.sharded import unsharded_model
    from grpo.tracking import configure, trl_callback

    extras = trl_callback(script_args, configure(training_args))  # report_to: script args + tensorboard table
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=list(reward_funcs),
        args=training_args,
        train_dataset=train_dataset,
        processing_class=tokenizer,
        callbacks=[_metrics_callback(logger_, getattr(logger_, "recorder", None))] + ([extras] if extras else []),
    )
    quiet_progress(trainer, "GRPO (trl)")
    if extras is not None:
        extras.trainer = trainer  # reads TRL's buffer of the last generation batch for the tensorboard table
    logger_.trainer = trainer  # lets the caller save on Ctrl-C
    resume = training_args.resume_from_checkpoint
    if resume in {"latest", "true", "True"}:  # our spelling for "the newest checkpoint-N in output_dir"
        resume = True
    trainer.train(resume_from_checkpoint=resume)
    return unsharded_model(trainer, script_args)  # FSDP / ZeRO-3: gathered into one module on the main process
