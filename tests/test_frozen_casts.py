"""Frozen weights cast once per step (grpo.training.native.frozen_casts): same numbers, no per-forward casts kept for backward.

Run: ``pytest -q tests/test_frozen_casts.py`` (a tiny random Llama with tied embeddings and LoRA, bf16 autocast on
the CPU; a few seconds).
"""

import pytest
import torch

from grpo.training.native.experience import collate, completion_logps
from grpo.training.native.frozen_casts import frozen_weights_cast


def tiny_lora_model(tied=True):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(3)
    cfg = LlamaConfig(vocab_size=48, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, pad_token_id=0, eos_token_id=1, bos_token_id=None,
                      tie_word_embeddings=tied)
    model = get_peft_model(LlamaForCausalLM(cfg), LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                                             target_modules="all-linear"))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)  # peft starts B at zero: give the adapter something to contribute
    return model


def batch():
    completions = [[8, 9, 30], [3, 4, 5, 1], [9, 40], [7, 7, 7, 7, 7]]
    return collate([[5, 6, 7, 21], [4, 9]], [0, 0, 1, 1], completions, [False] * 4, None,
                   torch.tensor([1.0, -1.0, 0.5, -0.5]), 0, False)


def autocast():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def loss_and_grads(model, b, cast: bool):
    with frozen_weights_cast(model, torch.bfloat16 if cast else None):
        logps, _ = completion_logps(model, b, 0.8, autocast)  # (B, T)
        (logps * b.advantages[:, None] * b.completion_mask).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    return logps.detach(), grads


def test_logps_and_lora_gradients_are_bitwise_the_same():
    model, b = tiny_lora_model(), batch()
    logps_plain, grads_plain = loss_and_grads(model, b, cast=False)
    logps_cast, grads_cast = loss_and_grads(model, b, cast=True)
    assert torch.equal(logps_plain, logps_cast)
    assert grads_plain and set(grads_plain) == set(grads_cast)
    for name in grads_plain:
        assert torch.equal(grads_plain[name], grads_cast[name]), name
    # the autocast forward is really in bf16 (else the comparison above would prove nothing about the casts)
    fp32, _ = completion_logps(model, b, 0.8, lambda: torch.autocast("cpu", enabled=False))
    assert not torch.equal(fp32.detach(), logps_plain)


def test_casts_are_lent_inside_and_the_fp32_parameters_restored_after():
    model = tiny_lora_model(tied=True)
    base = model.get_base_model()
    embed, head = base.model.embed_tokens, base.lm_head
    before = {n: p for n, p in model.named_parameters()}
    frozen_linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and not m.weight.requires_grad]
    assert head.weight is embed.weight and head in frozen_linears
    with frozen_weights_cast(model, torch.bfloat16) as count:
        assert count == len(frozen_linears)  # the tied head's weight counted once: the embedding is not a Linear
        assert all(m.weight.dtype == torch.bfloat16 for m in frozen_linears)
        assert head.weight.dtype == torch.bfloat16 and embed.weight.dtype == torch.float32  # the lookup stays fp32
        assert all(p.dtype == torch.float32 for n, p in model.named_parameters() if "lora_" in n)
    after = {n: p for n, p in model.named_parameters()}
    assert after.keys() == before.keys() and all(after[n] is before[n] for n in before)
    assert head.weight is embed.weight

    with pytest.raises(RuntimeError, match="boom"), frozen_weights_cast(model, torch.bfloat16):
        raise RuntimeError("boom")
    assert all(p is before[n] for n, p in model.named_parameters())


def test_nothing_is_cast_without_autocast_or_for_trainable_weights():
    model = tiny_lora_model()
    with frozen_weights_cast(model, None) as count:
        assert count == 0 and all(p.dtype == torch.float32 for p in model.parameters())
    full = tiny_lora_model().get_base_model().requires_grad_(True)  # full fine-tuning: autocast caches these itself
    with frozen_weights_cast(full, torch.bfloat16) as count:
        assert count == 0 and all(p.dtype == torch.float32 for p in full.parameters())


def test_backward_no_longer_keeps_a_cast_of_every_frozen_weight_per_forward():
    """What the module is for: autograd keeps casts of the frozen weights for backward, one per forward, unless lent."""
    model, b = tiny_lora_model(tied=False), batch()  # rows: 2 x 4 prompt, 4 x 5 completion tokens (no 32/64/128)
    frozen = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear) and not m.weight.requires_grad]
    weight_shapes = {tuple(w.shape) for w in frozen} | {tuple(w.shape[::-1]) for w in frozen}  # W or W.t() is saved

    def kept_for_backward(cast: bool) -> tuple[int, int]:
        """(weight-shaped bf16 tensors, bytes of every tensor) saved for backward that are not model parameters."""
        casts, total = [], []
        with frozen_weights_cast(model, torch.bfloat16 if cast else None):
            params = {p.data_ptr() for p in model.parameters()}  # inside: the lent casts count as parameters

            def pack(t):
                if t.data_ptr() not in params:
                    total.append(t.numel() * t.element_size())
                    if t.dtype == torch.bfloat16 and tuple(t.shape) in weight_shapes:
                        casts.append(t)
                return t

            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                logps, _ = completion_logps(model, b, 1.0, autocast)
            (logps * b.completion_mask).sum().backward()
        model.zero_grad(set_to_none=True)
        return len(casts), sum(total)

    (plain_casts, plain_bytes), (lent_casts, lent_bytes) = kept_for_backward(False), kept_for_backward(True)
    assert plain_casts >= len(frozen) and lent_casts == 0  # autocast's casts, at least one per frozen weight
    body_bf16_bytes = sum(w.numel() * 2 for w in frozen)
    assert plain_bytes - lent_bytes >= body_bf16_bytes
