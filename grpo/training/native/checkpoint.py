"""Checkpoint, resume and RNG state for the native GRPO loop (:mod:`grpo.training.native.loop`).

A checkpoint is ``<output_dir>/checkpoint-<step>/``, built under a temporary name and swapped in
with ``os.replace`` (``grpo.common.checkpoint_io.save_checkpoint``), so an interrupted save never
leaves a half-written directory. It holds:

- the model in HF format (``save_pretrained``: the LoRA adapter for a peft model) and tokenizer,
  so a checkpoint is usable on its own;
- ``trainable.safetensors``: the trainable parameters (exact tensors, reloaded on resume);
- ``trainer_state.pt``: optimizer and LR-scheduler state, the RNG states of python / numpy / torch
  (and CUDA), and the :class:`~grpo.training.native.experience.LoopState` (step, prompt cursor, buffered
  generation batch, partly filled logging window; :meth:`LoopState.snapshot`) -- tensors and plain values only, read back with
  ``torch.load(weights_only=True)``, so a checkpoint from someone else cannot run code on resume
  (a file that needs more than that is refused with :class:`UserError`).

Resuming restores all of it, so a run resumed from step k ends with the same weights and the
same metrics.jsonl (to float tolerance) as an uninterrupted run with the same seed
(tests/test_native.py::test_resume_matches_uninterrupted_run).
"""

from __future__ import annotations

import logging
import pickle
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from grpo.common.errors import UserError
from grpo.training.native.experience import LoopState

logger = logging.getLogger(__name__)

STATE_FILE = "trainer_state.pt"
TRAINABLE_FILE = "trainable.safetensors"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def rng_state() -> dict:
    """Snapshot of every RNG the loop draws from (LoRA dropout uses torch's global RNG), as tensors
    and plain Python values (numpy's key array as a list), so it loads with ``weights_only=True``."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore a snapshot taken by :func:`rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def trainable_state(model) -> dict[str, torch.Tensor]:
    """Copies of the parameters that require grad (the LoRA weights, or all of them)."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def save(output_dir, step: int, model, tokenizer, optimizer, scheduler, loop_state: dict, rng: dict,
         save_total_limit: int | None = None) -> Path:
    """Write ``checkpoint-<step>`` atomically and prune old ones beyond ``save_total_limit``.

    Args:
        output_dir: run directory.
        step: optimizer steps completed.
        model, tokenizer, optimizer, scheduler: saved as described in the module docstring.
        loop_state: :meth:`LoopState.snapshot` of the loop (stored as is).
        rng: an :func:`rng_state` snapshot taken at the step boundary.
        save_total_limit: keep at most this many checkpoints (None keeps all).

    Returns:
        the checkpoint directory.
    """
    from safetensors.torch import save_file

    from grpo.common.checkpoint_io import save_checkpoint

    payload = {"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng,
               "loop": loop_state}
    trainable = {n: t.contiguous() for n, t in trainable_state(model).items()}
    dest = save_checkpoint(model, tokenizer, Path(output_dir) / f"checkpoint-{step}",
                           extra_files={STATE_FILE: lambda p: torch.save(payload, p),
                                        TRAINABLE_FILE: lambda p: save_file(trainable, str(p))}, replace=True)
    logger.info("saved checkpoint %s", dest)
    if save_total_limit:
        for old in list_checkpoints(output_dir)[:-save_total_limit]:
            shutil.rmtree(old, ignore_errors=True)
    return dest


def list_checkpoints(output_dir) -> list[Path]:
    """Complete checkpoints in ``output_dir``, oldest step first."""
    root = Path(output_dir)
    found = [(int(m.group(1)), p) for p in root.glob("checkpoint-*")
             if (m := _CHECKPOINT_RE.match(p.name)) and (p / STATE_FILE).exists()] if root.exists() else []
    return [p for _, p in sorted(found)]


def resolve(resume, output_dir) -> Path | None:
    """Which checkpoint to resume from.

    Args:
        resume: None/False (start fresh), True or "true"/"latest" (the newest checkpoint in
            ``output_dir``; fresh start if there is none), or a checkpoint path.
        output_dir: run directory.

    Raises:
        UserError: an explicit path that is not a native checkpoint.
    """
    if resume in (None, False, "", "false", "False"):
        return None
    if resume is True or str(resume).lower() in ("true", "latest"):
        found = list_checkpoints(output_dir)
        if not found:
            logger.warning("resume requested but %s has no checkpoint-*/: starting from step 0", output_dir)
            return None
        return found[-1]
    path = Path(resume)
    if not (path / STATE_FILE).exists():
        raise UserError(f"resume_from_checkpoint={resume}: no {STATE_FILE} there; pass a checkpoint-<step> "
                        f"directory written by the native backend, or 'latest'")
    return path


def read_state(path) -> dict:
    """``trainer_state.pt`` of checkpoint ``path``, unpickled with ``weights_only=True``.

    Raises:
        UserError: the file is missing, or holds anything beyond tensors and plain values (a
            pickled class or callable, which unpickling would run), naming the file.
    """
    file = Path(path) / STATE_FILE
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{file} does not exist: not a native checkpoint") from None
    except pickle.UnpicklingError as err:
        detail = str(err).strip().splitlines()
        raise UserError(f"{file} holds pickled objects other than tensors and plain values "
                        f"({detail[-1] if detail else 'unsupported global'}); loading it could run arbitrary code, "
                        "so it is refused. Resume only from checkpoints written by grpo-toolkit's native backend.") from None


def load(path, model, optimizer, scheduler) -> dict:
    """Load a checkpoint into model/optimizer/scheduler, restore RNG; return the payload dict.

    Raises:
        UserError: an unsafe or unreadable state file (:func:`read_state`), or parameters that do
            not fit ``model``.
    """
    from safetensors.torch import load_file

    payload = read_state(path)
    trainable = load_file(str(Path(path) / TRAINABLE_FILE))
    params = dict(model.named_parameters())
    missing = [n for n in trainable if n not in params]
    if missing:
        raise UserError(f"checkpoint {path} does not fit this model (e.g. parameter {missing[0]}): "
                        f"resume with the same model and LoRA settings")
    with torch.no_grad():
        for name, value in trainable.items():
            params[name].copy_(value)
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    set_rng_state(payload["rng"])
    logger.info("resumed from %s (step %d)", path, payload["step"])
    return payload


def resume(spec, output_dir, state: LoopState, model, optimizer, scheduler, metrics_log=None,
           device=None) -> LoopState:
    """Resume the native loop from the checkpoint ``spec`` names, if any: weights, optimizer, schedule, RNG, loop state.

    Args:
        spec: ``resume_from_checkpoint``: None/False (start fresh: ``state`` comes back unchanged), True,
            "true"/"latest" (the newest ``checkpoint-N`` in ``output_dir``; fresh if there is none) or a path.
        output_dir: the run directory.
        state: the fresh :class:`LoopState` (returned when there is nothing to resume).
        model, optimizer, scheduler: loaded in place (the trainable parameters, exactly).
        metrics_log: a :class:`grpo.runs.run_dir.MetricsLogger` whose metrics/samples lines after the checkpoint's
            step are dropped, so the resumed run appends where it left off; None to leave the files alone.
        device: where the model trains: the saved buffer (read onto the CPU) goes there; None = the CPU.

    Returns:
        The checkpoint's :class:`LoopState` (its generation buffer a :class:`GenerationBatch` on ``device``), or
        ``state``.

    Raises:
        UserError: an explicit path that is not a native checkpoint (:func:`resolve`), an unsafe or unreadable
            state file, or parameters that do not fit ``model`` (:func:`load`).
    """
    path = resolve(spec, output_dir)
    if path is None:
        return state
    resumed = LoopState.from_snapshot(load(path, model, optimizer, scheduler)["loop"],
                                      device if device is not None else "cpu")
    if metrics_log is not None:
        metrics_log.truncate_after(resumed.step)
    return resumed
