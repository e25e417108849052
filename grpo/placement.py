"""Where a training run puts its model: on one device, the training device.

One decision, a small function the tests call with ``device="cpu"`` (pytest tests/test_placement.py):

* :func:`place_model` -- the model on the training device (``training_args.device``: ``cuda:<local
  rank>`` under a launcher, the CPU with ``use_cpu``). A bitsandbytes model loaded with a
  ``device_map`` (QLoRA: already on this process's GPU, and ``.to`` is refused) stays where it is.
"""

from __future__ import annotations

import torch

from grpo.errors import UserError

__all__ = ["is_device_mapped", "place_model"]


def _same_device(a: torch.device, b: torch.device) -> bool:
    """``cuda`` and ``cuda:0`` agree when one of them names no index."""
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


def is_device_mapped(model) -> bool:
    """True for a model placed by ``from_pretrained(device_map=...)`` or holding bitsandbytes weights (not movable)."""
    return (getattr(model, "hf_device_map", None) is not None or bool(getattr(model, "is_loaded_in_4bit", False))
            or bool(getattr(model, "is_loaded_in_8bit", False)))


def place_model(model, device):
    """``model`` moved (in place) to ``device``; a device-mapped model (:func:`is_device_mapped`) is left where it is.

    Args:
        model: a causal LM or a peft model of one.
        device: the training device (``training_args.device``).

    Returns:
        The same model object.

    Raises:
        UserError: a device-mapped model that sits on another device than ``device``.
    """
    device = torch.device(device)
    if is_device_mapped(model):
        where = {p.device for p in model.parameters()}
        if not all(_same_device(d, device) for d in where):
            raise UserError(f"the model was loaded with a device_map onto {sorted(map(str, where))}, but this process "
                            f"trains on {device}: launch one process per GPU (accelerate launch / torchrun), so that "
                            f"each quantizes onto its own GPU")
        return model
    return model.to(device)
