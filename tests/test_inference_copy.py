"""Tests for grpo/generation/inference_copy.py: the bf16 decoding copy computes what the plain bf16 model computes.

Run: pytest tests/test_inference_copy.py   (tiny random Llama and Qwen2 models, seconds)
"""

import copy
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from grpo.generation import decoder
from grpo.generation.inference_copy import (FusedAttention, FusedGatedMLP, FusedRMSNorm, PackedLinear, bf16_cpu_kernels,
                                 inference_copy)
from grpo.generation.sampler import generate

BF16_KERNELS = bf16_cpu_kernels()  # the same test the copy uses before rewiring
needs_bf16 = pytest.mark.skipif(not BF16_KERNELS, reason="this CPU has no oneDNN bf16 kernels: the copy is not rewired")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(kind: str, seed: int = 0, tie: bool = False):
    torch.manual_seed(seed)
    common = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=128, bos_token_id=1, eos_token_id=3, pad_token_id=0)
    if kind == "qwen2":  # q/k/v carry biases: the fused projection must concatenate them
        model = Qwen2ForCausalLM(Qwen2Config(**common, tie_word_embeddings=False))
        with torch.no_grad():
            for layer in model.model.layers:
                for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                    proj.bias.normal_(0, 0.5)
        return model.eval()
    model = LlamaForCausalLM(LlamaConfig(**common, tie_word_embeddings=tie))
    with torch.no_grad():  # norms at their init (all ones) would hide a mis-wired weight
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    return model.eval()


def plain_bf16(model):
    """What the copy must agree with: the same model, parameters cast to bf16, buffers left as they are."""
    plain = copy.deepcopy(model)
    for p in plain.parameters():
        p.data = p.data.to(torch.bfloat16)
    return plain.eval()


def prefill_logits(fast, ids):
    """Last-position logits of unpadded prompts through the decoder's own prefill (the rewired copy's only path)."""
    positions = torch.arange(ids.shape[1]).expand_as(ids)
    return decoder.prefill(fast, ids, None, positions, 1)[0]


@needs_bf16
@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_rewired_copy_matches_plain_bf16_model_exactly(kind):
    model = tiny(kind)
    fast = inference_copy(model, torch.bfloat16)
    layer = fast.model.layers[0]
    assert isinstance(layer.self_attn, FusedAttention) and isinstance(layer.mlp, FusedGatedMLP)
    assert isinstance(layer.input_layernorm, FusedRMSNorm) and isinstance(fast.lm_head, PackedLinear)
    plain = plain_bf16(model)
    ids = torch.tensor([[5, 6, 7, 8, 9], [10, 11, 12, 13, 14]])
    with torch.inference_mode():
        assert torch.equal(prefill_logits(fast, ids), plain(input_ids=ids).logits[:, -1].float())
    # decoding (one query token against a growing, left-padded cache) through the sampler
    prompts = [[5, 6, 7, 8, 9, 10, 11], [12, 13], [30]]
    ours = generate(model, None, prompts, 2, 12, do_sample=False, stop_token_ids=[3], dtype=torch.bfloat16)
    theirs = generate(plain, None, prompts, 2, 12, do_sample=False, stop_token_ids=[3])
    assert ours.completion_ids == theirs.completion_ids
    assert max(len(c) for c in ours.completion_ids) > 4  # long enough to exercise the decode path


@needs_bf16
def test_refresh_repacks_fused_weights_after_an_update():
    model = tiny("llama", seed=3)
    fast = inference_copy(model, torch.bfloat16)
    with torch.no_grad():
        model.model.layers[1].self_attn.v_proj.weight.mul_(-2.0)  # lands in the middle of the fused q/k/v
        model.model.layers[0].mlp.up_proj.weight.add_(0.3)  # the second half of the fused gate/up
    assert inference_copy(model, torch.bfloat16) is fast
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.inference_mode():
        assert torch.equal(prefill_logits(fast, ids), plain_bf16(model)(input_ids=ids).logits[:, -1].float())


def test_copy_in_other_dtypes_is_not_rewired():
    model = tiny("llama", seed=4)
    copy64 = inference_copy(model, torch.float64)
    assert type(copy64.model.layers[0].mlp).__name__ == "LlamaMLP"
    assert next(copy64.parameters()).dtype == torch.float64 and next(model.parameters()).dtype == torch.float32


@needs_bf16
def test_rewired_copy_refuses_transformers_forward():
    fast = inference_copy(tiny("llama", seed=5), torch.bfloat16)
    with pytest.raises(RuntimeError, match="grpo.generation.decoder"):
        fast(input_ids=torch.tensor([[5, 6]]))
    assert type(inference_copy(tiny("llama", seed=5), torch.bfloat16, rewire=False).model.layers[0].mlp).__name__ == "LlamaMLP"


@needs_bf16
def test_rewired_copy_holds_each_weight_once_and_keeps_tied_ones():
    model = tiny("llama", seed=6, tie=True)  # lm_head reads the embedding's weight, as in SmolLM2
    fast = inference_copy(model, torch.bfloat16)
    qkv = fast.model.layers[0].self_attn.qkv
    assert qkv.released and all(lin.weight.numel() == 0 for lin in qkv.parts)  # only the packed copy is left
    assert not fast.lm_head.released and fast.lm_head.weight is fast.model.embed_tokens.weight  # the embedding reads it
    with torch.no_grad():  # a refresh must rebuild released modules from the policy's weights, tied ones too
        model.model.layers[0].self_attn.k_proj.weight.mul_(3.0)
        model.model.embed_tokens.weight.add_(0.1)
    inference_copy(model, torch.bfloat16)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.inference_mode():
        assert torch.equal(prefill_logits(fast, ids), plain_bf16(model)(input_ids=ids).logits[:, -1].float())


def test_copy_in_the_policys_own_dtype_leaves_the_policy_untouched():
    """The copy is built from cast parameters (no full-precision duplicate); in the policy's own dtype the cast is
    a no-op, so the copy must still own its tensors: merging LoRA into it must not write into the policy."""
    peft = pytest.importorskip("peft")
    lora = peft.get_peft_model(tiny("llama", seed=8), peft.LoraConfig(r=4, lora_alpha=8, init_lora_weights=False,
                                                                     target_modules="all-linear"))
    before = {n: p.detach().clone() for n, p in lora.named_parameters()}
    merged = inference_copy(lora, torch.float32)
    assert all(torch.equal(p, before[n]) for n, p in lora.named_parameters())
    expected = copy.deepcopy(lora).merge_and_unload()
    for name, p in expected.named_parameters():
        assert torch.equal(dict(merged.named_parameters())[name], p), name
