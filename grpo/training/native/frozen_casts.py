"""Frozen linear weights cast to the autocast dtype once per optimizer step, instead of once per forward.

Under ``torch.autocast`` (bf16 on a CPU with bf16 kernels, or a GPU) a linear layer's fp32 weight is
cast to bf16 at every call, and autograd keeps that cast until backward: the gradient of the layer's
input needs it. Autocast caches casts only of weights that require grad, so the frozen base weights
of a LoRA policy are cast afresh in every forward. The native step's loss runs two forwards per
micro-batch (the shared prompt, then the completions), so each micro-batch held two bf16 copies of
every frozen weight until its backward: ~540 MB for SmolLM2-135M, on top of the activations.

:func:`frozen_weights_cast` makes the casts once on entry, lends them to the frozen ``nn.Linear``
layers while the context is open (autocast finds them already in bf16 and casts nothing), and puts the
fp32 parameters back on exit, freeing the casts. The numbers do not change: autocast would have made
the same round-to-nearest cast (``tests/test_frozen_casts.py`` checks log-probs and gradients are
bitwise equal). The native loop opens it around each step's loss and backward
(:func:`grpo.training.native.train`), not around the rollout, which needs no casts and would only
carry them.

    with frozen_weights_cast(model, torch.bfloat16):
        loss = ...; loss.backward()
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

__all__ = ["frozen_weights_cast"]


def _frozen_linears(model: torch.nn.Module, dtype: torch.dtype) -> list[torch.nn.Linear]:
    """The ``nn.Linear`` layers whose fp32 weight is frozen (a LoRA base layer, a tied LM head), whose cast
    autocast would redo per forward. Quantized layers (bitsandbytes stores integer weights) and trainable
    weights (autocast caches their cast itself) are left alone."""
    if dtype == torch.float32:
        return []
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear)
            and m.weight.dtype == torch.float32 and not m.weight.requires_grad]


@contextmanager
def frozen_weights_cast(model: torch.nn.Module, dtype: torch.dtype | None):
    """Inside the context, each frozen fp32 ``nn.Linear`` weight of ``model`` is its ``dtype`` cast, made once here.

    A weight shared by several layers (tied embeddings) is cast once. Forwards inside must run under
    ``torch.autocast(dtype=dtype)``: outside autocast an fp32 input would meet a bf16 weight and fail.
    Backward may run inside the context or after it (autograd holds the casts it saved). Frozen weights
    must not change while the context is open (the native loop never changes them).

    Args:
        model: the policy (a peft model or a plain causal LM).
        dtype: the autocast dtype (``torch.bfloat16``), or None: no autocast, nothing is cast.

    Yields:
        The number of weights cast (0 when there was nothing to do).
    """
    layers = _frozen_linears(model, dtype) if dtype is not None else []
    originals = [m.weight for m in layers]
    casts: dict[int, torch.nn.Parameter] = {}
    for m, w in zip(layers, originals):
        if id(w) not in casts:
            casts[id(w)] = torch.nn.Parameter(w.detach().to(dtype), requires_grad=False)
        m._parameters["weight"] = casts[id(w)]  # not setattr: a frozen parameter swapped, not a new registration
    try:
        yield len(casts)
    finally:
        for m, w in zip(layers, originals):
            m._parameters["weight"] = w
        casts.clear()
