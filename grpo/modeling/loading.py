"""Loading the policy for training, quantized or not, and its full-precision copy at the end of a QLoRA run.

:mod:`grpo.modeling.models` turns a model spec into a model; :mod:`grpo.modeling.quantization` holds what bitsandbytes
needs (``from_pretrained`` arguments, preparing a 4/8-bit base for LoRA). The two functions here
combine them, so neither of those modules imports the other's callers:

    model, tokenizer = load_for_training(script_args.model_name_or_path, script_args)   # the base of a run, `grpo sft`
    final = full_precision_copy(trained, script_args)                      # QLoRA: adapter on the float base

``load_model`` and ``adapter_on_fresh_base`` are called through the :mod:`grpo.modeling.models` module, so a
stand-in set on that module (tests/test_placement.py records every load) reaches these calls too.
"""

from __future__ import annotations

from grpo.modeling import models
from grpo.modeling.quantization import is_quantized, load_kwargs, prepare_for_training

__all__ = ["full_precision_copy", "load_for_training"]


def load_for_training(spec, script_args):
    """Load a model spec for training, quantized as ``script_args`` asks and prepared for a LoRA adapter.

    Used for the base of a run, ``grpo sft``, and the QLoRA warm-start's reload of its full-precision
    merged checkpoint.

    Args:
        spec: a model spec or checkpoint directory (see :func:`grpo.modeling.models.load_model`).
        script_args: :class:`grpo.config.script_args.ScriptArgs` (``load_in_4bit``/``load_in_8bit`` and the bnb fields).

    Returns:
        ``(model, tokenizer)`` from :func:`grpo.modeling.models.load_model` with
        :func:`grpo.modeling.quantization.load_kwargs`, after :func:`grpo.modeling.quantization.prepare_for_training`
        (a no-op for a float model).

    Raises:
        UserError: see :func:`grpo.modeling.models.load_model`.
    """
    model, tokenizer = models.load_model(str(spec), **load_kwargs(script_args))
    return prepare_for_training(model), tokenizer


def full_precision_copy(model, script_args):
    """The trained adapter on the unquantized base: what a quantized run saves as its merged checkpoint.

    Merging an adapter into 4-bit weights re-quantizes them (peft warns about rounding), and the
    result needs bitsandbytes to load. As QLoRA is usually deployed, the adapter's exact tensors go
    onto the base model in its checkpoint precision instead -- the same model ``grpo export`` builds
    from ``checkpoint/adapter``. A float model, or one without an adapter, is returned unchanged.

    Args:
        model: the trained ``peft.PeftModel`` (on a bitsandbytes base when ``script_args`` quantizes);
            its adapter config names the checkpoint the base was loaded from.
        script_args: :class:`grpo.config.script_args.ScriptArgs` (``load_in_4bit``/``load_in_8bit``; ``model`` if the
            adapter config names no base).

    Returns:
        A ``peft.PeftModel`` on a freshly loaded unquantized base, holding ``model``'s adapter weights.
    """
    if not is_quantized(script_args) or not hasattr(model, "peft_config"):
        return model
    # the checkpoint the quantized base was loaded from: script_args.model_name_or_path, or the warm-start's sft_checkpoint
    return models.adapter_on_fresh_base(model, script_args.model_name_or_path)
