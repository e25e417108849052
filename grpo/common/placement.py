"""Where a training run puts its model: one device, evaluation on the main process, full copies outside ZeRO-3.

Three decisions, each a small function the tests call with ``device="cpu"`` (pytest tests/test_placement.py):

* :func:`place_model` -- the model on the training device (``training_args.device``: ``cuda:<local
  rank>`` under a launcher, the CPU with ``use_cpu``). A bitsandbytes model loaded with a
  ``device_map`` (QLoRA: already on this process's GPU, and ``.to`` is refused) stays where it is.
* :func:`eval_placement` / :func:`evaluate_on_main` -- evaluation around training runs once, on the
  main process, on the training device; the other processes wait at a barrier (so a long
  evaluation must fit in ``ddp_timeout``, 1800 s by default). Weights that DeepSpeed ZeRO-3 has
  partitioned across processes (``zero3_init_flag: true``) cannot run a forward outside the
  DeepSpeed engine: that evaluation is skipped with one warning.
* :func:`zero3_init_disabled` -- a model one process builds alone (the merge at the end of a
  sharded run, the warm-start reload) must not be built inside ``deepspeed.zero.Init``, whose
  parameter partitioning is a collective the other processes never join (a hang until the NCCL
  timeout).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

import torch

from grpo.common.errors import UserError

logger = logging.getLogger(__name__)

__all__ = ["eval_placement", "evaluate_on_main", "is_device_mapped", "is_partitioned", "on_device", "place_model",
           "zero3_init_disabled"]


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


@contextmanager
def on_device(model, device):
    """``model`` on ``device`` for the block (:func:`place_model`), then back on the device it came from."""
    before = next(model.parameters()).device
    placed = place_model(model, device)
    try:
        yield placed
    finally:
        if not is_device_mapped(model) and next(model.parameters()).device != before:
            model.to(before)


def is_partitioned(model) -> bool:
    """True when DeepSpeed ZeRO-3 has partitioned ``model``'s parameters across processes (they carry ``ds_id``)."""
    return any(hasattr(p, "ds_id") for p in model.parameters())


def eval_placement(process_index: int, device, partitioned: bool = False) -> tuple[bool, torch.device]:
    """Whether this process evaluates, and on which device.

    Args:
        process_index: this process's global rank (``training_args.process_index``).
        device: the training device (``training_args.device``).
        partitioned: the weights are ZeRO-3 partitions (:func:`is_partitioned`), which no process can
            run a forward with outside the DeepSpeed engine.

    Returns:
        ``(run, device)``: run only on the main process and never on partitioned weights; evaluate on
        the training device.
    """
    return process_index == 0 and not partitioned, torch.device(device)


def _wait_for_everyone() -> None:
    from accelerate import PartialState

    PartialState().wait_for_everyone()  # a no-op in a single process


def evaluate_on_main(training_args, model, evaluate, barrier=None):
    """``evaluate(model)`` where :func:`eval_placement` says: the main process, the training device; the others wait.

    Args:
        training_args: the run's ``trl.GRPOConfig`` (``process_index``, ``device``).
        model: the model to evaluate; it is moved to the training device for the call and back after
            (:func:`on_device`).
        evaluate: ``model -> report`` (e.g. :func:`grpo.cli.pipeline.run_eval` with its other arguments bound).
        barrier: called by every process after the main one is done; default accelerate's ``wait_for_everyone``.

    Returns:
        The report on the process that evaluated; None on the others and when the weights are partitioned.
    """
    partitioned = is_partitioned(model)
    run, device = eval_placement(training_args.process_index, training_args.device, partitioned)
    if partitioned and training_args.process_index == 0:
        logger.warning("DeepSpeed ZeRO-3 has partitioned the model's weights across processes (zero3_init_flag: "
                       "true), and a forward outside the DeepSpeed engine cannot run on them: skipping this "
                       "evaluation; the evaluation after training runs on the gathered model")
    report = None
    if run:
        with on_device(model, device) as placed:
            report = evaluate(placed)
    (barrier or _wait_for_everyone)()
    return report


@contextmanager
def zero3_init_disabled():
    """Inside the block, ``from_pretrained`` builds ordinary full models even when DeepSpeed ZeRO-3 is configured.

    transformers builds a model inside ``deepspeed.zero.Init`` when ``is_deepspeed_zero3_enabled()``,
    which reads a module-level weak reference to the DeepSpeed config that ``TrainingArguments``
    (through accelerate's plugin) registers. The block clears it with transformers'
    ``unset_hf_deepspeed_config`` and registers the same object again afterwards, so the Trainer's
    own ZeRO-3 handling is unchanged. (accelerate 1.15's ``zero3_init_context_manager(enable=False)``
    is no substitute: it registers the same stage-3 config again, so transformers still sees ZeRO-3.)
    Outside DeepSpeed it does nothing.
    """
    from transformers.integrations import deepspeed as hf_deepspeed

    ref = getattr(hf_deepspeed, "_hf_deepspeed_config_weak_ref", None)  # no public getter for the object itself
    config = ref() if ref is not None else None
    if config is None:
        yield
        return
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed.set_hf_deepspeed_config(config)
