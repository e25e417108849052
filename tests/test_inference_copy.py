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
from grpo.generation.inference_copy import (
    FusedAttention,
    FusedGatedMLP,
    FusedRMSNorm,
    PackedLinear,
    bf16_cpu_kernels,
    inference_copy,
)
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


# ---------------------------------------------------------------------------- memory: what is alive during training


def alive_tensor_bytes() -> int:
    """Bytes of every CPU tensor storage reachable from Python right now (each storage once): the model, its
    copies, optimizer state, gradients, caches."""
    import gc

    gc.collect()
    seen, total = set(), 0
    for obj in gc.get_objects():
        if isinstance(obj, torch.Tensor) and obj.device.type == "cpu":
            try:
                storage = obj.untyped_storage()
                key, size = storage.data_ptr(), storage.nbytes()
            except (RuntimeError, NotImplementedError):  # opaque layouts (oneDNN): their own bytes
                key, size = id(obj), obj.numel() * obj.element_size()
            if key and key not in seen:
                seen.add(key)
                total += size
    return total


def _bytes_during_native_training(tmp_path, weight_copy: bool, monkeypatch) -> tuple[int, int]:
    """``(bytes alive during step 2's reward call - bytes alive before training, base parameters)`` for 2 native GRPO
    steps in bf16 of a LoRA policy on a tiny Llama, with or without the sampler's weight copy."""
    from test_native import config, dataset, tiny_tokenizer

    import grpo.generation.sampler as sampler
    from grpo.modeling.models import apply_lora
    from grpo.runs.run_dir import MetricsLogger
    from grpo.training.native import train
    from grpo.training.native.plan import build_plan

    monkeypatch.setattr(sampler, "uses_weight_copy", lambda model: weight_copy)  # False: what a GPU does
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=20, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=4, pad_token_id=0, eos_token_id=1,
                                         bos_token_id=None))
    n_base = sum(p.numel() for p in model.parameters())
    model = apply_lora(model, r=2, lora_alpha=4, lora_dropout=0.0)
    seen = []

    def reward(completions, **kwargs):
        seen.append(alive_tensor_bytes())  # after the rollout, before the loss: the copy (if any) is alive
        return [float(len(c)) for c in completions]

    before = alive_tensor_bytes()
    train(model, tiny_tokenizer(), dataset(), [reward], build_plan(config(tmp_path, bf16=True)), MetricsLogger(tmp_path))
    return seen[-1] - before, n_base


def test_sampler_weight_copy_is_the_only_second_model_and_only_on_cpu(tmp_path, monkeypatch):
    """Native training in bf16 holds the policy once plus its LoRA state; the CPU sampler's bf16 copy adds 2 bytes per
    parameter, and without it (the GPU path: the model itself under autocast) nothing model-sized is added."""
    import grpo.generation.sampler as sampler

    assert sampler.uses_weight_copy(tiny("llama"))  # a CPU model: the measured faster path
    extra_without, n = _bytes_during_native_training(tmp_path / "gpu-like", False, monkeypatch)
    extra_with, _ = _bytes_during_native_training(tmp_path / "cpu", True, monkeypatch)
    assert extra_without < 0.5 * n  # LoRA weights, grads and AdamW moments (~0.3 B/param here), rollout tensors: no copy
    assert 1.9 * n < extra_with - extra_without < 2.2 * n  # the bf16 copy: 2 bytes per parameter


def test_generation_without_a_weight_copy_runs_the_model_under_autocast():
    """The accelerator path, run on this CPU: no copy is built, and the peft model itself generates under bf16
    autocast: greedy completions are ``model.generate``'s under the same autocast (what TRL's generation runs in
    mixed precision), and the policy is unchanged."""
    from grpo.generation import inference_copy as ic

    peft = pytest.importorskip("peft")
    lora = peft.get_peft_model(tiny("llama", seed=9), peft.LoraConfig(r=4, lora_alpha=8, init_lora_weights=False,
                                                                     target_modules="all-linear"))
    before = {n: p.detach().clone() for n, p in lora.named_parameters()}
    prompts = [[5, 6, 7, 8], [12, 13]]
    ours = generate(lora, None, prompts, 1, 10, do_sample=False, stop_token_ids=[3], dtype=torch.bfloat16,
                    weight_copy=False)
    assert lora not in ic._COPIES  # nothing was copied
    for prompt, completion in zip(prompts, ours.completion_ids):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            out = lora.generate(input_ids=torch.tensor([prompt]), do_sample=False, max_new_tokens=10, eos_token_id=3,
                                pad_token_id=0)
        assert completion == out[0, len(prompt):].tolist()
    assert max(len(c) for c in ours.completion_ids) > 4
    assert all(torch.equal(p, before[n]) for n, p in lora.named_parameters())


@pytest.mark.parametrize("tie", [False, True])
def test_final_checkpoint_is_merged_without_a_copy_of_the_model(tmp_path, monkeypatch, tie):
    """checkpoint/ holds what ``deepcopy(model).merge_and_unload()`` saved, bit for bit, and loads to the same logits;
    no module is deep-copied (on a GPU that copy was a second full model) and the trained model is unchanged."""
    from safetensors.torch import load_file

    from grpo.runs.run_dir import save_final_checkpoint

    peft = pytest.importorskip("peft")
    lora = peft.get_peft_model(tiny("llama", seed=10, tie=tie), peft.LoraConfig(
        r=4, lora_alpha=8, init_lora_weights=False, target_modules="all-linear"))
    expected = copy.deepcopy(lora).merge_and_unload().state_dict()
    before = {n: p.detach().clone() for n, p in lora.named_parameters()}
    deepcopy = copy.deepcopy

    def no_module_copies(obj, memo=None):
        assert not isinstance(obj, torch.nn.Module), f"deep copy of a {type(obj).__name__}"
        return deepcopy(obj, memo)

    monkeypatch.setattr(copy, "deepcopy", no_module_copies)
    save_final_checkpoint(lora, None, tmp_path)
    saved = load_file(tmp_path / "checkpoint" / "model.safetensors")
    assert set(saved) == set(expected) - ({"lm_head.weight"} if tie else set())
    for name, tensor in saved.items():
        assert torch.equal(tensor, expected[name]), name
    assert (tmp_path / "checkpoint" / "adapter" / "adapter_model.safetensors").exists()
    assert all(torch.equal(p, before[n]) for n, p in lora.named_parameters())
    reloaded = LlamaForCausalLM.from_pretrained(tmp_path / "checkpoint").eval()
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, lora.eval()(input_ids=ids).logits, atol=1e-5, rtol=1e-5)


def test_trl_trainer_is_released_before_the_evaluation_after_training(tmp_path, monkeypatch):
    """``grpo train --backend trl``: nothing keeps the GRPOTrainer (optimizer state, colocated vLLM) alive while
    eval_after runs: only the trained model goes on."""
    import weakref

    from test_trl_backend import tiny_args
    from transformers import LlamaConfig

    import grpo.cli.pipeline as pipeline
    from grpo.modeling.models import EMBEDDED_SMOLLM2, load_tokenizer

    tokenizer = load_tokenizer(EMBEDDED_SMOLLM2)
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=2, pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=tokenizer.eos_token_id, bos_token_id=None)).save_pretrained(tmp_path / "tiny")
    tokenizer.save_pretrained(tmp_path / "tiny")
    script_args, training_args = tiny_args(tmp_path, "--model_name_or_path", str(tmp_path / "tiny"), "--backend", "trl",
                                           "--max_steps", "1", "--eval_base", "false", "--eval_max_new_tokens", "4")
    trainers, alive_at_eval = [], []
    train, run_eval = pipeline.trl_backend.train, pipeline.run_eval

    def recording_train(*args, on_trainer=None, **kwargs):
        return train(*args, on_trainer=lambda t: (trainers.append(weakref.ref(t)), on_trainer(t)), **kwargs)

    def recording_eval(model, tokenizer, heldout, script_args, path, *args, **kwargs):
        if path.name == "eval_after.json":
            alive_at_eval.append(trainers[0]() is not None)
        return run_eval(model, tokenizer, heldout, script_args, path, *args, **kwargs)

    monkeypatch.setattr(pipeline.trl_backend, "train", recording_train)
    monkeypatch.setattr(pipeline, "run_eval", recording_eval)
    result = pipeline.run_training(script_args, training_args)
    assert result["eval_after"]["n"] == 2 and len(trainers) == 1
    assert alive_at_eval == [False]
