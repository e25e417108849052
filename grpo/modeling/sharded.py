"""The trained model out of a sharded TRL run (FSDP, DeepSpeed ZeRO-3), as one ordinary module.

Under FSDP and ZeRO-3 every process holds a slice of each parameter, so after ``trainer.train()``
``trainer.model`` can be neither merged, nor evaluated, nor saved as a checkpoint by one process.
:func:`unsharded_model` gathers the full state dict with accelerate's ``get_state_dict`` (a
collective: every process must call it; ZeRO-3 needs ``zero3_save_16bit_model: true``, as in
``grpo/configs/accelerate/deepspeed_zero3.yaml``) and loads it, on the main process, into a fresh
copy of the model. DDP, ZeRO-1/2 and single-process runs keep full parameters on every process
and get ``trainer.model`` back unchanged.
"""

from __future__ import annotations

import logging

from grpo.modeling import (
    models,  # called as models.load_model: a stand-in set on grpo.modeling.models reaches this module too
)

logger = logging.getLogger(__name__)

__all__ = ["is_sharded", "load_into_fresh_copy", "unsharded_model"]


def is_sharded(trainer) -> bool:
    """True when ``trainer`` (a transformers ``Trainer``) shards parameters across processes: FSDP or ZeRO-3."""
    if getattr(trainer, "is_fsdp_enabled", False):
        return True
    if getattr(trainer, "is_deepspeed_enabled", False):
        plugin = trainer.accelerator.state.deepspeed_plugin
        return plugin is not None and plugin.zero_stage == 3
    return False


def load_into_fresh_copy(model, state_dict: dict, script_args):
    """A new, unsharded model with ``model``'s architecture holding the tensors of ``state_dict``.

    Args:
        model: the trained model (possibly sharded): a ``peft.PeftModel`` or a plain causal LM. Only
            its configuration is read.
        state_dict: the full state dict of ``model`` (``name -> tensor``, any dtype; e.g. ZeRO-3's 16-bit one).
        script_args: :class:`grpo.config.script_args.ScriptArgs`; ``model`` is the checkpoint a plain model was
            loaded from. A peft model's base is the one its adapter config names (a warm start's
            checkpoint, or ``script_args.model_name_or_path``), loaded unquantized
            (:func:`grpo.modeling.models.adapter_on_fresh_base`).

    Returns:
        The copy, float32 on CPU: for a peft model the fresh base with the adapter tensors of
        ``state_dict``; for a plain model every tensor of ``state_dict``. Built with ZeRO-3's
        ``zero.Init`` switched off (:func:`grpo.common.placement.zero3_init_disabled`): only the main process
        builds it, and ``zero.Init`` would wait for the others, which have returned (a hang).

    Raises:
        RuntimeError: ``state_dict`` does not fit the architecture (missing or unexpected names,
            or shapes; for a peft model: no adapter tensors, or ones without a place).
    """
    from grpo.common.placement import (
        zero3_init_disabled,  # here, not at the top: grpo.common.placement imports torch (STYLE 14)
    )

    if hasattr(model, "peft_config"):
        return models.adapter_on_fresh_base(model, script_args.model_name_or_path, state_dict)  # (zero.Init off in there too)
    with zero3_init_disabled():
        fresh, _ = models.load_model(script_args.model_name_or_path)
    fresh.load_state_dict(state_dict, strict=True)
    return fresh


def unsharded_model(trainer, script_args):
    """``trainer.model`` as one ordinary module on the main process of a sharded run; call on every process.

    Args:
        trainer: a transformers ``Trainer`` (TRL's ``GRPOTrainer``) after ``train()``.
        script_args: see :func:`load_into_fresh_copy`.

    Returns:
        Not sharded: ``trainer.model``. Sharded: on the main process a fresh copy on the training
        device (:func:`load_into_fresh_copy`), on the others ``trainer.model`` (not for saving).

    Raises:
        ValueError: ZeRO-3 without ``stage3_gather_16bit_weights_on_model_save`` (accelerate's message says what to set).
    """
    if not is_sharded(trainer):
        return trainer.model
    wrapped = trainer.deepspeed if getattr(trainer, "is_deepspeed_enabled", False) else trainer.model
    state_dict = trainer.accelerator.get_state_dict(wrapped)  # every process takes part; full only on the main one
    if not trainer.accelerator.is_main_process:
        return trainer.model
    logger.info("Gathered the sharded model (%d tensors) for the final checkpoint", len(state_dict))
    return load_into_fresh_copy(trainer.model, state_dict, script_args).to(trainer.args.device)
