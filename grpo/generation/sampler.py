"""Fast batched sampler for GRPO rollouts on CPU (and any GPU without vLLM).

``generate(model, tokenizer, prompt_ids, num_generations=G, max_new_tokens=T)`` returns a
:class:`grpo.generation.rollout.Rollout` with G completions per prompt, prompt-major (prompt 0's G completions first,
the order TRL uses). Compared with ``model.generate(num_return_sequences=G)`` it

* prefills each prompt once (batch P, left-padded), then copies its KV cache G times;
* writes the KV cache into preallocated buffers (no ``torch.cat`` of the whole cache per token);
* drops finished rows from the batch (and from the cache) as soon as they emit a stop token;
* on a CPU, optionally runs a bf16 copy of the weights (:mod:`grpo.generation.inference_copy`: LoRA merged,
  bitsandbytes weights dequantized, CPU kernels fused), decoding it with a hand-written step over contiguous KV
  buffers (:mod:`grpo.generation.decoder`); on an accelerator it runs the model itself under autocast instead, so
  that no second model takes device memory (:func:`uses_weight_copy`).

Greedy decoding (``do_sample=False``) in the model's own dtype reproduces ``model.generate``
token for token, with or without ``repetition_penalty`` (tests/test_sampler.py). Sampling applies the
repetition penalty, temperature, then top-k, top-p and min-p, in the order transformers' logits processors
do, and draws from the same distribution (the draw itself uses its own RNG stream, so seeded samples are
not ``model.generate``'s). Benchmark: ``scripts/bench_rollout.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import nullcontext

import torch
from transformers import DynamicCache

from grpo.common import hf_compat
from grpo.generation import decoder
from grpo.generation.inference_copy import has_quantized_weights, inference_copy
from grpo.generation.rollout import Rollout, stop_ids_for
from grpo.generation.streams import RowStreams

logger = logging.getLogger(__name__)

__all__ = ["generate", "sample_next", "penalize_repetitions", "uses_weight_copy"]


# ---------------------------------------------------------------------------- sampling


_BLOCK = 256  # vocabulary block of the two-level draw


def _draw(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One index per row of ``probs`` (B, K), unnormalised, by inverse CDF; zero-probability
    entries are never picked. ``torch.multinomial`` takes ~35 ms for (16, 49152) on one core.

    A running sum over K is serial work per row (~0.8 ms here), so for large K the draw is two
    small ones: first a block of ``_BLOCK`` entries by the block masses (a vectorised sum), then
    an entry inside that block. Same distribution, ~10x less time.
    """
    rows, size = probs.shape
    if generator is None or isinstance(generator, torch.Generator):
        u = torch.rand((rows, 1), generator=generator, device=probs.device, dtype=probs.dtype)  # (B, 1)
    else:  # grpo.generation.streams.RowStreams at this step: each row's own uniform
        u = generator.rand(rows).to(probs.dtype)  # (B, 1)
    if size < 4 * _BLOCK:
        cdf = probs.cumsum(dim=-1)  # (B, K)
        index = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).clamp_(max=size - 1)  # (B, 1)
    else:
        pad = -size % _BLOCK
        padded = torch.nn.functional.pad(probs, (0, pad)) if pad else probs  # (B, K + pad)
        blocks = padded.reshape(rows, -1, _BLOCK)  # (B, K/BLOCK, BLOCK)
        mass = blocks.sum(dim=-1)  # (B, K/BLOCK)
        cdf = mass.cumsum(dim=-1)
        target = u * cdf[:, -1:]  # (B, 1) mass to walk past
        block = torch.searchsorted(cdf, target, right=True).clamp_(max=mass.shape[1] - 1)  # (B, 1)
        inner = blocks.gather(1, block[:, :, None].expand(rows, 1, _BLOCK)).squeeze(1)  # (B, BLOCK)
        inner = inner.cumsum(dim=-1)
        rest = target - (cdf.gather(1, block) - mass.gather(1, block))  # (B, 1) mass left inside the block
        index = block * _BLOCK + torch.searchsorted(inner, rest, right=True).clamp_(max=_BLOCK - 1)
        index = index.clamp_(max=size - 1)
    # rounding can land just past the last positive entry, on a zero-probability one: take the mode instead
    bad = probs.gather(-1, index) <= 0
    if bool(bad.any()):
        index = torch.where(bad, probs.argmax(dim=-1, keepdim=True), index)
    return index.squeeze(-1)  # (B,)


def penalize_repetitions(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's repetition penalty (Keskar et al. 2019, arXiv:1909.05858, eq. 2), as transformers'
    ``RepetitionPenaltyLogitsProcessor``: a logit of a token already in the row (prompt or completion) is
    divided by ``penalty`` when positive and multiplied by it when negative.

    Args:
        logits: (B, V) next-token logits. seen: (B, V) bool, the tokens present in each row. penalty: > 0; 1 = none.

    Returns:
        (B, V) penalised logits (a new tensor).
    """
    penalised = torch.where(logits < 0, logits * penalty, logits / penalty)  # (B, V)
    return torch.where(seen, penalised, logits)


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = 0,
    top_p: float = 1.0,
    do_sample: bool = True,
    generator: torch.Generator | None = None,
    min_p: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick the next token for each row.

    Filters follow transformers' logits processors: temperature, then top-k, then top-p on the
    renormalised top-k distribution (a token is dropped when the tokens strictly more likely
    than it already reach ``top_p``; the most likely token always stays), then min-p (a token
    is dropped when its probability is below ``min_p`` times the most likely token's; Nguyen et al.
    2024, "Turning Up the Heat: Min-p Sampling", arXiv:2407.01082).

    Args:
        logits: ``(B, V)`` float32 next-token logits.
        temperature: > 0; logits are divided by it (sampling only; greedy ignores it for the pick).
        top_k: keep the k most likely tokens; 0 or None keeps all.
        top_p: nucleus mass in (0, 1]; 1.0 keeps all.
        min_p: in [0, 1], relative to the most likely token; None or 0 keeps all.
        do_sample: False = greedy argmax (what ``model.generate(do_sample=False)`` does).
        generator: RNG; must live on ``logits.device``. :func:`generate` also accepts a
            :class:`grpo.generation.streams.RowStreams`, whose draws depend only on (seed, row, step):
            the same completion whatever batch or process samples it.

    Returns:
        ``(tokens (B,) long, logprobs (B,) float32)``, logprobs of the chosen tokens under
        ``log_softmax(logits / temperature)`` before any top-k/top-p filtering.
    """
    scaled = logits / temperature if temperature != 1.0 else logits  # (B, V)
    vocab = scaled.shape[-1]
    if (not top_k or top_k >= vocab) and top_p >= 1.0 and not min_p:
        # the common GRPO case: one softmax serves the draw and the log-prob (no separate logsumexp pass;
        # log(p) of a drawn or argmax token is as accurate as log_softmax in fp32)
        probs = torch.softmax(scaled, dim=-1)  # (B, V); ~10x faster than exp(x - lse)
        tokens = _draw(probs, generator) if do_sample else logits.argmax(dim=-1)  # (B,)
        return tokens, probs.gather(-1, tokens[:, None]).squeeze(-1).log()
    lse = torch.logsumexp(scaled, dim=-1)  # (B,)
    if not do_sample:
        tokens = logits.argmax(dim=-1)  # (B,)
    else:
        k = vocab if not top_k or top_k >= vocab else top_k
        # The full distribution's nucleus (or min-p set) usually sits in its top 256: sort everything only if not.
        for head in (min(vocab, 256), k) if ((top_p < 1.0 or min_p) and k == vocab) else (k,):
            values, order = torch.topk(scaled, head, dim=-1)  # (B, head) descending
            # probabilities as top-p sees them: the full softmax, or top-k renormalised
            probs = torch.exp(values - (lse[:, None] if k == vocab else torch.logsumexp(values, -1, keepdim=True)))
            covered_p = top_p < 1.0 and bool((probs.sum(-1) >= top_p).all())
            covered_min = bool(min_p) and bool((probs[:, -1] < min_p * probs[:, 0]).all())  # the rest is below too
            if (top_p >= 1.0 and not min_p) or head == k or covered_p or covered_min:
                break
        if top_p < 1.0:
            before = torch.cumsum(probs, dim=-1) - probs  # mass of strictly more likely tokens
            probs = probs.masked_fill(before >= top_p, 0.0)  # rank 0 has before == 0: always kept
        if min_p:  # a ratio to the top token: the same before or after renormalising, rank 0 always kept
            probs = probs.masked_fill(probs < min_p * probs[:, :1], 0.0)
        tokens = order.gather(-1, _draw(probs, generator)[:, None]).squeeze(-1)  # (B,)
    logprobs = scaled.gather(-1, tokens[:, None]).squeeze(-1) - lse  # (B,)
    return tokens, logprobs


# ---------------------------------------------------------------------------- generate


def uses_weight_copy(model) -> bool:
    """Whether :func:`generate` with a ``dtype`` runs a copy of ``model``'s weights (:func:`inference_copy`): on a CPU.

    On a CPU the bf16 copy, rewired for :mod:`grpo.generation.decoder`, is what makes rollouts fast (DESIGN.md,
    2026-12-07: 366 tokens/s against 86 for ``model.generate``), and it costs 2 bytes per parameter of host
    memory (SmolLM2-135M: 0.33 GB, its tied embedding held twice; docs/memory.md). On an accelerator it would be
    a second full model in the scarcer device memory for the whole run (7B: 14 GB), so there the model generates
    itself, under autocast.
    """
    return next(model.parameters()).device.type == "cpu"


@torch.inference_mode()
def generate(
    model,
    tokenizer,
    prompt_ids: list[list[int]],
    num_generations: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int | None = 0,
    do_sample: bool = True,
    stop_token_ids: Sequence[int] | int | None = None,
    generator: torch.Generator | RowStreams | None = None,
    dtype: torch.dtype | str | None = None,
    fast_decode: bool = True,
    weight_copy: bool | None = None,
    min_p: float | None = None,
    repetition_penalty: float = 1.0,
) -> Rollout:
    """Generate ``num_generations`` completions for each prompt.

    Args:
        model: a causal LM (``transformers`` or a peft wrapper of one). Run in eval mode for the
            call (dropout off); its train/eval flags are restored afterwards.
        tokenizer: used only for the default stop token; may be None when ``stop_token_ids``
            is given or the model's generation_config names its eos.
        prompt_ids: P prompts as token-id lists (may differ in length; no padding).
        num_generations: G completions per prompt.
        max_new_tokens: cap on completion length (tokens).
        temperature, top_p, top_k, min_p, do_sample, generator: see :func:`sample_next`.
        repetition_penalty: > 0, :func:`penalize_repetitions` over the prompt's and the completion's tokens
            before temperature (also when greedy, as transformers); 1.0 = none. The returned log-probs are
            those of the penalised distribution.
        stop_token_ids: ids that end a completion (included in it). Default: the model's
            ``generation_config.eos_token_id``, else ``tokenizer.eos_token_id``.
        dtype: generate in this precision (``torch.bfloat16`` or "bfloat16"); None runs ``model`` itself as it
            is. With a weight copy (see ``weight_copy``): a copy of the weights in ``dtype``, LoRA merged and
            bitsandbytes weights dequantized (faster than the adapter forward), via :func:`inference_copy`.
            Without one: ``model`` itself under ``torch.autocast(dtype)``, as TRL's generate runs under
            accelerate's mixed precision.
        fast_decode: decode the rewired bf16 copy with :func:`grpo.generation.decoder.decode_step` (where
            :func:`grpo.generation.decoder.supports` it); False forces transformers' forward, for comparison.
        weight_copy: whether ``dtype`` gets a weight copy; None decides by device (:func:`uses_weight_copy`:
            on a CPU, not on an accelerator).

    Returns:
        A :class:`Rollout` with P*G completions, prompt-major.

    Raises:
        ValueError: no prompts, an empty prompt, G < 1, temperature <= 0 when sampling, top_p not in (0, 1],
            min_p not in [0, 1], repetition_penalty <= 0.
    """
    if not prompt_ids or any(len(p) == 0 for p in prompt_ids):
        raise ValueError("prompt_ids must be a non-empty list of non-empty token-id lists")
    if num_generations < 1 or max_new_tokens < 0:
        raise ValueError(f"need num_generations >= 1, max_new_tokens >= 0; got {num_generations}, {max_new_tokens}")
    if (do_sample and temperature <= 0) or not 0 < top_p <= 1:
        raise ValueError(f"need temperature > 0 when sampling and 0 < top_p <= 1; got {temperature}, {top_p}")
    if (min_p is not None and not 0 <= min_p <= 1) or not repetition_penalty > 0:
        raise ValueError(f"need 0 <= min_p <= 1 and repetition_penalty > 0; got {min_p}, {repetition_penalty}")
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    stops = stop_ids_for(model, tokenizer, stop_token_ids)
    autocast = nullcontext()
    if dtype is not None and (weight_copy if weight_copy is not None else uses_weight_copy(model)):
        own_dtype = next(model.parameters()).dtype
        if dtype != own_dtype or hasattr(model, "merge_and_unload") or has_quantized_weights(model):
            # a peft or quantized model gets a merged float copy even in its own dtype; the copy is rewired for
            # grpo.generation.decoder only when this transformers/torch passes the decoder's start-up self-check
            model = inference_copy(model, dtype, rewire=fast_decode and decoder.self_check())
    elif dtype is not None and dtype != torch.float32:
        autocast = torch.autocast(next(model.parameters()).device.type, dtype=dtype)
    training = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with autocast:
            return _generate(model, prompt_ids, num_generations, max_new_tokens, temperature, top_p, top_k,
                             do_sample, stops, generator, fast_decode and decoder.supports(model), min_p,
                             repetition_penalty)
    finally:
        for m, flag in training.items():
            m.training = flag


def _generate(model, prompt_ids, num_generations, max_new_tokens, temperature, top_p, top_k, do_sample,
              stops, generator, fast, min_p=None, repetition_penalty=1.0) -> Rollout:
    device = next(model.parameters()).device
    n_prompts, group = len(prompt_ids), num_generations
    n_rows = n_prompts * group
    width = max(len(p) for p in prompt_ids)
    completions, logprobs = [[] for _ in range(n_rows)], [[] for _ in range(n_rows)]  # P*G lists each
    truncated = [True] * n_rows
    if max_new_tokens == 0:
        return Rollout([list(p) for p in prompt_ids], completions, truncated, logprobs, group)

    # --- prefill: each prompt once, left-padded to `width`
    input_ids = torch.zeros((n_prompts, width), dtype=torch.long, device=device)  # (P, L)
    mask = torch.ones((n_prompts, width + max_new_tokens), dtype=torch.long, device=device)  # (P, L+T)
    for i, p in enumerate(prompt_ids):
        input_ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[i, : width - len(p)] = 0
    padded = any(len(p) != width for p in prompt_ids)
    positions = (mask[:, :width].cumsum(-1) - 1).masked_fill(mask[:, :width] == 0, 0)  # (P, L), as HF
    if fast:  # our own prefill and decode over contiguous buffers (grpo/generation/decoder.py): no transformers cache
        logits, kv = decoder.prefill(model, input_ids, mask[:, :width] if padded else None, positions, group)
        logits = logits.repeat_interleave(group, dim=0)  # (P*G, V)
    else:  # transformers' forward with its public DynamicCache
        cache = DynamicCache(config=model.config)
        out = model(input_ids=input_ids, attention_mask=mask[:, :width] if padded else None,  # HF drops an all-ones mask too
                    position_ids=positions, use_cache=True, logits_to_keep=1, **hf_compat.cache_kwargs(model, cache))
        logits = out.logits[:, -1, :].float().repeat_interleave(group, dim=0)  # (P*G, V)
        del out
        cache.batch_repeat_interleave(group)
        mask = mask.repeat_interleave(group, dim=0)  # (P*G, L+T)
    next_pos = positions[:, -1:].repeat_interleave(group, dim=0) + 1  # (P*G, 1)
    rows = torch.arange(n_rows, device=device)  # original row index of each live batch row
    stop_tensor = torch.tensor(stops, dtype=torch.long, device=device)
    seen = None  # (P*G, V) tokens in each row so far, for the repetition penalty
    if repetition_penalty != 1.0:
        seen = torch.zeros((n_rows, logits.shape[-1]), dtype=torch.bool, device=device)
        for i, p in enumerate(prompt_ids):
            seen[i * group : (i + 1) * group, torch.tensor(p, dtype=torch.long, device=device)] = True
    for step in range(max_new_tokens):
        if seen is not None:
            logits = penalize_repetitions(logits, seen[rows], repetition_penalty)  # (B, V)
        draws = generator.at(rows, step) if isinstance(generator, RowStreams) else generator
        tokens, token_logprobs = sample_next(logits, temperature, top_k, top_p, do_sample, draws, min_p)  # (B,), (B,)
        if seen is not None:
            seen[rows, tokens] = True
        for r, t, lp in zip(rows.tolist(), tokens.tolist(), token_logprobs.tolist()):
            completions[r].append(t)
            logprobs[r].append(lp)
        done = torch.isin(tokens, stop_tensor) if len(stops) else torch.zeros_like(tokens, dtype=torch.bool)
        for r in rows[done].tolist():
            truncated[r] = False
        if step == max_new_tokens - 1:
            break
        if done.any():
            keep = (~done).nonzero().squeeze(-1)  # (B',)
            if keep.numel() == 0:
                break
            rows, tokens, next_pos = rows[keep], tokens[keep], next_pos[keep]
            if fast:
                kv.select(keep)
            else:
                cache.batch_select_indices(keep)
                mask = mask[keep]
        if fast:
            logits = decoder.decode_step(model, kv, tokens, next_pos)  # (B, V)
        else:
            length = width + step + 1  # tokens in the cache after this forward
            out = model(
                input_ids=tokens[:, None],  # (B, 1)
                attention_mask=mask[:, :length] if padded else None,  # (B, L+step+1)
                position_ids=next_pos,
                use_cache=True,
                **hf_compat.cache_kwargs(model, cache),
            )
            logits = out.logits[:, -1, :].float()  # (B, V)
            del out
        next_pos = next_pos + 1
    return Rollout([list(p) for p in prompt_ids], completions, truncated, logprobs, group)
