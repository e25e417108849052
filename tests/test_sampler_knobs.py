"""The sampler's TRL knobs: min_p, repetition_penalty (grpo/generation/sampler.py), generation_kwargs and
chat_template_kwargs (grpo/training/native/plan.py, experience.py), against transformers' own logits processors.

Run: pytest tests/test_sampler_knobs.py      (tiny random models, seconds)
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from test_sampler import VOCAB, hf_greedy, tiny_llama  # the tiny model and model.generate, cut like the sampler
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from grpo.common.errors import UserError
from grpo.generation.sampler import generate, penalize_repetitions, sample_next

pytestmark = pytest.mark.usefixtures("one_torch_thread")



def hf_distribution(logits, history, temperature, top_k, top_p, min_p, penalty):
    """transformers' processors in generate()'s order (penalty, temperature, top-k, top-p, min-p), softmaxed: (B, V)."""
    scores = logits.clone()
    if penalty != 1.0:
        scores = RepetitionPenaltyLogitsProcessor(penalty)(history, scores)
    chain = [TemperatureLogitsWarper(temperature)] if temperature != 1.0 else []
    chain += [TopKLogitsWarper(top_k)] if top_k else []
    chain += [TopPLogitsWarper(top_p)] if top_p < 1.0 else []
    chain += [MinPLogitsWarper(min_p)] if min_p is not None else []
    for processor in chain:
        scores = processor(history, scores)
    return torch.softmax(scores, dim=-1)


@pytest.mark.parametrize("temperature, top_k, top_p, min_p, penalty", [
    (1.0, 0, 1.0, 0.1, 1.0), (0.7, 0, 1.0, 0.05, 1.0), (1.0, 20, 0.9, 0.1, 1.0), (1.3, 0, 0.8, 0.02, 1.0),
    (1.0, 0, 1.0, None, 1.5), (0.8, 10, 0.95, 0.1, 0.7), (1.0, 0, 1.0, 0.0, 2.0)])
def test_filters_draw_from_the_distribution_transformers_processors_define(temperature, top_k, top_p, min_p, penalty):
    torch.manual_seed(0)
    vocab, n = 600, 30000  # > 256: the nucleus / min-p set is first looked for in the top 256
    logits = torch.randn(2, vocab) * 3  # (2, V)
    history = torch.randint(0, vocab, (2, 12))  # tokens already in each row
    expected = hf_distribution(logits, history, temperature, top_k, top_p, min_p, penalty)  # (2, V)
    seen = torch.zeros(2, vocab, dtype=torch.bool).scatter_(1, history, True)
    scores = penalize_repetitions(logits, seen, penalty) if penalty != 1.0 else logits
    for row in range(2):
        tokens, _ = sample_next(scores[row].expand(n, -1), temperature, top_k, top_p, True,
                                torch.Generator().manual_seed(row), min_p)
        freq = torch.bincount(tokens, minlength=vocab).float() / n
        assert set(tokens.unique().tolist()) <= set(expected[row].nonzero().squeeze(-1).tolist())
        assert torch.allclose(freq, expected[row], atol=0.012), (row, (freq - expected[row]).abs().max())


def test_min_p_set_wider_than_the_fast_head():
    flat = torch.zeros(5000, 1000)  # every token ties with the top one: min_p keeps all 1000
    tokens, _ = sample_next(flat, min_p=0.5, generator=torch.Generator().manual_seed(3))
    assert tokens.unique().numel() > 900


def test_min_p_one_is_greedy_and_logprobs_stay_unfiltered():
    logits = torch.randn(6, VOCAB)
    tokens, logprobs = sample_next(logits, temperature=0.9, min_p=1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(tokens, logits.argmax(-1))
    assert torch.allclose(logprobs, torch.log_softmax(logits / 0.9, -1).gather(-1, tokens[:, None]).squeeze(-1))


PROMPTS = [[5, 6, 7, 8, 9, 10, 11], [12, 13, 14], [20, 21, 22, 23, 24], [30]]


@pytest.mark.parametrize("seed, penalty", [(0, 1.5), (1, 1.3), (2, 0.8)])
def test_greedy_with_repetition_penalty_matches_hf_generate(seed, penalty):
    model, stops = tiny_llama(seed), [3, 40]
    expected = hf_greedy(model, PROMPTS, 20, stops, repetition_penalty=penalty)
    rollout = generate(model, None, PROMPTS, 2, 20, do_sample=False, stop_token_ids=stops, repetition_penalty=penalty)
    assert rollout.completion_ids == [e for e in expected for _ in range(2)]
    plain = generate(model, None, PROMPTS, 1, 20, do_sample=False, stop_token_ids=stops)
    assert plain.completion_ids != expected  # the penalty changed what greedy picks (the test can fail)


def test_min_p_and_top_k_are_warpers_greedy_ignores_them_as_hf():
    model, stops = tiny_llama(4), [3]
    expected = hf_greedy(model, PROMPTS, 12, stops, min_p=0.3, top_k=5)
    rollout = generate(model, None, PROMPTS, 1, 12, do_sample=False, stop_token_ids=stops, min_p=0.3, top_k=5)
    assert rollout.completion_ids == expected


def test_sampled_completions_repeat_less_under_the_penalty():
    model = tiny_llama(5)
    with torch.no_grad():
        model.lm_head.weight.mul_(20)  # peaked next-token distributions: the random model repeats itself

    def distinct_ratio(penalty):
        out = generate(model, None, PROMPTS, 4, 24, temperature=1.0, stop_token_ids=[], repetition_penalty=penalty,
                       generator=torch.Generator().manual_seed(0))
        return sum(len(set(c)) / len(c) for c in out.completion_ids) / len(out.completion_ids)
    assert distinct_ratio(5.0) > distinct_ratio(1.0) + 0.1


@pytest.mark.parametrize("kwargs", [{"min_p": 1.5}, {"min_p": -0.1}, {"repetition_penalty": 0.0}])
def test_bad_knobs_raise(kwargs):
    with pytest.raises(ValueError):
        generate(tiny_llama(), None, PROMPTS, 1, 4, **kwargs)


# ---------------------------------------------------------------------------- config: generation_kwargs, chat_template_kwargs


def grpo_config(tmp_path, **overrides):
    from trl import GRPOConfig

    values = dict(output_dir=str(tmp_path), report_to=[], use_cpu=True, bf16=False, per_device_train_batch_size=4,
                  gradient_accumulation_steps=2, num_generations=4, max_completion_length=6, max_steps=2)
    return GRPOConfig(**{**values, **overrides})


def test_generation_kwargs_override_the_sampling_fields_as_trl(tmp_path):
    from grpo.training.native.plan import build_plan

    plan = build_plan(grpo_config(tmp_path, min_p=0.05, top_k=7, generation_kwargs={"top_k": 3, "repetition_penalty": 1.2}))
    assert plan.sampling == {"temperature": 1.0, "top_p": 1.0, "top_k": 3, "min_p": 0.05, "repetition_penalty": 1.2}
    with pytest.raises(UserError, match=r"generation_kwargs \['num_beams'\]"):
        build_plan(grpo_config(tmp_path, generation_kwargs={"num_beams": 4}))
    with pytest.raises(UserError, match="repetition_penalty"):
        build_plan(grpo_config(tmp_path, repetition_penalty=0.0))


def test_chat_template_kwargs_reach_the_template(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from grpo.training.native.experience import tokenize_prompt
    from grpo.training.native.plan import build_plan

    words = ["<pad>", "<eos>", "<unk>", "hi", "think", "ok"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    tokenizer.chat_template = ("{% for m in messages %}{{ m['content'] }} {% endfor %}"
                               "{% if enable_thinking is not defined or enable_thinking %}think {% endif %}ok")
    messages = [{"role": "user", "content": "hi"}]
    plan = build_plan(grpo_config(tmp_path, chat_template_kwargs={"enable_thinking": False}))
    assert tokenize_prompt(tokenizer, messages) == [3, 4, 5]
    assert tokenize_prompt(tokenizer, messages, plan.chat_template_kwargs) == [3, 5]
