"""vLLM rollouts on GPU, colocated with the policy in the training process (``use_vllm``).

``VLLMEngine(model_path)`` starts an in-process vLLM ``LLM`` that shares the GPU with training
(``gpu_memory_utilization`` caps its share; ``enable_sleep_mode`` frees its memory between
rollouts). ``engine.generate(model, tokenizer, prompt_ids, num_generations, max_new_tokens, ...)``
first pushes the policy's current weights into vLLM (LoRA adapters merged on the fly, without
touching the trained model), then samples G completions per prompt and returns the same
:class:`grpo.generation.rollout.Rollout` as the CPU sampler.

Where CUDA or vllm is missing, constructing the engine raises :class:`grpo.common.errors.UserError`
naming the fix (``pip install grpo-toolkit[gpu]`` on a CUDA machine, or ``use_vllm: false``).
``vllm`` is imported only inside functions, so ``import grpo`` works without it.

Design follows what trl 1.16 does in ``trl/generation/vllm_generation.py`` (colocate mode with
the ``external_launcher`` executor so the model lives in this process, weights pushed with the
model's ``load_weights``), rewritten; differences: LoRA deltas are added to copies of the base
weights instead of merging/unmerging the trained model in place (no rounding drift), and the
engine is a plain object with no accelerate dependency (one process per GPU).

Run the GPU check: ``pytest tests/test_vllm_engine.py`` (the GPU-only test skips on CPU).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from grpo.common.errors import UserError
from grpo.generation.inference_copy import merged_named_weights
from grpo.generation.rollout import Rollout, stop_ids_for

logger = logging.getLogger(__name__)

__all__ = ["VLLMEngine", "require_vllm", "rollout_from_outputs", "sampling_params_kwargs", "vllm_named_weights"]

FIX_HINT = ("install it on a CUDA machine with `pip install grpo-toolkit[gpu]`, "
            "or set use_vllm: false to use the built-in sampler")


def require_vllm() -> Any:
    """Import and return the ``vllm`` module, or explain what is missing.

    Raises:
        UserError: no CUDA device (``torch.cuda.is_available()`` is False) or ``vllm`` not importable.
    """
    if not torch.cuda.is_available():
        raise UserError(f"use_vllm needs a CUDA GPU, and this machine has none (torch {torch.__version__}); {FIX_HINT}")
    try:
        import vllm
    except ImportError as err:
        raise UserError(f"use_vllm needs the 'vllm' package ({err}); {FIX_HINT}") from None
    return vllm


def sampling_params_kwargs(
    num_generations: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int | None = 0,
    do_sample: bool = True,
    stop_token_ids: Sequence[int] = (),
    seed: int | None = None,
    min_p: float | None = None,
    repetition_penalty: float = 1.0,
) -> dict:
    """Keyword arguments for ``vllm.SamplingParams`` matching :func:`grpo.generation.sampler.generate`'s options.

    Greedy (``do_sample=False``) is vLLM's ``temperature=0``. ``top_k`` 0/None means "all tokens",
    which vLLM spells -1 (accepted by every version). ``logprobs=0`` asks for the sampled token's
    log-probability only. Stop tokens are kept in the output ids, as HF does. ``min_p`` None is vLLM's 0.0.
    """
    return {
        "n": num_generations,
        "max_tokens": max_new_tokens,
        "temperature": float(temperature) if do_sample else 0.0,
        "top_p": float(top_p) if do_sample else 1.0,
        "top_k": int(top_k) if (do_sample and top_k) else -1,
        "stop_token_ids": [int(t) for t in stop_token_ids],
        "ignore_eos": False,
        "skip_special_tokens": False,
        "logprobs": 0,
        "seed": seed,
        "min_p": float(min_p or 0.0) if do_sample else 0.0,
        "repetition_penalty": float(repetition_penalty),
    }


# ---------------------------------------------------------------------------- weight names


def vllm_named_weights(model) -> Iterator[tuple[str, torch.Tensor]]:
    """What :meth:`VLLMEngine.sync_weights` pushes: :func:`grpo.generation.inference_copy.merged_named_weights` (kept as the
    vLLM-facing name)."""
    return merged_named_weights(model)


# ---------------------------------------------------------------------------- outputs


def rollout_from_outputs(prompt_ids: list[list[int]], outputs: Sequence[Any], num_generations: int) -> Rollout:
    """Turn ``LLM.generate`` results (one ``RequestOutput`` per prompt, n=G each) into a Rollout.

    Each ``RequestOutput.outputs[g]`` has ``token_ids``, ``finish_reason`` ("stop" | "length")
    and ``logprobs`` (a list of {token_id: Logprob(logprob=...)} per position, or None).
    """
    if len(outputs) != len(prompt_ids):
        raise ValueError(f"vLLM returned {len(outputs)} results for {len(prompt_ids)} prompts")
    completions, truncated, logprobs = [], [], []
    for request in outputs:
        if len(request.outputs) != num_generations:
            raise ValueError(f"vLLM returned {len(request.outputs)} completions, expected n={num_generations}")
        for out in request.outputs:
            ids = list(out.token_ids)
            completions.append(ids)
            truncated.append(out.finish_reason == "length")
            if out.logprobs is None:
                logprobs.append([])
            else:
                logprobs.append([float(step[tok].logprob) for tok, step in zip(ids, out.logprobs)])
    return Rollout([list(p) for p in prompt_ids], completions, truncated, logprobs, num_generations)


# ---------------------------------------------------------------------------- engine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VLLMEngine:
    """A colocated vLLM instance that generates with the policy's current weights.

    Args:
        model_path: local checkpoint dir or hub id of the *base* model (same architecture and
            names as the policy; for LoRA, the model the adapter was applied to).
        gpu_memory_utilization: fraction of GPU memory vLLM may take (the rest is training's).
        max_model_len: prompt + completion token budget; None lets vLLM read it from the config.
        enable_sleep_mode: release vLLM's weights and KV cache between rollouts (level 2 sleep);
            weights are pushed again on wake-up.
        dtype: vLLM weight dtype ("auto", "bfloat16", ...).
        seed: vLLM's sampling seed.
        **llm_kwargs: passed to ``vllm.LLM`` unchanged.

    Raises:
        UserError: see :func:`require_vllm`.
    """

    def __init__(self, model_path: str, gpu_memory_utilization: float = 0.3, max_model_len: int | None = None,
                 enable_sleep_mode: bool = False, dtype: str = "auto", seed: int = 0, **llm_kwargs):
        vllm = require_vllm()
        # The external_launcher executor runs the model in this process (so we can reach it to load
        # weights); it expects torch.distributed's rendezvous variables even for one process.
        for key, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}.items():
            os.environ.setdefault(key, value)
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
        kwargs = dict(
            model=model_path,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            enable_sleep_mode=enable_sleep_mode,
            dtype=dtype,
            seed=seed,
            distributed_executor_backend="external_launcher",
            logprobs_mode="processed_logprobs",
            max_num_batched_tokens=4096,
        )
        kwargs.update(llm_kwargs)
        logger.info("Starting colocated vLLM for %s, gpu_memory_utilization=%s", model_path, gpu_memory_utilization)
        self.llm = vllm.LLM(**kwargs)
        self._vllm = vllm
        self.sleep_mode = enable_sleep_mode
        self._weights_gone = False
        if enable_sleep_mode:
            self.llm.sleep(level=2)
            self._weights_gone = True

    def _load_weights(self, weights: Iterator[tuple[str, torch.Tensor]]) -> None:
        engine = self.llm.llm_engine
        executor = getattr(engine, "model_executor", None)
        worker = getattr(executor, "driver_worker", None)
        if worker is not None:  # in-process worker (external_launcher), what trl 1.16 uses
            runner = getattr(worker, "model_runner", None) or worker.worker.model_runner
            model = runner.model
            for name, tensor in weights:
                model.load_weights([(name, tensor)])
            return
        # Newer vLLM: run the load inside the worker(s).
        batch = list(weights)
        self.llm.apply_model(lambda m: m.load_weights(batch))

    def sync_weights(self, model) -> None:
        """Push ``model``'s current weights (LoRA merged, see :func:`vllm_named_weights`) into vLLM."""
        if self.sleep_mode:
            torch.cuda.empty_cache()
            self.llm.wake_up(tags=["weights"])
            self._weights_gone = False
        self._load_weights(vllm_named_weights(model))
        self.llm.reset_prefix_cache()  # cached prompt KV was computed with the old weights

    def generate(self, model, tokenizer, prompt_ids: list[list[int]], num_generations: int, max_new_tokens: int,
                 temperature: float = 1.0, top_p: float = 1.0, top_k: int | None = 0, do_sample: bool = True,
                 stop_token_ids: Sequence[int] | int | None = None, generator: torch.Generator | None = None,
                 seed: int | None = None, sync: bool = True, min_p: float | None = None,
                 repetition_penalty: float = 1.0) -> Rollout:
        """Same contract as :func:`grpo.generation.sampler.generate`; syncs ``model``'s weights first when ``sync``.

        ``generator`` is accepted for signature compatibility and ignored (vLLM has its own RNG;
        pass ``seed`` for a per-call seed). Logprobs are vLLM's ``processed_logprobs`` of the
        sampled tokens.
        """
        if model is None and self._weights_gone:
            raise ValueError("vLLM is asleep without weights (sleep mode): pass the policy model to generate()")
        if model is not None and (sync or self._weights_gone):
            self.sync_weights(model)
        params = self._vllm.SamplingParams(**sampling_params_kwargs(
            num_generations, max_new_tokens, temperature, top_p, top_k, do_sample,
            stop_ids_for(model, tokenizer, stop_token_ids), seed, min_p, repetition_penalty))
        if self.sleep_mode:
            self.llm.wake_up(tags=["kv_cache"])
        outputs = self.llm.generate([{"prompt_token_ids": list(p)} for p in prompt_ids], sampling_params=params,
                                    use_tqdm=False)
        if self.sleep_mode:
            self.llm.sleep(level=2)
            self._weights_gone = True
        return rollout_from_outputs(prompt_ids, outputs, num_generations)
