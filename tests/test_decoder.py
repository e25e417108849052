"""Tests for grpo/generation/decoder.py: the hand-written decode step computes what the plain bf16 model computes.

Run: pytest tests/test_decoder.py   (tiny random Llama and Qwen2 models, seconds)
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from test_inference_copy import BF16_KERNELS, plain_bf16, tiny

from grpo.generation import decoder
from grpo.generation.inference_copy import inference_copy
from grpo.generation.sampler import generate

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.skipif(not BF16_KERNELS, reason="no oneDNN bf16 kernels: the copy is not rewired")]

PROMPTS = [[5, 6, 7, 8, 9, 10, 11], [12, 13], [30, 31, 32]]  # left padding of 0, 5 and 4 tokens


def full_forward_logits(model, sequences: list[list[int]]) -> torch.Tensor:
    """Next-token logits (N, V) float32 of each sequence, by one left-padded forward of the whole sequence."""
    width = max(len(s) for s in sequences)
    ids = torch.tensor([[0] * (width - len(s)) + s for s in sequences])
    mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in sequences])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        return model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, -1].float()


def prefill(fast, prompts, group, chunk):
    """The sampler's prefill, by hand: P left-padded prompts through decoder.prefill."""
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    logits, kv = decoder.prefill(fast, ids, mask, positions, group, chunk=chunk)
    return kv, logits.repeat_interleave(group, 0), positions[:, -1:].repeat_interleave(group, 0) + 1


def test_supports_only_the_rewired_copy():
    model = tiny("llama")
    assert decoder.supports(inference_copy(model, torch.bfloat16))
    assert not decoder.supports(model)
    assert not decoder.supports(inference_copy(model, torch.float64))


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_decode_steps_match_full_forward_across_growth_and_row_drops(kind):
    """Eight steps past three left-padded prompts (2 rows each), chunk 4 so the buffers grow twice,
    dropping rows after step 3: every step's logits agree with a full bf16 forward of the sequence."""
    model = tiny(kind, seed=1)
    fast, plain = inference_copy(model, torch.bfloat16), plain_bf16(model)
    kv, logits, positions = prefill(fast, PROMPTS, 2, chunk=4)
    assert kv.capacity == 8 and kv.length == 7
    sequences = [list(PROMPTS[i // 2]) for i in range(6)]
    live = list(range(6))
    gen = torch.Generator().manual_seed(0)
    worst = 0.0
    for step in range(8):
        tokens = torch.randint(4, 64, (len(live),), generator=gen)
        for row, t in zip(live, tokens.tolist()):
            sequences[row].append(t)
        if step == 3:  # rows 1 and 4 finish: keep the rest, in order
            keep = torch.tensor([i for i, row in enumerate(live) if row not in (1, 4)])
            live = [live[i] for i in keep.tolist()]
            kv.select(keep)
            tokens, positions = tokens[keep], positions[keep]
        logits = decoder.decode_step(fast, kv, tokens, positions)
        positions = positions + 1
        reference = full_forward_logits(plain, [sequences[r] for r in live])
        assert logits.shape == reference.shape
        worst = max(worst, (logits - reference).abs().max().item())
        assert torch.equal(logits.argmax(-1), reference.argmax(-1))
    assert kv.length == 7 + 8 and kv.capacity == 16 and kv.keys[0].shape[0] == 4
    assert worst < 0.05  # logits are O(1): bf16 rounding, not a wrong mask or position
    assert worst > 0  # (the attention path really is a different computation)


def test_padding_is_masked_not_attended():
    """Changing what sits in a row's left padding leaves its logits untouched."""
    fast = inference_copy(tiny("llama", seed=2), torch.bfloat16)
    kv, _, positions = prefill(fast, PROMPTS, 1, chunk=32)
    tokens = torch.tensor([40, 41, 42])
    first = decoder.decode_step(fast, kv, tokens, positions)
    kv2, _, _ = prefill(fast, PROMPTS, 1, chunk=32)
    with torch.inference_mode():  # the buffers are inference tensors, as in the sampler
        for keys, values in zip(kv2.keys, kv2.values):
            keys[1, :, :5].normal_()  # row 1 has 5 padding positions
            values[1, :, :5].normal_()
    assert torch.equal(decoder.decode_step(fast, kv2, tokens, positions), first)


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_sampler_greedy_on_fast_path_equals_plain_bf16_generate(kind):
    model = tiny(kind, seed=5)
    assert decoder.supports(inference_copy(model, torch.bfloat16))
    ours = generate(model, None, PROMPTS, 2, 40, do_sample=False, stop_token_ids=[3], dtype=torch.bfloat16)
    theirs = generate(plain_bf16(model), None, PROMPTS, 2, 40, do_sample=False, stop_token_ids=[3])
    assert ours.completion_ids == theirs.completion_ids
    assert max(len(c) for c in ours.completion_ids) > 32  # past the first chunk's growth


def test_fast_decode_false_goes_through_transformers(monkeypatch):
    model = tiny("llama", seed=6)
    calls = []
    real = decoder.decode_step
    monkeypatch.setattr(decoder, "decode_step", lambda *a, **k: calls.append(1) or real(*a, **k))
    fast = generate(model, None, PROMPTS, 2, 10, do_sample=False, stop_token_ids=[3], dtype=torch.bfloat16)
    assert len(calls) > 0
    calls.clear()
    slow = generate(model, None, PROMPTS, 2, 10, do_sample=False, stop_token_ids=[3], dtype=torch.bfloat16,
                    fast_decode=False)
    assert calls == [] and slow.completion_ids == fast.completion_ids


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_prefill_logits_match_plain_bf16_forward(kind):
    model = tiny(kind, seed=7)
    fast, plain = inference_copy(model, torch.bfloat16), plain_bf16(model)
    _, logits, _ = prefill(fast, PROMPTS, 1, chunk=32)
    reference = full_forward_logits(plain, PROMPTS)
    assert torch.equal(logits.argmax(-1), reference.argmax(-1))
    assert (logits - reference).abs().max().item() < 0.05


def test_self_check_passes_and_catches_a_broken_decoder(monkeypatch):
    decoder.self_check.cache_clear()
    assert decoder.self_check()
    model = decoder._check_model()
    fast, plain = inference_copy(model, torch.bfloat16), plain_bf16(model)
    assert decoder.agreement(plain, fast) <= decoder.SELF_CHECK_TOLERANCE
    real = decoder.decode_step
    monkeypatch.setattr(decoder, "decode_step", lambda m, kv, t, pos: real(m, kv, t, pos + 1))  # off-by-one rotary
    assert decoder.agreement(plain, fast) > decoder.SELF_CHECK_TOLERANCE


def test_failed_self_check_falls_back_to_transformers_with_one_warning(monkeypatch, caplog):
    """With the check forced to fail, greedy tokens come from transformers' forward on a plain bf16
    copy (identical to the plain bf16 model), the decoder is never called, and one warning names
    the transformers version."""
    import transformers

    model = tiny("llama", seed=8)
    decoder.self_check.cache_clear()
    monkeypatch.setattr(decoder, "agreement", lambda plain, fast: float("inf"))
    calls = []
    monkeypatch.setattr(decoder, "decode_step", lambda *a, **k: calls.append(1))
    try:
        with caplog.at_level("WARNING", logger="grpo.generation.decoder"):
            ours = generate(model, None, PROMPTS, 2, 20, do_sample=False, stop_token_ids=[3], dtype=torch.bfloat16)
            again = generate(model, None, PROMPTS, 2, 20, do_sample=False, stop_token_ids=[3], dtype=torch.bfloat16)
        theirs = generate(plain_bf16(model), None, PROMPTS, 2, 20, do_sample=False, stop_token_ids=[3])
        assert calls == []
        assert ours.completion_ids == theirs.completion_ids == again.completion_ids
        warnings = [r for r in caplog.records if "self-check failed" in r.getMessage()]
        assert len(warnings) == 1 and transformers.__version__ in warnings[0].getMessage()
    finally:
        decoder.self_check.cache_clear()
