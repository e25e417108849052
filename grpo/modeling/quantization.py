"""bitsandbytes: QLoRA (4-bit / 8-bit base weights under a LoRA adapter) and 8-bit AdamW.

    grpo train --config grpo/configs/gsm8k.yaml --load_in_4bit true              # QLoRA: nf4, bf16 compute
    grpo train --config grpo/configs/gsm8k.yaml --optim adamw_8bit               # 8-bit optimizer state
    grpo train --config grpo/configs/gsm8k.yaml --optim adamw_8bit --backend native

This module holds only what is bitsandbytes-specific (field checks, ``from_pretrained`` arguments,
preparing a quantized base for LoRA); loading a model with it is :mod:`grpo.modeling.loading`, and the
native backend's optimizer is :func:`grpo.training.native.optim.make_optimizer`. It imports no model code.

Field names are TRL's ``ModelConfig`` (``load_in_4bit``, ``load_in_8bit``, ``bnb_4bit_quant_type``,
``use_bnb_nested_quant``) plus transformers' ``bnb_4bit_compute_dtype`` (TRL takes the compute
dtype from its ``dtype`` field, which we do not have); optimizer names are transformers'
``OptimizerNames``.

What bitsandbytes 0.50 does on a CPU (measured on the embedded SmolLM2-135M):

* 8-bit AdamW steps on CPU tensors; its two moment buffers are uint8 (tensors under 4096
  elements keep 32-bit state, as on GPU).
* Paged optimizers are CUDA unified memory; on CPU bitsandbytes warns and runs the non-paged
  optimizer. We refuse ``paged_*`` without CUDA instead and name ``adamw_8bit`` (same update).
* 4-bit and 8-bit weights load, run forward and backward, and LoRA gradients match a float model
  holding the dequantized weights -- with one exception handled in :func:`keep_trainable_layout`:
  a 4-bit layer that runs once in eval mode without grad (evaluation, rollouts) repacks its
  weights into an inference-only CPU layout whose matmul has no backward, after which gradients
  below it are silently zero.
"""

from __future__ import annotations

import logging

from grpo.common.errors import UserError

logger = logging.getLogger(__name__)

# transformers OptimizerNames values that give bitsandbytes' AdamW with 8-bit state
# ("adamw_bnb_8bit" and "adamw_8bit" are the same optimizer under two names).
BNB_OPTIMIZERS = ("adamw_8bit", "adamw_bnb_8bit", "paged_adamw_8bit")
QUANT_TYPES = ("nf4", "fp4")
COMPUTE_DTYPES = ("bfloat16", "float16", "float32")
BNB_INSTALL = "pip install 'grpo-toolkit[quant]'  (bitsandbytes>=0.50)"


def optim_name(training_args) -> str:
    """``training_args.optim`` as a lower-case transformers ``OptimizerNames`` value ("" when unset)."""
    optim = getattr(training_args, "optim", "")
    return str(getattr(optim, "value", optim)).lower()  # OptimizerNames.ADAMW_BNB -> "adamw_bnb_8bit"


def is_quantized(script_args) -> bool:
    """True when the base model is to be loaded in 4-bit or 8-bit."""
    return bool(getattr(script_args, "load_in_4bit", False) or getattr(script_args, "load_in_8bit", False))


def validate_fields(script_args) -> None:
    """Check the quantization fields of ``ScriptArgs`` on their own (called from ``__post_init__``).

    Raises:
        UserError: 4-bit and 8-bit together, an unknown quant type or compute dtype, or quantized
            weights without LoRA (bitsandbytes weights are frozen integers; only an adapter can train).
    """
    a = script_args
    if a.load_in_4bit and a.load_in_8bit:
        raise UserError("load_in_4bit and load_in_8bit are both true: pick one (4-bit is QLoRA)")
    if a.bnb_4bit_quant_type not in QUANT_TYPES:
        raise UserError(f"bnb_4bit_quant_type={a.bnb_4bit_quant_type!r}: use one of {', '.join(QUANT_TYPES)}")
    if a.bnb_4bit_compute_dtype not in COMPUTE_DTYPES:
        raise UserError(f"bnb_4bit_compute_dtype={a.bnb_4bit_compute_dtype!r}: use one of {', '.join(COMPUTE_DTYPES)}")
    if is_quantized(a) and not a.use_peft:
        which = "load_in_4bit" if a.load_in_4bit else "load_in_8bit"
        raise UserError(f"{which}=true with use_peft=false: quantized weights cannot be trained; "
                        f"set use_peft true (QLoRA) or {which} false to train all weights")


def check_quantization_supported(script_args, training_args, sft: bool = False) -> None:
    """Refuse quantization/optimizer settings this machine cannot run, before any model is loaded.

    Args:
        script_args: :class:`grpo.config.script_args.ScriptArgs`.
        training_args: ``trl.GRPOConfig`` (its ``optim``).
        sft: True for ``grpo sft`` (the warm-start stage run alone).

    Raises:
        UserError: bitsandbytes missing; a paged optimizer without CUDA; quantized weights with vLLM.
    """
    optim = "" if sft else optim_name(training_args)  # the warm-start stage uses its own AdamW
    quantized = is_quantized(script_args)
    if not quantized and optim not in BNB_OPTIMIZERS:
        return
    asked = ("load_in_4bit" if script_args.load_in_4bit else "load_in_8bit") if quantized else f"optim={optim}"
    if quantized and not sft and getattr(training_args, "use_vllm", False):
        raise UserError(f"{asked} with use_vllm: the policy's weights reach vLLM by merging the adapter into the base, "
                        f"which breaks on bitsandbytes weights (trl issues #4973, #3466); set use_vllm false "
                        f"(transformers generate) or {asked} false")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        instead = "set load_in_4bit/load_in_8bit false" if quantized else "set optim adamw_torch"
        raise UserError(f"{asked} needs the bitsandbytes package: {BNB_INSTALL}; or {instead}") from None
    import torch

    if optim.startswith("paged_") and not torch.cuda.is_available():
        raise UserError(f"optim={optim} pages optimizer state through CUDA unified memory and no CUDA GPU was "
                        f"found; on CPU set optim adamw_8bit (the same 8-bit AdamW update, not paged)")


def build_bnb_config(script_args):
    """The ``transformers.BitsAndBytesConfig`` for ``from_pretrained``, or None when not quantizing.

    4-bit: ``bnb_4bit_quant_type`` (nf4 by default), double quantization from ``use_bnb_nested_quant``,
    matmuls in ``bnb_4bit_compute_dtype`` (bf16 by default). 8-bit: LLM.int8() weights.
    """
    if not is_quantized(script_args):
        return None
    import torch
    from transformers import BitsAndBytesConfig

    if script_args.load_in_8bit:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=script_args.bnb_4bit_quant_type,
        bnb_4bit_use_double_quant=script_args.use_bnb_nested_quant,
        bnb_4bit_compute_dtype=getattr(torch, script_args.bnb_4bit_compute_dtype),
    )


def load_kwargs(script_args) -> dict:
    """Extra ``from_pretrained`` arguments for :func:`grpo.modeling.models.load_model`: ``{}`` when not quantizing.

    Otherwise the :func:`build_bnb_config` and, with CUDA, ``device_map={"": local process index}`` so
    that each process of ``accelerate launch`` / ``torchrun`` quantizes onto its own GPU (as TRL's
    ``get_kbit_device_map``); on CPU transformers places the model on the CPU.
    """
    if not is_quantized(script_args):
        return {}
    import torch

    kwargs = {"quantization_config": build_bnb_config(script_args)}
    if torch.cuda.is_available():
        from accelerate import PartialState

        kwargs["device_map"] = {"": PartialState().local_process_index}
    return kwargs


def keep_trainable_layout(model) -> None:
    """Stop bitsandbytes from repacking 4-bit weights into its inference-only CPU layout.

    bitsandbytes 0.50 repacks a ``Linear4bit`` weight the first time the layer runs on a CPU with
    AVX512-BF16 in eval mode without grad (evaluation, rollouts); the repacked matmul has no
    backward, so LoRA gradients of every layer below become silently zero. Called by
    :func:`grpo.modeling.models.load_model` right after a quantized load, before any forward. No effect on
    GPU or on 8-bit layers.
    """
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit) and hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False  # read by Linear4bit.forward (bitsandbytes 0.50)


def prepare_for_training(model, gradient_checkpointing: bool = False):
    """Make a bitsandbytes-loaded model ready for a LoRA adapter (a float model is returned unchanged).

    peft's ``prepare_model_for_kbit_training`` freezes the base, casts the remaining float
    parameters (norms, embeddings) to fp32 and lets gradients reach the inputs.

    Returns:
        The same model, prepared in place.
    """
    if not getattr(model, "is_loaded_in_4bit", False) and not getattr(model, "is_loaded_in_8bit", False):
        return model
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
