"""Tests for grpo/generation/vllm_engine.py that run without a GPU: the guard, SamplingParams kwargs,
the LoRA weight-sync name mapping, and turning vLLM outputs into a Rollout.

Run: pytest tests/test_vllm_engine.py   (the real-vLLM test runs only where CUDA and vllm exist)
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import importlib.util
from types import SimpleNamespace

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from grpo.common.errors import UserError
from grpo.generation import vllm_engine
from grpo.generation.inference_copy import inference_copy, merged_named_weights
from grpo.generation.sampler import generate
from grpo.generation.vllm_engine import VLLMEngine, require_vllm, rollout_from_outputs, sampling_params_kwargs

HAVE_GPU_VLLM = torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_llama(seed=0, tie=True):
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=tie, eos_token_id=3, pad_token_id=0)
    return LlamaForCausalLM(config).eval()


def lora_model(seed=0, **kwargs):
    peft = pytest.importorskip("peft")
    config = dict(r=4, lora_alpha=8, lora_dropout=0.0, init_lora_weights=False, target_modules="all-linear",
                  task_type="CAUSAL_LM")
    config.update(kwargs)
    return peft.get_peft_model(tiny_llama(seed), peft.LoraConfig(**config))


# ---------------------------------------------------------------------------- guard


@pytest.mark.skipif(HAVE_GPU_VLLM, reason="the guard only fires without CUDA or vllm")
def test_guard_names_the_fix():
    with pytest.raises(UserError) as err:
        require_vllm()
    message = str(err.value)
    assert "pip install grpo-toolkit[gpu]" in message and "use_vllm" in message
    with pytest.raises(UserError):
        VLLMEngine("embedded:smollm2-135m-instruct")


def test_guard_reports_missing_vllm_even_with_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(__import__("sys").modules, "vllm", None)  # makes `import vllm` raise ImportError
    with pytest.raises(UserError, match="needs the 'vllm' package"):
        require_vllm()


def test_import_does_not_need_vllm():
    assert "vllm" not in vllm_engine.__dict__


# ---------------------------------------------------------------------------- SamplingParams kwargs


def test_sampling_params_kwargs_sampling():
    kw = sampling_params_kwargs(8, 128, temperature=0.9, top_p=0.95, top_k=50, stop_token_ids=[2, 7], seed=3)
    assert kw == {"n": 8, "max_tokens": 128, "temperature": 0.9, "top_p": 0.95, "top_k": 50,
                  "stop_token_ids": [2, 7], "ignore_eos": False, "skip_special_tokens": False, "logprobs": 0,
                  "seed": 3, "min_p": 0.0, "repetition_penalty": 1.0}


def test_sampling_params_kwargs_min_p_and_repetition_penalty():
    kw = sampling_params_kwargs(2, 16, min_p=0.1, repetition_penalty=1.3)
    assert (kw["min_p"], kw["repetition_penalty"]) == (0.1, 1.3)
    assert sampling_params_kwargs(2, 16, min_p=0.1, do_sample=False)["min_p"] == 0.0  # greedy: no warpers, as HF


@pytest.mark.parametrize("top_k", [0, None])
def test_sampling_params_kwargs_disabled_top_k_and_greedy(top_k):
    assert sampling_params_kwargs(2, 16, top_k=top_k)["top_k"] == -1
    greedy = sampling_params_kwargs(2, 16, temperature=0.7, top_p=0.5, top_k=5, do_sample=False)
    assert (greedy["temperature"], greedy["top_p"], greedy["top_k"]) == (0.0, 1.0, -1)


# ---------------------------------------------------------------------------- weight sync mapping


def test_plain_model_weights_pass_through_shared():
    model = tiny_llama()
    names = dict(merged_named_weights(model))
    assert set(names) == {n for n, _ in model.named_parameters()}
    assert names["model.embed_tokens.weight"].data_ptr() == model.model.embed_tokens.weight.data_ptr()


def test_lora_weights_merged_under_base_names_without_touching_model():
    model = lora_model(1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ours = dict(merged_named_weights(model))
    import copy

    reference = dict(copy.deepcopy(model).merge_and_unload().named_parameters())
    assert set(ours) == set(reference)
    assert not any("lora" in n or "base_layer" in n or n.startswith("base_model") for n in ours)
    for name, tensor in reference.items():
        torch.testing.assert_close(ours[name], tensor.detach(), rtol=1e-6, atol=1e-6)
    # the delta is really there: q_proj differs from the frozen base weight
    base = model.base_model.model.model.layers[0].self_attn.q_proj.base_layer.weight
    assert not torch.allclose(ours["model.layers.0.self_attn.q_proj.weight"], base)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_lora_disabled_adapter_and_modules_to_save():
    model = lora_model(2, target_modules=["q_proj", "v_proj"], modules_to_save=["lm_head"])
    import copy

    reference = dict(copy.deepcopy(model).merge_and_unload().named_parameters())
    ours = dict(merged_named_weights(model))
    assert set(ours) == set(reference)
    for name, tensor in reference.items():
        torch.testing.assert_close(ours[name], tensor.detach())
    with model.disable_adapter():
        plain = dict(merged_named_weights(model))
    base = model.base_model.model.model.layers[0].self_attn.q_proj.base_layer.weight
    assert torch.equal(plain["model.layers.0.self_attn.q_proj.weight"], base)


def test_bf16_inference_copy_follows_policy_updates():
    model = lora_model(3)
    first = inference_copy(model, torch.float64)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.add_(0.05)  # an "optimizer step" on the adapter
    second = inference_copy(model, torch.float64)
    assert second is first  # refreshed in place, not rebuilt
    for name, tensor in merged_named_weights(model):
        torch.testing.assert_close(dict(second.named_parameters())[name], tensor.double())
    prompts = [[5, 6, 7], [9]]
    expected = generate(model, None, prompts, 1, 8, do_sample=False, stop_token_ids=[3]).completion_ids
    assert generate(model, None, prompts, 1, 8, do_sample=False, stop_token_ids=[3],
                    dtype=torch.float64).completion_ids == expected


# ---------------------------------------------------------------------------- outputs -> Rollout


def fake_output(token_ids, finish_reason, logprobs=None):
    steps = None if logprobs is None else [{t: SimpleNamespace(logprob=lp)} for t, lp in zip(token_ids, logprobs)]
    return SimpleNamespace(token_ids=token_ids, finish_reason=finish_reason, logprobs=steps)


def test_rollout_from_outputs_prompt_major():
    outputs = [SimpleNamespace(outputs=[fake_output([4, 2], "stop", [-0.1, -0.2]), fake_output([5, 6, 7], "length")]),
               SimpleNamespace(outputs=[fake_output([8], "stop"), fake_output([9, 9, 9], "length")])]
    rollout = rollout_from_outputs([[1, 2], [3]], outputs, 2)
    assert rollout.completion_ids == [[4, 2], [5, 6, 7], [8], [9, 9, 9]]
    assert rollout.is_truncated == [False, True, False, True]
    assert rollout.logprobs[0] == [-0.1, -0.2] and rollout.logprobs[1] == []
    assert rollout.prompt_index == [0, 0, 1, 1]
    with pytest.raises(ValueError):
        rollout_from_outputs([[1]], outputs, 2)


# ---------------------------------------------------------------------------- real vLLM (GPU only)


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_GPU_VLLM, reason="needs CUDA and vllm")
def test_vllm_greedy_matches_sampler_on_gpu():
    from grpo.modeling.models import EMBEDDED_SMOLLM2, load_model, resolve_model_path

    spec = os.environ.get("GRPO_VLLM_TEST_MODEL", EMBEDDED_SMOLLM2)  # scripts/gpu_smoke.sh passes the model it trains
    model, tokenizer = load_model(spec)
    model = model.cuda()
    engine = VLLMEngine(resolve_model_path(spec), gpu_memory_utilization=0.2, max_model_len=512,
                        dtype="float32")
    prompts = [tokenizer("The capital of France is")["input_ids"], tokenizer("1, 2, 3, 4,")["input_ids"]]
    ours = generate(model, tokenizer, prompts, 1, 8, do_sample=False)
    theirs = engine.generate(model, tokenizer, prompts, 1, 8, do_sample=False)
    assert theirs.completion_ids == ours.completion_ids
    sampled = engine.generate(model, tokenizer, prompts, 4, 16, seed=0)
    assert len(sampled.completion_ids) == 8
