"""vLLM in server mode (``use_vllm: true``, ``vllm_mode: server``): rollouts from a separate vLLM server.

    CUDA_VISIBLE_DEVICES=0 trl vllm-serve --model Qwen/Qwen2.5-0.5B-Instruct          # GPU 0: generation
    CUDA_VISIBLE_DEVICES=1,2,3 accelerate launch --config_file grpo/configs/accelerate/ddp.yaml \\
        --num_processes 3 -m grpo.cli train --config grpo/configs/gsm8k_hub.yaml \\
        --use_vllm true --vllm_mode server --backend native                           # GPUs 1-3: training

The server is TRL's: ``trl vllm-serve`` (in trl 1.16 a thin wrapper, deprecated in favour of the
equivalent ``VLLM_SERVER_DEV_MODE=1 vllm serve MODEL --weight-transfer-config '{"backend": "nccl"}'
--logprobs-mode processed_logprobs --max-logprobs -1``), reached with TRL's own client
(``trl.generation.vllm_client.VLLMClient``) at ``vllm_server_base_url`` or
``http://vllm_server_host:vllm_server_port``. Both backends use the same GRPOConfig fields; the TRL
backend hands them to ``GRPOTrainer``, the native backend uses :class:`VLLMServerEngine` here.

How the native backend uses it: before each rollout, rank 0 streams the policy's weights (LoRA
merged on the fly, :func:`grpo.generation.vllm_engine.vllm_named_weights`) into the server over the NCCL group
the client opens (``vllm_group_port``) and resets its prefix cache; every rank waits for that, then
sends its own prompts over HTTP (TRL instead gathers all prompts on rank 0 and scatters the results;
the server batches concurrent requests either way). :func:`check_vllm_setup` runs before anything is
loaded: an unreachable server is a one-line error after ``vllm_server_timeout`` seconds.
"""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request
from collections.abc import Sequence

import torch

from grpo.common.errors import UserError
from grpo.generation import (
    vllm_engine,  # used as vllm_engine.X, looked up at call time (tests stand in a fake VLLMEngine)
)
from grpo.generation.rollout import Rollout, stop_ids_for

logger = logging.getLogger(__name__)

SERVE_HINT = ("start one with `CUDA_VISIBLE_DEVICES=0 trl vllm-serve --model MODEL` (same base model as --model), "
              "or set vllm_mode: colocate")


def server_url(args) -> str:
    """The server's base URL from GRPOConfig: ``vllm_server_base_url``, else ``http://host:port``."""
    if args.vllm_server_base_url:
        return args.vllm_server_base_url.rstrip("/")
    return f"http://{args.vllm_server_host}:{args.vllm_server_port}"


def wait_for_server(url: str, timeout: float, interval: float = 1.0) -> None:
    """Poll ``{url}/health`` until it answers 200, for ``timeout`` seconds (one try when 0).

    Raises:
        UserError: no healthy answer in time, naming the URL, the fields that set it and how to start a server.
    """
    deadline, last = time.monotonic() + max(0.0, timeout), None
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=min(5.0, max(0.5, timeout))) as response:
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except (urllib.error.URLError, OSError) as err:
            last = str(getattr(err, "reason", err))
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise UserError(f"vllm_mode: server, but no vLLM server answers at {url} ({last}) after {timeout:g} s "
                            f"(vllm_server_timeout); set vllm_server_base_url or vllm_server_host/vllm_server_port, "
                            f"or {SERVE_HINT}")
        time.sleep(min(interval, remaining))


def _check_mode(args) -> None:
    if args.vllm_mode not in {"colocate", "server"}:
        raise UserError(f"vllm_mode={args.vllm_mode!r}: use 'colocate' (vLLM inside each training process) or "
                        f"'server' (a separate `trl vllm-serve`)")


def check_vllm_setup(args) -> None:
    """Fail fast, before any model is loaded, when ``use_vllm`` cannot work here (both backends).

    Server mode: the server must answer (:func:`wait_for_server`); then, for either mode, CUDA and
    the ``vllm`` package (:func:`grpo.generation.vllm_engine.require_vllm`: TRL's client needs vllm, and the
    weight push is an NCCL broadcast).

    Raises:
        UserError: unknown ``vllm_mode``, unreachable server, no CUDA or no vllm.
    """
    _check_mode(args)
    if args.vllm_mode == "server":
        wait_for_server(server_url(args), args.vllm_server_timeout)
    vllm_engine.require_vllm()


def rollout_from_server(prompt_ids: list[list[int]], output: dict, num_generations: int, max_new_tokens: int,
                        stop_ids: Sequence[int]) -> Rollout:
    """Turn ``VLLMClient.generate`` output into a :class:`grpo.generation.rollout.Rollout`.

    ``output["completion_ids"]`` holds ``len(prompt_ids) * num_generations`` token lists, prompt-major;
    ``output["logprobs"]`` one ``[logprob]`` list per token (``logprobs=0``: the sampled token only).
    The client does not return vLLM's ``finish_reason``, so a completion counts as truncated when it
    used all ``max_new_tokens`` without ending on a stop token, which is what "length" means.
    """
    completions = [list(ids) for ids in output["completion_ids"]]
    if len(completions) != len(prompt_ids) * num_generations:
        raise ValueError(f"vLLM server returned {len(completions)} completions for {len(prompt_ids)} prompts "
                         f"x {num_generations}")
    stops = set(int(t) for t in stop_ids)
    truncated = [len(ids) >= max_new_tokens and (not ids or ids[-1] not in stops) for ids in completions]
    raw = output.get("logprobs") or [None] * len(completions)
    logprobs = [[float(step[0]) for step in seq] if seq else [] for seq in raw]
    return Rollout([list(p) for p in prompt_ids], completions, truncated, logprobs, num_generations)


class VLLMServerEngine:
    """Generation through a running vLLM server, same ``generate`` contract as :class:`grpo.generation.vllm_engine.VLLMEngine`.

    Args:
        base_url: the server, e.g. ``http://10.0.0.5:8000``.
        timeout: seconds to wait for it to answer (``vllm_server_timeout``).
        group_port: port of the NCCL weight-update group (``vllm_group_port``).
        rank, world: this process and the number of training processes (rank 0 pushes the weights).
        device: the training device, a CUDA one: the NCCL weight-update group lives there and every
            streamed tensor is moved there first (vLLM's ``pynccl`` broadcast asserts it); default the
            current CUDA device.

    Raises:
        UserError: unreachable server, no CUDA or no vllm (see :func:`check_vllm_setup`).
    """

    def __init__(self, base_url: str, timeout: float = 240.0, group_port: int = 51216, rank: int = 0, world: int = 1,
                 device=None):
        wait_for_server(base_url, timeout)
        vllm_engine.require_vllm()
        from trl.generation.vllm_client import VLLMClient

        self.client = VLLMClient(base_url=base_url, group_port=group_port, connection_timeout=timeout)
        self.rank, self.world, self._metadata = rank, world, None
        self.device = torch.device(device) if device is not None else torch.device("cuda", torch.cuda.current_device())
        if rank == 0:  # the trainer joins the server's workers as one extra NCCL rank
            self.client.init_communicator(device=self.device)

    def sync_weights(self, model) -> None:
        """Rank 0 pushes ``model``'s weights (LoRA merged) and resets the prefix cache; all ranks then wait."""
        if self.rank == 0:
            if self._metadata is None:  # the server must know every tensor before the first one is broadcast
                self._metadata = [(name, str(t.dtype).removeprefix("torch."), list(t.shape))
                                  for name, t in vllm_engine.vllm_named_weights(model)]
            weights = vllm_engine.vllm_named_weights(model)
            on_device = ((name, t.to(self.device)) for name, t in weights)  # one tensor at a time
            self.client.update_named_params(self._metadata, on_device)
            self.client.reset_prefix_cache()
        if self.world > 1:
            torch.distributed.barrier()  # nobody generates with the old weights

    def generate(self, model, tokenizer, prompt_ids: list[list[int]], num_generations: int, max_new_tokens: int,
                 temperature: float = 1.0, top_p: float = 1.0, top_k: int | None = 0, do_sample: bool = True,
                 stop_token_ids: Sequence[int] | int | None = None, generator: torch.Generator | None = None,
                 seed: int | None = None, sync: bool = True, min_p: float | None = None,
                 repetition_penalty: float = 1.0) -> Rollout:
        """Same contract as :func:`grpo.generation.sampler.generate` (``generator`` is ignored; ``seed`` goes to vLLM)."""
        if model is not None and sync:
            self.sync_weights(model)
        stops = stop_ids_for(model, tokenizer, stop_token_ids)
        params = vllm_engine.sampling_params_kwargs(num_generations, max_new_tokens, temperature, top_p, top_k,
                                                    do_sample, stops, seed, min_p, repetition_penalty)
        output = self.client.generate(
            [list(p) for p in prompt_ids], n=num_generations, temperature=params["temperature"], top_p=params["top_p"],
            top_k=params["top_k"], min_p=params["min_p"], repetition_penalty=params["repetition_penalty"],
            max_tokens=max_new_tokens, logprobs=0,
            generation_kwargs={"seed": seed, "stop_token_ids": params["stop_token_ids"]})
        return rollout_from_server(prompt_ids, output, num_generations, max_new_tokens, stops)


def make_engine(args, model_path: str, rank: int = 0, world: int = 1, device=None):
    """The native backend's vLLM engine for ``args.vllm_mode``: colocated (:class:`grpo.generation.vllm_engine.VLLMEngine`)
    or a server client (:class:`VLLMServerEngine`, on the training ``device``). ``model_path`` is the policy's base
    model."""
    _check_mode(args)  # each engine checks CUDA, vllm (and the server) itself
    if args.vllm_mode == "server":
        return VLLMServerEngine(server_url(args), args.vllm_server_timeout, args.vllm_group_port, rank, world, device)
    return vllm_engine.VLLMEngine(model_path, args.vllm_gpu_memory_utilization, args.vllm_max_model_length,
                                  args.vllm_enable_sleep_mode, seed=args.seed)
