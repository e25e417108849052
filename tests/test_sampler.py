"""Tests for grpo/generation/sampler.py: greedy equality with HF generate, sampling filters, stop tokens, LoRA.

Run: pytest tests/test_sampler.py            (fast, tiny random models, seconds)
     pytest tests/test_sampler.py -m slow    (embedded SmolLM2 greedy equality)
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.modeling_outputs import CausalLMOutputWithPast

from grpo.common import hf_compat
from grpo.generation.rollout import stop_ids_for
from grpo.generation.sampler import generate, sample_next

VOCAB = 64


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         bos_token_id=1, eos_token_id=3, pad_token_id=0)
    return LlamaForCausalLM(config).eval()


def hf_greedy(model, prompts, max_new_tokens, stops, **knobs):
    """model.generate on the left-padded batch, cut after the first stop token like our sampler."""
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=max_new_tokens,
                         eos_token_id=stops, pad_token_id=0, **knobs)
    result = []
    for row in out[:, width:].tolist():
        cut = next((i for i, t in enumerate(row) if t in stops), None)
        result.append(row if cut is None else row[: cut + 1])
    return result


PROMPTS = [[5, 6, 7, 8, 9, 10, 11], [12, 13, 14], [20, 21, 22, 23, 24], [30]]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("group", [1, 3])
def test_greedy_matches_hf_generate(seed, group):
    model = tiny_llama(seed)
    stops = [3, 17, 40, 41, 50, 51, 60]  # several stops so rows finish at different steps
    expected = hf_greedy(model, PROMPTS, 16, stops)
    rollout = generate(model, None, PROMPTS, group, 16, do_sample=False, stop_token_ids=stops)
    assert len(rollout.completion_ids) == len(PROMPTS) * group
    for i, completion in enumerate(rollout.completion_ids):
        assert completion == expected[i // group]
        assert rollout.is_truncated[i] == (completion[-1] not in stops)


def test_greedy_matches_without_padding_and_default_eos():
    model = tiny_llama(3)
    prompts = [[4, 5, 6], [7, 8, 9]]
    assert stop_ids_for(model, None) == [3]
    expected = hf_greedy(model, prompts, 12, [3])
    rollout = generate(model, None, prompts, 2, 12, do_sample=False)
    assert rollout.completion_ids == [expected[0], expected[0], expected[1], expected[1]]


def test_top_k_1_and_tiny_top_p_equal_greedy():
    model = tiny_llama(4)
    greedy = generate(model, None, PROMPTS, 2, 10, do_sample=False, stop_token_ids=[3])
    g = torch.Generator().manual_seed(0)
    top1 = generate(model, None, PROMPTS, 2, 10, top_k=1, temperature=0.7, stop_token_ids=[3], generator=g)
    tiny_p = generate(model, None, PROMPTS, 2, 10, top_p=1e-6, temperature=1.3, stop_token_ids=[3], generator=g)
    assert top1.completion_ids == greedy.completion_ids
    assert tiny_p.completion_ids == greedy.completion_ids


def test_sampling_reproducible_with_generator_and_varies_within_group():
    model = tiny_llama(5)
    runs = [generate(model, None, PROMPTS, 4, 12, temperature=1.5, stop_token_ids=[3],
                     generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    assert runs[0].completion_ids == runs[1].completion_ids
    assert runs[0].logprobs == runs[1].logprobs
    group0 = runs[0].completion_ids[:4]
    assert len({tuple(c) for c in group0}) > 1  # G samples of one prompt differ


# ---------------------------------------------------------------------------- sample_next statistics


def test_temperature_frequencies_match_softmax():
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0])
    n = 40000
    for temperature in (0.5, 1.0, 2.0):
        g = torch.Generator().manual_seed(1)
        tokens, _ = sample_next(logits.expand(n, -1), temperature=temperature, generator=g)
        freq = torch.bincount(tokens, minlength=5).float() / n
        expected = torch.softmax(logits / temperature, dim=-1)
        assert torch.allclose(freq, expected, atol=0.01), (temperature, freq, expected)


def test_top_k_and_top_p_frequencies():
    logits = torch.log(torch.tensor([0.4, 0.3, 0.2, 0.1]))
    n = 40000
    g = torch.Generator().manual_seed(2)
    tokens, _ = sample_next(logits.expand(n, -1), top_k=2, generator=g)
    freq = torch.bincount(tokens, minlength=4).float() / n
    assert torch.allclose(freq, torch.tensor([4 / 7, 3 / 7, 0, 0]), atol=0.01)
    # top_p=0.75: smallest set reaching 0.75 is {0.4, 0.3, 0.2} (0.4+0.3 = 0.7 < 0.75)
    tokens, _ = sample_next(logits.expand(n, -1), top_p=0.75, generator=g)
    freq = torch.bincount(tokens, minlength=4).float() / n
    assert torch.allclose(freq, torch.tensor([4 / 9, 3 / 9, 2 / 9, 0]), atol=0.01)
    # top-p sees the top-k distribution renormalised: {4/9, 3/9, 2/9} -> 4/9 + 3/9 >= 0.75 keeps two
    tokens, _ = sample_next(logits.expand(n, -1), top_k=3, top_p=0.75, generator=g)
    freq = torch.bincount(tokens, minlength=4).float() / n
    assert torch.allclose(freq, torch.tensor([4 / 7, 3 / 7, 0, 0]), atol=0.01)


def test_top_p_nucleus_wider_than_the_fast_head():
    flat = torch.zeros(5000, 1000)  # uniform over 1000 tokens: top_p=0.5005 keeps 501 of them
    tokens, _ = sample_next(flat, top_p=0.5005, generator=torch.Generator().manual_seed(3))
    assert 480 <= tokens.unique().numel() <= 501


def test_logprobs_are_unfiltered_tempered_log_softmax():
    logits = torch.tensor([[2.0, 1.0, 0.0, -3.0]])
    tokens, logprobs = sample_next(logits, temperature=2.0, top_k=2, generator=torch.Generator().manual_seed(0))
    expected = torch.log_softmax(logits / 2.0, dim=-1)[0, tokens[0]]
    assert torch.allclose(logprobs[0], expected)



@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("do_sample", [True, False])
def test_unfiltered_logprobs_match_log_softmax(temperature, do_sample):
    """No top-k/top-p: the log-prob comes from the softmax used for the draw; same numbers as log_softmax,
    also for an unlikely drawn token and on a vocabulary-sized, peaked row."""
    torch.manual_seed(0)
    logits = torch.randn(64, 49152) * 4
    logits[:, 7] += 25.0  # a dominant token in most rows: the rest of the vocabulary is a far tail
    tokens, logprobs = sample_next(logits, temperature=temperature, do_sample=do_sample,
                                   generator=torch.Generator().manual_seed(1))
    expected = torch.log_softmax(logits / temperature, dim=-1).gather(-1, tokens[:, None]).squeeze(-1)
    torch.testing.assert_close(logprobs, expected, atol=1e-5, rtol=1e-5)
    if do_sample:
        assert (tokens != 7).any()  # some draws land in the tail
    else:
        assert torch.equal(tokens, logits.argmax(dim=-1))

# ---------------------------------------------------------------------------- stop tokens and row dropping


class CountingModel(torch.nn.Module):
    """Fake LM: the next token is (last input token + 1) % V with a sharp peak; records batch sizes."""

    def __init__(self):
        super().__init__()
        self.config = tiny_llama().config
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.batch_sizes = []

    def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None, use_cache=True,
                logits_to_keep=0):
        self.batch_sizes.append(input_ids.shape[0])
        nxt = (input_ids[:, -1:] + 1) % VOCAB  # (B, 1)
        logits = torch.full((input_ids.shape[0], 1, VOCAB), -20.0)
        logits.scatter_(-1, nxt[..., None], 20.0)
        return CausalLMOutputWithPast(logits=logits)


def test_stop_token_ends_sequence_included_and_rows_dropped():
    model = CountingModel()
    stop = 10
    prompts = [[1, 8], [5], [30, 31]]  # reach 10 after 2 tokens, 5 tokens, never within 6
    rollout = generate(model, None, prompts, 2, 6, stop_token_ids=[stop], generator=torch.Generator().manual_seed(0))
    assert rollout.completion_ids[0] == [9, 10] and rollout.completion_ids[1] == [9, 10]
    assert rollout.completion_ids[2] == [6, 7, 8, 9, 10]
    assert rollout.completion_ids[4] == [32, 33, 34, 35, 36, 37]
    assert rollout.is_truncated == [False, False, False, False, True, True]
    # prefill at batch P=3, then 6 rows, shrinking as prompt 0 (after step 2) and prompt 1 finish
    assert model.batch_sizes == [3, 6, 4, 4, 4, 2]
    assert rollout.prompt_index == [0, 0, 1, 1, 2, 2]
    assert all(len(lp) == len(c) for lp, c in zip(rollout.logprobs, rollout.completion_ids))


def test_all_rows_finish_early_and_max_new_tokens_zero():
    model = CountingModel()
    rollout = generate(model, None, [[8]], 2, 50, stop_token_ids=[10])
    assert rollout.completion_ids == [[9, 10], [9, 10]]
    empty = generate(model, None, [[8]], 2, 0, stop_token_ids=[10])
    assert empty.completion_ids == [[], []] and empty.is_truncated == [True, True]


@pytest.mark.parametrize("kwargs", [dict(prompt_ids=[]), dict(prompt_ids=[[]]), dict(num_generations=0),
                                    dict(temperature=0.0), dict(top_p=0.0)])
def test_bad_arguments_raise(kwargs):
    args = dict(prompt_ids=[[1, 2]], num_generations=2, max_new_tokens=3)
    args.update(kwargs)
    with pytest.raises(ValueError):
        generate(tiny_llama(), None, **args)


# ---------------------------------------------------------------------------- cache, dtype, LoRA


def test_cache_keyword_is_the_one_this_transformers_reads():
    """transformers 5.24 renamed the forward's cache keyword; a cache passed under the wrong name is
    silently never filled. The name hf_compat picks must fill a DynamicCache, on a model and a peft wrapper."""
    from transformers import DynamicCache

    model = tiny_llama()
    for wrapped in (model, pytest.importorskip("peft").get_peft_model(
            tiny_llama(), __import__("peft").LoraConfig(r=2, target_modules="all-linear", task_type="CAUSAL_LM"))):
        cache = DynamicCache(config=model.config)
        with torch.inference_mode():
            out = wrapped(input_ids=torch.tensor([[5, 6, 7]]), use_cache=True, **hf_compat.cache_kwargs(wrapped, cache))
        assert cache.get_seq_length() == 3
        assert hf_compat.output_cache(out) is cache


def test_bf16_copy_runs_and_leaves_model_untouched():
    model = tiny_llama(6)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rollout = generate(model, None, PROMPTS, 2, 8, dtype="bfloat16", stop_token_ids=[3],
                       generator=torch.Generator().manual_seed(0))
    assert len(rollout.completion_ids) == 8 and all(0 < len(c) <= 8 for c in rollout.completion_ids)
    assert model.training and next(model.parameters()).dtype == torch.float32
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_peft_lora_greedy_matches_hf_and_restores_train_mode():
    peft = pytest.importorskip("peft")
    model = tiny_llama(7)
    lora = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.5, init_lora_weights=False,
                                                      target_modules="all-linear", task_type="CAUSAL_LM"))
    lora.eval()
    expected = hf_greedy(lora, PROMPTS, 10, [3])
    lora.train()  # dropout on: the sampler must switch it off for the call
    rollout = generate(lora, None, PROMPTS, 2, 10, do_sample=False, stop_token_ids=[3])
    assert [rollout.completion_ids[i] for i in range(0, 8, 2)] == expected
    assert lora.training
    # the adapter changes the output (so the test above exercised LoRA)
    with lora.disable_adapter():
        base = generate(lora, None, PROMPTS, 1, 10, do_sample=False, stop_token_ids=[3]).completion_ids
    assert base != expected
    for dtype in (torch.float32, torch.float64):  # merged copies (same dtype too) agree with the adapter forward
        merged = generate(lora, None, PROMPTS, 1, 10, do_sample=False, stop_token_ids=[3], dtype=dtype)
        assert merged.completion_ids == expected


# ---------------------------------------------------------------------------- slow: embedded SmolLM2


@pytest.mark.slow
def test_smollm2_greedy_matches_hf_generate():
    from grpo.modeling.models import EMBEDDED_SMOLLM2, load_model

    model, tokenizer = load_model(EMBEDDED_SMOLLM2)
    texts = ["What is 7 times 8?", "Write one short sentence about the sea, then stop."]
    prompts = []
    for text in texts:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                            tokenize=True)
        prompts.append(list(ids["input_ids"] if hasattr(ids, "keys") else ids))
    assert len(prompts[0]) != len(prompts[1])
    stops = stop_ids_for(model, tokenizer)
    expected = hf_greedy(model, prompts, 24, stops)
    rollout = generate(model, tokenizer, prompts, 2, 24, do_sample=False)
    assert rollout.completion_ids == [expected[0], expected[0], expected[1], expected[1]]


def test_two_level_draw_frequencies_on_a_large_vocabulary():
    """Vocabularies of >= 1024 entries are drawn block first, then inside the block; 3001 is not a
    multiple of the block. Mass sits in three blocks (one straddling a block edge), zeros elsewhere."""
    from grpo.generation.sampler import _BLOCK, _draw

    vocab, n = 3001, 60000
    probs = torch.zeros(vocab)
    support = {0: 0.1, _BLOCK - 1: 0.2, _BLOCK: 0.3, 1500: 0.15, vocab - 1: 0.25}
    for index, p in support.items():
        probs[index] = p * 7.0  # unnormalised on purpose
    tokens = _draw(probs.expand(n, -1), torch.Generator().manual_seed(4))
    counts = torch.bincount(tokens, minlength=vocab).float() / n
    assert set(tokens.unique().tolist()) == set(support)
    for index, p in support.items():
        assert abs(counts[index].item() - p) < 0.01, (index, counts[index].item(), p)
