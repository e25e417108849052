"""The native backend's optimizer: torch's AdamW, or bitsandbytes' 8-bit AdamW for the ``optim`` names that ask for it.

    grpo train --config grpo/configs/gsm8k.yaml --backend native --optim adamw_8bit

Which names are bitsandbytes ones, and the checks run before anything is loaded, live in
:mod:`grpo.modeling.quantization` (``BNB_OPTIMIZERS``, ``check_quantization_supported``); the TRL backend gets
its optimizer from the HF Trainer, which reads the same ``optim`` field.
"""

from __future__ import annotations

from grpo.common.errors import UserError
from grpo.modeling.quantization import BNB_INSTALL, BNB_OPTIMIZERS, optim_name

__all__ = ["make_optimizer"]


def make_optimizer(param_groups, training_args, model=None):
    """The native backend's optimizer: ``torch.optim.AdamW`` or bitsandbytes' 8-bit AdamW.

    Mirrors the HF Trainer: ``optim`` in :data:`grpo.modeling.quantization.BNB_OPTIMIZERS` gives
    ``bitsandbytes.optim.AdamW(optim_bits=8, is_paged=...)`` with the same lr, betas, eps and
    weight decay, and embedding weights (when trainable) keep 32-bit state.

    Args:
        param_groups: torch optimizer parameter groups.
        training_args: ``trl.GRPOConfig`` (``optim``, ``learning_rate``, ``adam_*``, ``weight_decay``).
        model: the model, for the embedding override (None skips it).

    Returns:
        The optimizer over ``param_groups``.

    Raises:
        UserError: an optim this function does not build, or bitsandbytes missing.
    """
    import torch

    optim = optim_name(training_args)
    kwargs = dict(lr=training_args.learning_rate, betas=(training_args.adam_beta1, training_args.adam_beta2),
                  eps=training_args.adam_epsilon, weight_decay=training_args.weight_decay)
    if optim in ("adamw_torch", "adamw_torch_fused"):
        return torch.optim.AdamW(param_groups, **kwargs)  # the fused kernel is left to torch to pick
    if optim not in BNB_OPTIMIZERS:
        raise UserError(f"optim={optim!r}: the native backend supports adamw_torch, adamw_torch_fused, "
                        f"{', '.join(BNB_OPTIMIZERS)}")
    try:
        import bitsandbytes as bnb
    except ImportError:
        raise UserError(f"optim={optim} needs the bitsandbytes package: {BNB_INSTALL}; "
                        f"or set optim adamw_torch") from None
    if model is not None:
        manager = bnb.optim.GlobalOptimManager.get_instance()
        for module in model.modules():
            if isinstance(module, torch.nn.Embedding) and module.weight.requires_grad:
                manager.register_module_override(module, "weight", {"optim_bits": 32})
    return bnb.optim.AdamW(param_groups, optim_bits=8, is_paged=optim.startswith("paged_"), **kwargs)
