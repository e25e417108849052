"""A frozen inference copy of the policy for fast rollouts: LoRA merged, bitsandbytes weights dequantized, weights
cast, CPU bf16 kernels.

:func:`inference_copy` builds the copy once per (policy, dtype) and refreshes its weights in place
on later calls, so it follows the policy across optimizer steps; the weights come from
:func:`merged_named_weights` (LoRA merged on the fly, 4-bit / 8-bit weights dequantized), which the vLLM
engines push as well. The copy is a second model in memory (2 bytes per parameter in bf16): the sampler
makes one only on a CPU (:func:`grpo.generation.sampler.uses_weight_copy`), where it is the fast path. On a
CPU with bf16 support (oneDNN, AVX512-BF16 / AMX) the copy of a Llama-family model (llama, qwen2)
is also rewired for decoding, where each step is many small kernels and the per-call overhead
dominates:

* every ``nn.Linear`` runs on a weight pre-packed for oneDNN (what torch.compile's CPU backend
  does), and the projections that read the same input are fused: q/k/v into one matmul,
  gate/up into one;
* RMSNorm is one ``torch.nn.functional.rms_norm`` call instead of six elementwise ones;
* attention is not run here: the sampler runs such a copy with :mod:`grpo.generation.decoder` (its own
  prefill and decode step over contiguous KV buffers), never through transformers' forward.

Measured on SmolLM2-135M, 16 rows: see ``scripts/bench_rollout.py``. Outputs agree with the plain
bf16 model to bf16 rounding (tests/test_inference_copy.py), so sampling is unchanged in
distribution; greedy decoding in the policy's own dtype (no copy) stays token-exact with
``model.generate``.
"""

from __future__ import annotations

import copy
import logging
import weakref
from collections.abc import Iterator

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

__all__ = [
    "FusedAttention", "FusedGatedMLP", "FusedRMSNorm", "PackedLinear", "bf16_cpu_kernels", "inference_copy",
    "has_quantized_weights", "merged_named_weights", "release_copies",
]

_FUSABLE_MODEL_TYPES = {"llama", "qwen2"}


class PackedLinear(torch.nn.Module):
    """One or several ``nn.Linear`` reading the same input, as a single oneDNN-packed bf16 matmul.

    The output is the concatenation of the linears' outputs along the last dim. The original
    linears stay registered (their parameter names are what :func:`inference_copy` refreshes), but
    once packed their own weights are dropped (:meth:`release`) unless another module shares them
    (the tied lm_head reads the embedding's): the copy then holds each weight once, packed (SmolLM2-135M:
    ~520 -> ~300 MB). :meth:`repack` rebuilds the packed weight from given tensors or the linears'.
    Packing alone measured 25 % (576x1536) to 40 % (the 49152-row lm_head) less CPU time at batch 16.
    """

    def __init__(self, *linears: torch.nn.Linear):
        super().__init__()
        self.parts = torch.nn.ModuleList(linears)
        self.sizes = [lin.out_features for lin in linears]
        self.repack()

    @property
    def weight(self) -> torch.Tensor:  # what code that inspects a single linear looks for
        return self.parts[0].weight

    def repack(self, weights: list[torch.Tensor] | None = None) -> None:
        """Rebuild the packed weight (and bias) from ``weights`` (one (out_i, in) tensor per wrapped linear, cast to
        the copy's dtype) or, when None, from the wrapped linears' current weights."""
        weights = [lin.weight for lin in self.parts] if weights is None else [
            w.to(lin.weight.dtype) for w, lin in zip(weights, self.parts)]
        weight = weights[0] if len(weights) == 1 else torch.cat(weights)
        biases = [lin.bias for lin in self.parts]
        if all(b is None for b in biases):
            self.bias = None
        else:
            self.bias = torch.cat([b if b is not None else weight.new_zeros(n) for b, n in zip(biases, self.sizes)])
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, 16)  # 16 = typical rows per step

    @property
    def released(self) -> bool:
        """Whether the wrapped linears' own weights were dropped (:meth:`release`): refresh with :meth:`repack` (weights)."""
        return self.parts[0].weight.numel() == 0

    def release(self) -> None:
        """Drop the wrapped linears' weights (the packed copy is the only one used); shapes stay in ``out_features``."""
        for lin in self.parts:
            lin.weight.data = lin.weight.data.new_empty(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")


class FusedRMSNorm(torch.nn.Module):
    """Llama RMSNorm with the normalisation as one fused fp32 call (transformers' rounding order:
    normalise in fp32, round to the input dtype, then scale). ``F.rms_norm`` straight on bf16
    input is not a substitute: SmolLM2's residual stream reaches the hundreds and the bf16 sum
    of squares moves the logits by >10."""

    def __init__(self, norm: torch.nn.Module):
        super().__init__()
        self.weight = norm.weight
        self.eps = norm.variance_epsilon

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * F.rms_norm(x.float(), self.weight.shape, None, self.eps).to(x.dtype)


class FusedGatedMLP(torch.nn.Module):
    """``down(silu(gate(x)) * up(x))`` with gate and up fused into one packed matmul."""

    def __init__(self, mlp: torch.nn.Module):
        super().__init__()
        self.gate_up = PackedLinear(mlp.gate_proj, mlp.up_proj)
        self.down_proj = PackedLinear(mlp.down_proj)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).split(self.gate_up.sizes, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class FusedAttention(torch.nn.Module):
    """Llama/Qwen2 self-attention weights with q/k/v fused into one packed matmul.

    A container for :mod:`grpo.generation.decoder`, which runs the attention itself (prefill and decode);
    the rewired copy is never called through transformers' forward, so nothing here depends on
    the keyword names or cache classes transformers passes between its modules.
    """

    def __init__(self, attn: torch.nn.Module, config):
        super().__init__()
        self.layer_idx = attn.layer_idx
        self.head_dim, self.scaling = attn.head_dim, attn.scaling
        self.num_heads, self.num_kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.qkv = PackedLinear(attn.q_proj, attn.k_proj, attn.v_proj)
        self.o_proj = PackedLinear(attn.o_proj)

    def forward(self, *args, **kwargs):
        raise RuntimeError("the rewired inference copy runs through grpo.generation.decoder (prefill / decode_step), "
                           "not transformers' forward")


def bf16_cpu_kernels() -> bool:
    """Whether this torch build and CPU have oneDNN bf16 kernels (AVX512-BF16 / AMX; emulated otherwise)."""
    try:
        return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    except (RuntimeError, AttributeError):  # op missing in this torch build
        return False


def _bf16_cpu_kernels(model: torch.nn.Module) -> bool:
    p = next(model.parameters())
    return p.device.type == "cpu" and p.dtype == torch.bfloat16 and bf16_cpu_kernels()


def _fusable(model: torch.nn.Module) -> bool:
    config = model.config
    layer_types = set(getattr(config, "layer_types", None) or ["full_attention"])
    return (getattr(config, "model_type", None) in _FUSABLE_MODEL_TYPES and config.hidden_act == "silu"
            and layer_types == {"full_attention"} and not getattr(config, "use_sliding_window", False))


def _rewire_for_decoding(model: torch.nn.Module) -> None:
    """Swap modules of a bf16 CPU model for the packed / fused ones above; a no-op where unsupported."""
    if not _bf16_cpu_kernels(model):
        return
    try:
        if _fusable(model):
            for layer in model.model.layers:
                layer.self_attn = FusedAttention(layer.self_attn, model.config)
                layer.mlp = FusedGatedMLP(layer.mlp)
                layer.input_layernorm = FusedRMSNorm(layer.input_layernorm)
                layer.post_attention_layernorm = FusedRMSNorm(layer.post_attention_layernorm)
            model.model.norm = FusedRMSNorm(model.model.norm)
        packed = {id(lin) for m in model.modules() if isinstance(m, PackedLinear) for lin in m.parts}
        for parent in list(model.modules()):  # the remaining linears (lm_head; all of them if not fusable)
            for child_name, child in parent.named_children():
                if type(child) is torch.nn.Linear and id(child) not in packed:
                    setattr(parent, child_name, PackedLinear(child))
    except (RuntimeError, AttributeError) as err:
        logger.debug("oneDNN weight packing unavailable: %s", err)
        return
    linears = {id(lin) for m in model.modules() if isinstance(m, PackedLinear) for lin in m.parts}
    shared = {id(p) for m in model.modules() if id(m) not in linears and not isinstance(m, PackedLinear)
              for p in m.parameters(recurse=False)}  # e.g. the embedding a tied lm_head reads
    for m in model.modules():
        if isinstance(m, PackedLinear) and not any(id(lin.weight) in shared for lin in m.parts):
            m.release()


# ---------------------------------------------------------------------------- the policy's weights, LoRA merged


def _is_peft(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "base_model")


_BNB_PARAMS = {"Params4bit", "Int8Params"}  # bitsandbytes' packed weight classes (names: no import needed)


def has_quantized_weights(model) -> bool:
    """Whether ``model`` (or the base of a peft model) holds bitsandbytes 4-bit or 8-bit weights."""
    return any(type(p).__name__ in _BNB_PARAMS for p in model.parameters())


def _dense(param: torch.Tensor, owner: torch.nn.Module | None) -> torch.Tensor:
    """``param`` as a float tensor: a bitsandbytes weight dequantized (a new (out, in) tensor in the dtype it was
    quantized from), any other parameter detached (shared, not copied).

    Params4bit stores packed uint8 ``(out * in / 2, 1)`` data plus its ``quant_state``; Int8Params stores int8
    ``(out, in)`` rows and their absmax scales, on the parameter until the layer's first forward and on the
    layer's ``state`` after it (bitsandbytes 0.50).
    """
    kind = type(param).__name__
    if kind not in _BNB_PARAMS:
        return param.detach()
    import bitsandbytes.functional as bnb_f

    if kind == "Params4bit":
        return bnb_f.dequantize_4bit(param.data, param.quant_state)
    scales = param.SCB if getattr(param, "SCB", None) is not None else owner.state.SCB
    return bnb_f.int8_vectorwise_dequant(param.data, scales)


def _int8_owners(model) -> dict[int, torch.nn.Module]:
    """{id(weight): layer} of the 8-bit layers, whose scales move from the weight to the layer (:func:`_dense`)."""
    return {id(m.weight): m for m in model.modules() if type(getattr(m, "weight", None)).__name__ == "Int8Params"}


def merged_named_weights(model) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield ``(name, tensor)`` for every weight of the policy as the plain (non-peft) model names it.

    For a peft LoRA model each adapted weight is ``W + scaling * B @ A`` summed over the active
    adapters, computed into a new tensor; the trained model is never modified (no merge/unmerge
    rounding drift). LoRA matrices and the frozen originals of ``modules_to_save`` are skipped.
    A plain model yields its own ``named_parameters()`` (shared, not copied). bitsandbytes 4-bit
    and 8-bit weights (QLoRA) are dequantized first, so every tensor is a float ``(out, in)`` matrix:
    the same numbers the quantized layer computes with. LoRA variants (DoRA, lora_bias) fall back to
    merging a deep copy (into quantized weights: re-quantized, as peft warns). Names match
    ``model.merge_and_unload().named_parameters()``; tied weights appear once. What refreshes an
    :func:`inference_copy` and what the vLLM engines push (:func:`grpo.generation.vllm_engine.vllm_named_weights`).
    """
    owners = _int8_owners(model)
    if not _is_peft(model):
        for name, param in model.named_parameters():
            yield name, _dense(param, owners.get(id(param)))
        return
    from peft.tuners.lora import LoraLayer

    lora = {name: m for name, m in model.named_modules() if isinstance(m, LoraLayer)}
    if any(getattr(m, "lora_variant", None) or any(getattr(m, "lora_bias", {}).values()) for m in lora.values()):
        merged = copy.deepcopy(model).merge_and_unload()
        owners = _int8_owners(merged)
        for name, param in merged.named_parameters():
            yield name, _dense(param, owners.get(id(param)))
        return
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".lora_" in name or ".original_module." in name:
                continue
            tensor = _dense(param, owners.get(id(param)))
            module = lora.get(name.removesuffix(".base_layer.weight"))
            if module is not None and not module.disable_adapters and not module.merged:
                for adapter in module.active_adapters:
                    if adapter in module.lora_A:
                        tensor = tensor + module.get_delta_weight(adapter).to(tensor.dtype)
            name = name.removeprefix("base_model.model.")
            yield name.replace(".base_layer.", ".").replace(".modules_to_save.default.", "."), tensor


# ---------------------------------------------------------------------------- the copy


_COPIES: weakref.WeakKeyDictionary[torch.nn.Module, dict] = weakref.WeakKeyDictionary()


def release_copies(model) -> None:
    """Forget the inference copies built for ``model`` (freed unless the caller still holds one): after an
    evaluation of a model that is not trained next, whose copy would otherwise live as long as the model
    (the warm-started base lives on inside the GRPO stage's peft model: ~300 MB for SmolLM2-135M)."""
    _COPIES.pop(model, None)


def _cast_copy(model, dtype: torch.dtype) -> torch.nn.Module:
    """A deep copy of a float ``model`` with every parameter in ``dtype``, LoRA merged (in ``dtype``: refreshed after)."""
    # deep copy with every plain parameter already cast: the full-precision duplicate a plain deepcopy makes
    # first (+540 MB for SmolLM2-135M in fp32, transient) never exists
    memo = {id(p): torch.nn.Parameter(p.detach().to(dtype, copy=True), requires_grad=False)
            for p in model.parameters() if type(p) is torch.nn.Parameter and p.is_floating_point()}
    clone = copy.deepcopy(model, memo)
    del memo
    if hasattr(clone, "merge_and_unload"):
        clone = clone.merge_and_unload()
    for p in clone.parameters():
        if p.dtype != dtype:
            p.data = p.data.to(dtype)
    return clone


def _empty_copy(model, dtype: torch.dtype) -> torch.nn.Module:
    """The plain float architecture of a bitsandbytes-quantized ``model`` (peft or not), with uninitialised
    ``dtype`` parameters on the model's device and the model's own buffers (rotary ``inv_freq``).

    A quantized model cannot be deep-copied and cast: its weights are packed integers, and its layers are
    bitsandbytes modules. Built on the meta device from the model's config (no initialisation, no quantization);
    :func:`inference_copy` then fills every parameter from :func:`merged_named_weights` (dequantized, LoRA merged).
    """
    base = model.get_base_model() if _is_peft(model) else model
    config = copy.deepcopy(base.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    device = next(base.parameters()).device
    with torch.device("meta"):
        clone = type(base)(config)
    made: dict[int, torch.nn.Parameter] = {}  # tied parameters stay tied
    for module in clone.modules():
        for name, p in module._parameters.items():
            if p is not None:
                if id(p) not in made:
                    made[id(p)] = torch.nn.Parameter(torch.empty(p.shape, dtype=dtype, device=device),
                                                     requires_grad=False)
                module._parameters[name] = made[id(p)]
    buffers = dict(base.named_buffers())
    for name, _buf in list(clone.named_buffers()):
        owner, _, leaf = name.rpartition(".")
        clone.get_submodule(owner)._buffers[leaf] = buffers[name]  # shared: never written by the copy
    clone.generation_config = copy.deepcopy(base.generation_config)
    return clone


@torch.inference_mode()
def inference_copy(model, dtype: torch.dtype, rewire: bool = True) -> torch.nn.Module:
    """A frozen eval-mode copy of ``model``, LoRA merged, parameters in ``dtype``, holding its current weights.

    Built once per (model, dtype) with a deep copy (~1 s for SmolLM2-135M), then refreshed in
    place from :func:`merged_named_weights` on every call (~0.2 s), so it
    follows the policy across optimizer steps. Buffers (rotary ``inv_freq``) keep their precision.
    A bitsandbytes 4-bit / 8-bit model (QLoRA) gets the plain architecture instead, filled with its
    dequantized weights (:func:`_empty_copy`): a float model that computes what the quantized one does.
    bf16 on a CPU with bf16 kernels and ``rewire``: rewired for :mod:`grpo.generation.decoder` (see the module
    docstring; such a copy only runs through the decoder). Otherwise a plain transformers model.
    Inference only: its tensors are inference-mode tensors. Memory: a second model, ``dtype``'s bytes per
    parameter (bf16: 2), for as long as ``model`` lives or until :func:`release_copies`.

    Args:
        model: a causal LM or a peft wrapper of one (left unchanged).
        dtype: parameter dtype of the copy, e.g. ``torch.bfloat16``.
        rewire: allow the rewiring (False: a plain copy that transformers' forward runs).

    Returns:
        The copy (the same object on every call for this model, dtype and ``rewire``).

    Raises:
        RuntimeError: a weight of the copy that the policy does not provide (an architecture this cannot copy).
    """
    copies = _COPIES.setdefault(model, {})
    clone = copies.get((dtype, rewire))
    if clone is None:
        empty = has_quantized_weights(model)
        clone = _empty_copy(model, dtype) if empty else _cast_copy(model, dtype)
        for p in clone.parameters():
            p.requires_grad_(False)
        clone.grpo_params = dict(clone.named_parameters())  # names before rewiring renames them
        if empty:  # filled before rewiring: the packed weights are built from these
            _refresh(clone, model)
        if rewire:
            _rewire_for_decoding(clone)
        owners = {id(lin.weight): (m, i) for m in clone.modules() if isinstance(m, PackedLinear) and m.released
                  for i, lin in enumerate(m.parts)}
        clone.grpo_packed = {name: owners[id(p)] for name, p in clone.grpo_params.items() if id(p) in owners}
        copies[(dtype, rewire)] = clone.eval()
        if empty or not _is_peft(model):  # already holds the current weights
            return clone
    _refresh(clone, model)
    return clone


def _refresh(clone, model) -> None:
    """Copy :func:`merged_named_weights` of ``model`` into ``clone`` (repacking its packed modules)."""
    pending: dict[int, dict[int, torch.Tensor]] = {}  # released PackedLinear -> its parts' new weights so far
    packed = getattr(clone, "grpo_packed", {})
    missing = set(clone.grpo_params)
    for name, tensor in merged_named_weights(model):
        missing.discard(name)
        if name in packed:  # a dropped weight: repack its module once all of its parts have arrived
            module, part = packed[name]
            parts = pending.setdefault(id(module), {})
            parts[part] = tensor
            if len(parts) == len(module.parts):
                module.repack([parts[i] for i in range(len(module.parts))])
                del pending[id(module)]
        else:
            clone.grpo_params[name].copy_(tensor)
    for module in clone.modules():
        if isinstance(module, PackedLinear) and not module.released:  # reads a weight refreshed above (tied lm_head)
            module.repack()
    if pending:
        raise RuntimeError(f"inference_copy: {len(pending)} packed modules got only part of their weights")
    if missing:
        raise RuntimeError(f"inference_copy: the policy has no weight for {sorted(missing)[:3]} of its copy")
