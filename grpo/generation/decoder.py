"""Prefill and decode steps of the rewired Llama-family inference copy, written out by hand.

The sampler's decode loop feeds one new token per row through the model, B = P*G rows at a
time. At B = 16 on SmolLM2-135M the matmuls are ~20 ms of a ~45 ms transformers forward; the
rest is per-call overhead, most of it in attention: the CPU flash kernel of
``scaled_dot_product_attention`` runs two small GEMMs per (row, KV head), each with its own
set-up, and a ``bmm`` over a slice of a larger cache buffer copies the slice first.

This module keeps the KV cache *contiguous* (:class:`KVBuffers`: capacity = the cached length
rounded up to a chunk, grown by copying once per chunk, the unused tail masked) and runs
attention as two batched matmuls over the grouped KV heads (scores and softmax in fp32, the
probabilities rounded to bf16 for the product with the values, as SDPA's CPU kernel does).
:func:`prefill` runs the prompts with SDPA as the plain model does, and fills the buffers.
Neither step calls transformers' forward or its cache classes (whose keyword names and layer
internals change between releases: 5.24 broke a cache subclass); what they do read -- the
module tree -- is verified once per process by :func:`self_check`, and the sampler falls back
to transformers' own decoding, with one warning, if it fails. Measured with
``scripts/bench_rollout.py``, whose "(hf decode step)" row is that fallback.

Numerics: the same kernels as the rewired copy for everything but attention, whose summation
order differs from SDPA's; tests/test_decoder.py checks the logits against the plain bf16 model
and its greedy output token for token, so sampling sees the bf16 policy, as before.

Only for models :func:`supports` accepts (the fused Llama / Qwen2 copy from
:func:`grpo.generation.inference_copy.inference_copy`); everything else decodes through transformers.
"""

from __future__ import annotations

import copy
import functools
import logging

import torch
import torch.nn.functional as F

from grpo.generation.inference_copy import FusedAttention, FusedGatedMLP, FusedRMSNorm, bf16_cpu_kernels, inference_copy

logger = logging.getLogger(__name__)

__all__ = ["KVBuffers", "decode_step", "prefill", "self_check", "supports"]

CHUNK = 32  # cache capacity grows in steps of this many positions (one copy of the cache per CHUNK tokens)


def supports(model: torch.nn.Module) -> bool:
    """True when ``model`` is a rewired inference copy whose decoding :func:`decode_step` can run."""
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if (layers is None or not hasattr(inner, "rotary_emb")
            or not isinstance(getattr(inner, "norm", None), FusedRMSNorm)):
        return False
    return all(isinstance(layer.self_attn, FusedAttention) and isinstance(layer.mlp, FusedGatedMLP)
               and isinstance(layer.input_layernorm, FusedRMSNorm) for layer in layers)


class KVBuffers:
    """Keys and values of every layer in contiguous buffers ``(B, H_kv, capacity, D)``.

    Keys are kept in float32 (exact copies of the bf16 rotated keys) so the scores come out of
    one fp32 ``baddbmm`` as in SDPA's CPU kernel; values keep the model's dtype. ``length``
    positions are filled (the same count for every row; left padding is masked). ``bias``
    ``(B, H_kv, 1, capacity)`` float32 is 0 where a row may attend and -inf elsewhere: its
    padding, and every position at or after ``length`` until :meth:`next_slot` opens it.
    Positions never written hold zeros, so masked scores and values stay finite.
    """

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor], bias: torch.Tensor, length: int,
                 chunk: int = CHUNK):
        self.keys, self.values, self.bias, self.length, self.chunk = keys, values, bias, length, chunk

    @classmethod
    def from_layers(cls, layers: list[tuple[torch.Tensor, torch.Tensor]], attention_mask: torch.Tensor | None,
                    repeats: int, chunk: int = CHUNK) -> KVBuffers:
        """Copy each layer's prompt keys/values, each row repeated ``repeats`` times (row-major, as
        ``repeat_interleave``), into fresh buffers with room for at least one more token.

        Args:
            layers: per layer ``(keys, values)``, each ``(P, H_kv, L, D)`` (keys after rotary).
            attention_mask: ``(P, L)`` 1 for prompt tokens, 0 for left padding; None = no padding.
            repeats: G; the result has P*G rows.
        """
        first = layers[0][0]
        rows, kv_heads, length = first.shape[0] * repeats, first.shape[1], first.shape[2]
        capacity = (length // chunk + 1) * chunk
        keys, values = [], []
        for layer_keys, layer_values in layers:
            for src, out, dtype in ((layer_keys, keys, torch.float32), (layer_values, values, layer_values.dtype)):
                buf = src.new_zeros((rows, src.shape[1], capacity, src.shape[3]), dtype=dtype)
                buf[:, :, :length] = src.repeat_interleave(repeats, dim=0)
                out.append(buf)
        bias = torch.full((rows, kv_heads, 1, capacity), float("-inf"), device=first.device)
        bias[..., :length] = 0.0
        if attention_mask is not None:
            pad = (attention_mask == 0).repeat_interleave(repeats, dim=0)  # (P*G, L)
            bias[..., :length].masked_fill_(pad[:, None, None, :], float("-inf"))
        return cls(keys, values, bias, length, chunk)

    @property
    def capacity(self) -> int:
        return self.keys[0].shape[2]

    def next_slot(self) -> int:
        """Open the position after the last filled one for attention (growing the buffers by
        ``chunk`` positions if full) and return its index; the caller writes it in every layer."""
        n, chunk = self.length, self.chunk
        if n >= self.capacity:
            for buffers in (self.keys, self.values):  # layer by layer, as in select()
                for i, buf in enumerate(buffers):
                    buffers[i] = torch.cat([buf, buf.new_zeros((*buf.shape[:2], chunk, buf.shape[3]))], dim=2)
            self.bias = torch.cat([self.bias, self.bias.new_full((*self.bias.shape[:3], chunk), float("-inf"))], -1)
        self.bias[..., n] = 0.0
        self.length = n + 1
        return n

    def select(self, rows: torch.Tensor) -> None:
        """Keep only ``rows`` (1-D long index into the batch), in that order."""
        for buffers in (self.keys, self.values):  # layer by layer: one layer's copy in flight, not the whole cache
            for i, buf in enumerate(buffers):
                buffers[i] = buf.index_select(0, rows)
        self.bias = self.bias.index_select(0, rows)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding as transformers' Llama applies it: ``x*cos + rotate_half(x)*sin``."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


def _repeat_heads(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(P, Hkv, L, D) -> (P, Hkv*groups, L, D), each KV head repeated for its query heads."""
    return x if groups == 1 else x.repeat_interleave(groups, dim=1)


@torch.inference_mode()
def prefill(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
            position_ids: torch.Tensor, repeats: int, chunk: int = CHUNK) -> tuple[torch.Tensor, KVBuffers]:
    """Run left-padded prompts through the rewired copy; return the last position's logits and the KV cache.

    Attention over the prompt is ``scaled_dot_product_attention``, causal, with the padding
    masked, as the plain model's SDPA path computes it; nothing of transformers' forward or cache
    classes is involved, so the fast path depends only on the module tree that :func:`supports`
    checks (the start-up self-check in :mod:`grpo.generation.sampler` guards the rest).

    Args:
        model: a model :func:`supports` accepts.
        input_ids: ``(P, L)`` long, prompts left-padded to a common length L.
        attention_mask: ``(P, L)`` 1 for prompt tokens, 0 for padding; None when no row is padded.
        position_ids: ``(P, L)`` long rotary positions (0 at each row's first real token).
        repeats: G, rows of the returned cache per prompt.
        chunk: growth step of the cache (:class:`KVBuffers`).

    Returns:
        ``(logits (P, V) float32 at the last position, KVBuffers with P*G rows and L positions)``.
    """
    inner = model.model
    batch, length = input_ids.shape
    x = inner.embed_tokens(input_ids)  # (P, L, C)
    cos, sin = inner.rotary_emb(x, position_ids)  # (P, L, D) each
    cos, sin = cos[:, :, None], sin[:, :, None]  # (P, L, 1, D)
    mask = None
    if attention_mask is not None:  # causal and not a padding key; a padding query still sees itself (no NaN rows)
        causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()  # (L, L)
        mask = causal[None] & attention_mask.bool()[:, None, :]  # (P, L, L)
        mask = (mask | torch.eye(length, dtype=torch.bool, device=x.device)[None])[:, None]  # (P, 1, L, L)
    layers_kv = []
    for layer in inner.layers:
        attn = layer.self_attn
        heads, kv_heads, dim = attn.num_heads, attn.num_kv_heads, attn.head_dim
        qkv = attn.qkv(layer.input_layernorm(x))  # (P, L, (H + 2*Hkv) * D)
        qk = _rotate(qkv[..., : (heads + kv_heads) * dim].view(batch, length, heads + kv_heads, dim), cos, sin)
        q = qk[:, :, :heads].transpose(1, 2)  # (P, H, L, D)
        k = qk[:, :, heads:].transpose(1, 2)  # (P, Hkv, L, D)
        v = qkv[..., (heads + kv_heads) * dim:].view(batch, length, kv_heads, dim).transpose(1, 2)  # (P, Hkv, L, D)
        layers_kv.append((k, v))
        groups = heads // kv_heads
        if mask is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=attn.scaling, enable_gqa=groups > 1)
        else:
            out = F.scaled_dot_product_attention(q, _repeat_heads(k, groups), _repeat_heads(v, groups),
                                                 attn_mask=mask, scale=attn.scaling)  # (P, H, L, D)
        x = x + attn.o_proj(out.transpose(1, 2).reshape(batch, length, heads * dim))
        x = x + layer.mlp(layer.post_attention_layernorm(x))
    logits = model.lm_head(inner.norm(x[:, -1:]))[:, 0].float()  # (P, V)
    return logits, KVBuffers.from_layers(layers_kv, attention_mask, repeats, chunk)


@torch.inference_mode()
def decode_step(model: torch.nn.Module, kv: KVBuffers, tokens: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
    """Feed one token per row; append its keys/values to ``kv``; return the next-token logits.

    Args:
        model: a model :func:`supports` accepts.
        kv: the rows' cache (updated in place: one position longer afterwards).
        tokens: ``(B,)`` long, the newest token of each row.
        position_ids: ``(B, 1)`` long, its rotary position (prompt length without padding + step).

    Returns:
        ``(B, V)`` float32 logits.
    """
    inner = model.model
    batch = tokens.shape[0]
    x = inner.embed_tokens(tokens)[:, None]  # (B, 1, C)
    cos, sin = inner.rotary_emb(x, position_ids)  # (B, 1, D) each, in x's dtype
    cos, sin = cos[:, :, None], sin[:, :, None]  # (B, 1, 1, D): broadcast over heads
    slot = kv.next_slot()
    for i, layer in enumerate(inner.layers):
        attn = layer.self_attn
        heads, kv_heads, dim = attn.num_heads, attn.num_kv_heads, attn.head_dim
        qkv = attn.qkv(layer.input_layernorm(x))  # (B, 1, (H + 2*Hkv) * D)
        qk = _rotate(qkv[..., : (heads + kv_heads) * dim].view(batch, 1, heads + kv_heads, dim), cos, sin)
        kv.keys[i][:, :, slot] = qk[:, 0, heads:]  # (B, Hkv, D)
        kv.values[i][:, :, slot] = qkv[:, 0, (heads + kv_heads) * dim:].view(batch, kv_heads, dim)
        # query heads grouped under their KV head: (B*Hkv, H/Hkv, D); scores in fp32 like SDPA's CPU kernel
        q = qk[:, 0, :heads].reshape(batch * kv_heads, heads // kv_heads, dim).float()
        keys, values = kv.keys[i].flatten(0, 1), kv.values[i].flatten(0, 1)  # (B*Hkv, capacity, D)
        scores = torch.baddbmm(kv.bias.flatten(0, 1), q, keys.transpose(1, 2), alpha=attn.scaling)  # (B*Hkv, H/Hkv, S)
        out = torch.bmm(torch.softmax(scores, dim=-1).to(values.dtype), values)  # (B*Hkv, H/Hkv, D)
        x = x + attn.o_proj(out.view(batch, 1, heads * dim))
        x = x + layer.mlp(layer.post_attention_layernorm(x))
    return model.lm_head(inner.norm(x))[:, 0].float()  # (B, V)


# ---------------------------------------------------------------------------- start-up self-check


def _check_model():
    """A 2-layer random Llama (GQA, left-padded prompts possible) whose norms are not all ones."""
    from transformers import LlamaConfig, LlamaForCausalLM

    generator = torch.Generator().manual_seed(0)  # its own RNG: the caller's global RNG stays where it was
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         initializer_range=0.2, bos_token_id=1, eos_token_id=3, pad_token_id=0)
    with torch.random.fork_rng(devices=[]):  # the constructor's random init must not move the global RNG either
        model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * (0.25 if p.dim() > 1 else 0.2) + (p.dim() == 1))
    return model


def agreement(model: torch.nn.Module, fast: torch.nn.Module, steps: int = 6) -> float:
    """Largest |logit difference| between the decoder on ``fast`` and ``model``'s own full forward.

    Two left-padded prompts (one padded) are prefilled with :func:`prefill`, then ``steps``
    tokens are decoded with :func:`decode_step`; after each, the plain model reruns the whole
    sequence (no cache at all, so nothing cache-related is shared with the path under test).

    Args:
        model: the plain model in the copy's dtype (transformers' own forward).
        fast: its rewired copy (:func:`supports` is true).

    Returns:
        max |difference| over all positions checked (logit units); inf where the argmax differs.
    """
    prompts = [[5, 6, 7, 8, 9, 10], [12, 13, 14]]
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])  # (2, L)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])  # (2, L)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (2, L)
    with torch.inference_mode():
        logits, kv = prefill(fast, ids, mask, positions, 1)
        worst = 0.0
        for step in range(steps + 1):
            reference = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, -1].float()
            if not torch.equal(logits.argmax(-1), reference.argmax(-1)):
                return float("inf")
            worst = max(worst, (logits - reference).abs().max().item())
            if step == steps:
                return worst
            tokens = reference.argmax(-1)  # (2,)
            next_pos = positions[:, -1:] + 1  # (2, 1)
            logits = decode_step(fast, kv, tokens, next_pos)
            ids, mask = torch.cat([ids, tokens[:, None]], 1), torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
            positions = torch.cat([positions, next_pos], 1)


SELF_CHECK_TOLERANCE = 0.25  # the check model's logits reach ~5, where bf16 spacing is 0.03; seen: 0.08. A wrong
# position, mask or cache flips the argmax (agreement() returns inf), far beyond this.


@functools.cache
def self_check() -> bool:
    """Whether the fast path (rewired copy + :func:`prefill` + :func:`decode_step`) computes what the
    plain bf16 model computes under the installed transformers and torch. Run once per process.

    The decoder reads the module tree transformers builds (``model.model.layers``, the rotary
    embedding's call, projection names), which a release may change. On a CPU without oneDNN
    bf16 kernels there is no fast path and this returns False without a check. On failure (an
    exception or logits off by more than ``SELF_CHECK_TOLERANCE``) it logs one warning naming the
    transformers version, and the sampler decodes a plain copy through transformers instead.

    Returns:
        True when the fast path may be used.
    """
    import transformers

    if not bf16_cpu_kernels():
        return False
    try:
        model = _check_model()
        fast = inference_copy(model, torch.bfloat16)
        plain = copy.deepcopy(model).to(torch.bfloat16)
        gap = agreement(plain, fast) if supports(fast) else float("inf")
        problem = None if gap <= SELF_CHECK_TOLERANCE else f"logits differ by {gap:.3g} from the plain bf16 model"
    except Exception as err:  # noqa: BLE001 -- any failure means: do not use the fast path
        problem = f"{type(err).__name__}: {err}"
    if problem is None:
        return True
    logger.warning("grpo.generation.decoder's self-check failed under transformers %s (%s); rollouts decode through "
                   "transformers' forward instead (correct, slower). Install the locked versions "
                   "(make install) to get the fast path back.", transformers.__version__, problem)
    return False
