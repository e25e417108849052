"""One decoding step of the rewired Llama-family inference copy, written out by hand.

The sampler's decode loop feeds one new token per row through the model, B = P*G rows at a
time. At B = 16 on SmolLM2-135M the matmuls are ~20 ms of a ~45 ms transformers forward; the
rest is per-call overhead, most of it in attention: the CPU flash kernel of
``scaled_dot_product_attention`` runs two small GEMMs per (row, KV head), each with its own
set-up, and a ``bmm`` over a slice of a larger cache buffer copies the slice first.

This module keeps the KV cache *contiguous* (:class:`KVBuffers`: capacity = the cached length
rounded up to a chunk, grown by copying once per chunk, the unused tail masked) and runs
attention as two batched matmuls over the grouped KV heads (scores and softmax in fp32, the
probabilities rounded to bf16 for the product with the values, as SDPA's CPU kernel does). It
also skips transformers' mask building, output classes and cache bookkeeping. Measured with
``scripts/bench_rollout.py``, whose "(hf decode step)" row is the same copy decoded without this
module (README).

Numerics: the same kernels as the rewired copy for everything but attention, whose summation
order differs from SDPA's; tests/test_decoder.py checks the logits against the plain bf16 model
and its greedy output token for token, so sampling sees the bf16 policy, as before.

Only for models :func:`supports` accepts (the fused Llama / Qwen2 copy from
:func:`grpo.inference_copy.inference_copy`); everything else decodes through transformers.
"""

from __future__ import annotations

import torch

from grpo.inference_copy import _Attention, _GatedMLP, _RMSNorm

__all__ = ["KVBuffers", "decode_step", "supports"]

CHUNK = 32  # cache capacity grows in steps of this many positions (one copy of the cache per CHUNK tokens)


def supports(model: torch.nn.Module) -> bool:
    """True when ``model`` is a rewired inference copy whose decoding :func:`decode_step` can run."""
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None or not hasattr(inner, "rotary_emb") or not isinstance(getattr(inner, "norm", None), _RMSNorm):
        return False
    return all(isinstance(layer.self_attn, _Attention) and isinstance(layer.mlp, _GatedMLP)
               and isinstance(layer.input_layernorm, _RMSNorm) for layer in layers)


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
    def from_prefill(cls, cache, attention_mask: torch.Tensor | None, repeats: int, chunk: int = CHUNK) -> "KVBuffers":
        """Copy a prefilled transformers cache, each row repeated ``repeats`` times (row-major, as
        ``repeat_interleave``), into fresh buffers with room for at least one more token.

        Args:
            cache: a transformers ``Cache`` whose layers expose ``keys``/``values`` ``(P, H_kv, L, D)``.
            attention_mask: ``(P, L)`` 1 for prompt tokens, 0 for left padding; None = no padding.
            repeats: G; the result has P*G rows.
        """
        first = cache.layers[0].keys
        rows, kv_heads, length = first.shape[0] * repeats, first.shape[1], first.shape[2]
        capacity = (length // chunk + 1) * chunk
        keys, values = [], []
        for layer in cache.layers:
            for src, out, dtype in ((layer.keys, keys, torch.float32), (layer.values, values, layer.values.dtype)):
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
            grow = lambda t: torch.cat([t, t.new_zeros((*t.shape[:2], chunk, t.shape[3]))], dim=2)  # noqa: E731
            self.keys = [grow(k) for k in self.keys]
            self.values = [grow(v) for v in self.values]
            self.bias = torch.cat([self.bias, self.bias.new_full((*self.bias.shape[:3], chunk), float("-inf"))], -1)
        self.bias[..., n] = 0.0
        self.length = n + 1
        return n

    def select(self, rows: torch.Tensor) -> None:
        """Keep only ``rows`` (1-D long index into the batch), in that order."""
        self.keys = [k.index_select(0, rows) for k in self.keys]
        self.values = [v.index_select(0, rows) for v in self.values]
        self.bias = self.bias.index_select(0, rows)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding as transformers' Llama applies it: ``x*cos + rotate_half(x)*sin``."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


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
