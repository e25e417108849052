"""How this process was launched (accelerate, torchrun, mpirun, or alone) versus the hardware it has.

    accelerate launch --config_file grpo/configs/accelerate/cpu_2proc.yaml -m grpo.cli train ...  (CPU, 2 gloo processes)
    accelerate launch --config_file grpo/configs/accelerate/ddp.yaml --num_processes 8 -m grpo.cli train ...  (GPUs)
    torchrun --nproc_per_node 2 -m grpo.cli train ...                                             (CPU or GPU)

`accelerate launch` passes the chosen config to its child processes only through environment
variables: ``ACCELERATE_USE_FSDP`` / ``ACCELERATE_USE_DEEPSPEED`` for FSDP and DeepSpeed, the rank
variables of torch's elastic launcher (``LOCAL_RANK``, ``WORLD_SIZE``) for DDP, MPI's
(``PMI_SIZE``, ``OMPI_COMM_WORLD_SIZE``) plus ``ACCELERATE_USE_CPU=True`` for its multi-CPU mode,
and ``ACCELERATE_MIXED_PRECISION`` always. :func:`check_launch` reads them before anything heavy
is imported and stops with one clear line when a GPU config meets a machine without CUDA, instead of
the run going ahead unsynchronised (transformers treats a multi-process launch without CUDA and
without ``use_cpu`` as N independent single-process runs) or failing deep inside NCCL.

Why the CPU config uses mpirun: accelerate 1.15 starts a MULTI_CPU (or ``--cpu``) config with its
*simple* launcher, which runs exactly one Python process unless ``mpirun_config.mpirun_hostfile`` is
set, in which case it wraps the command in ``mpirun -f HOSTFILE -ppn N -n N`` (Intel MPI / MPICH
flags; Open MPI's when ``mpirun --version`` says so). The ``mpich`` wheel on PyPI ships ``mpirun``.
The processes then rendezvous over gloo (torch's wheels have no MPI backend) at ``MASTER_ADDR``.
"""

from __future__ import annotations

import os

from grpo.common.errors import UserError

CPU_CONFIG = "grpo/configs/accelerate/cpu_2proc.yaml"
_WORLD_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes"}


def world_size() -> int:
    """Processes in this launch (1 when started alone), from torchrun's or MPI's variables."""
    sizes = [int(os.environ[v]) for v in _WORLD_VARS if os.environ.get(v, "").isdigit()]
    return max(sizes, default=1)


def launcher() -> str:
    """``"accelerate"``, ``"mpirun"``, ``"torchrun"`` or ``"none"``: who started this process."""
    if "ACCELERATE_MIXED_PRECISION" in os.environ:
        return "accelerate"
    if any(os.environ.get(v) for v in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")):
        return "mpirun"
    if "TORCHELASTIC_RUN_ID" in os.environ or "LOCAL_RANK" in os.environ:
        return "torchrun"
    return "none"


def accelerate_mode() -> str | None:
    """The distributed type an `accelerate launch` parent chose, as its children see it, else None:
    ``"DEEPSPEED"``, ``"FSDP"``, ``"MULTI_CPU"``, ``"MULTI_GPU"`` or ``"NO"``."""
    if launcher() != "accelerate":
        return None
    if _flag("ACCELERATE_USE_DEEPSPEED"):
        return "DEEPSPEED"
    if _flag("ACCELERATE_USE_FSDP"):
        return "FSDP"
    if _flag("ACCELERATE_USE_CPU"):
        return "MULTI_CPU" if world_size() > 1 else "NO"
    return "MULTI_GPU" if world_size() > 1 else "NO"


def check_launch(cuda_available: bool | None = None) -> None:
    """Refuse launches this machine cannot run; make plain multi-process CPU launches use gloo.

    Call it before ``GRPOConfig``/``TrainingArguments`` are built: their ``__post_init__`` sets up
    the distributed state once, from the environment this function may adjust.

    Args:
        cuda_available: override for ``torch.cuda.is_available()`` (tests).

    Raises:
        UserError: a DeepSpeed, FSDP or multi-GPU accelerate config started on a machine without
            CUDA, naming the CPU config to use instead.
    """
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available()
    if cuda_available:
        return
    mode = accelerate_mode()
    cpu_hint = (f"on CPU use `accelerate launch --config_file {CPU_CONFIG}` (needs `pip install mpich`) or "
                f"`torchrun --nproc_per_node N -m grpo.cli ...`")
    if mode in {"DEEPSPEED", "FSDP", "MULTI_GPU"}:
        what = {"DEEPSPEED": "a DeepSpeed", "FSDP": "an FSDP", "MULTI_GPU": "a multi-GPU (DDP)"}[mode]
        raise UserError(f"accelerate launch started this run with {what} config, which needs CUDA GPUs, and this "
                        f"machine has none (torch.cuda.is_available() is False); {cpu_hint}")
    if world_size() > 1 and mode is None:
        # torchrun/mpirun without CUDA: without this, transformers' distributed state would be "NO"
        # (every rank a rank 0) and the processes would train independently.
        os.environ["ACCELERATE_USE_CPU"] = "true"


def check_native_launch() -> None:
    """Refuse FSDP and DeepSpeed launches for the native backend, which they would not shard.

    The native loop keeps a whole model on every process and averages gradients itself (DDP-style),
    so it runs under the CPU and DDP configs only.

    Raises:
        UserError: naming the config type and the two ways out.
    """
    mode = accelerate_mode()
    if mode in {"FSDP", "DEEPSPEED"}:
        raise UserError(f"the native backend does not shard the model, so it cannot run under an {mode} accelerate "
                        f"config; use --backend trl with it, or grpo/configs/accelerate/ddp.yaml with the native backend")
