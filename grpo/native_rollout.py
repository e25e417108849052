"""The native backend's rollout step: G completions per dataset row, scored by every reward function.

Used by :func:`grpo.native.train`; run its tests with ``pytest tests/test_native.py``. Generation goes
through the built-in sampler (:func:`grpo.sampler.generate`) or a vLLM engine with the same contract
(:mod:`grpo.vllm_engine`, :mod:`grpo.vllm_server`). The sampler draws tokens with a ``torch.Generator``
that must live on the model's device, so the caller names that device.
"""

from __future__ import annotations

import types

import torch

from grpo.advantages import combine_rewards, nanstd


def tokenize_prompt(tokenizer, prompt) -> list[int]:
    """Token ids of one prompt: chat messages through the chat template with a generation prompt (as TRL), else text."""
    if isinstance(prompt, list):
        return list(tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True,
                                                  return_dict=True)["input_ids"])
    return tokenizer(prompt)["input_ids"]


def make_generator(seed: int, device) -> torch.Generator:
    """A seeded ``torch.Generator`` on ``device``: the sampler draws on the model's device, and a CPU generator
    fails there on CUDA ("Expected a 'cuda' device type for generator")."""
    return torch.Generator(device=torch.device(device)).manual_seed(seed)


def rollout(model, tokenizer, rows, reward_funcs, args, seed, dtype, step, device, engine=None) -> list[dict]:
    """Generate G completions per dataset row (grpo.sampler, or the vLLM engine) and score them.

    Args:
        model: the policy, on ``device``. tokenizer: its tokenizer. rows: dataset rows (``prompt`` + reward columns).
        reward_funcs: TRL-signature rewards. args: ``trl.GRPOConfig`` (num_generations, sampling fields).
        seed: this call's sampling seed. dtype: the sampler's weight copy dtype (None = the model's).
        step: the optimizer step, for ``trainer_state``. device: the training device (the sampler's generator).
        engine: a vLLM engine, or None for the built-in sampler.

    Returns:
        One record per completion, prompt-major: prompt, completion, token ids, truncation, the
        engine's log-probs and one reward per function (NaN where a reward returned None).
    """
    from grpo.sampler import generate
    from rewards import call_reward

    g = args.num_generations
    prompt_ids = [tokenize_prompt(tokenizer, r["prompt"]) for r in rows]
    sample, extra = (engine.generate, {"seed": seed}) if engine is not None else (generate, {"dtype": dtype})
    out = sample(model, tokenizer, prompt_ids, num_generations=g, max_new_tokens=args.max_completion_length,
                 temperature=args.temperature, top_p=args.top_p, top_k=args.top_k, do_sample=True,
                 generator=make_generator(seed, device), **extra)
    texts = tokenizer.batch_decode(out.completion_ids, skip_special_tokens=True)
    prompts = [rows[i // g]["prompt"] for i in range(len(texts))]
    completions = [[{"role": "assistant", "content": t}] if isinstance(p, list) else t for p, t in zip(prompts, texts)]
    columns = {k: [rows[i // g][k] for i in range(len(texts))] for k in rows[0] if k != "prompt"}
    columns["completion_ids"] = out.completion_ids
    columns["trainer_state"] = types.SimpleNamespace(global_step=step)
    scores = []
    for fn in reward_funcs:
        values = call_reward(fn, completions, prompts=prompts, **columns)
        scores.append([float("nan") if v is None else float(v) for v in values])
    return [{"prompt": prompts[i], "completion": completions[i], "prompt_ids": out.prompt_ids[i // g],
             "completion_ids": out.completion_ids[i], "truncated": out.is_truncated[i],
             "sampling_logps": out.logprobs[i], "rewards": [s[i] for s in scores]} for i in range(len(texts))]


def informative(group: list[dict], weights) -> bool:
    """Whether a group's combined rewards differ (a group that ties carries no gradient)."""
    std = nanstd(combine_rewards(torch.tensor([r["rewards"] for r in group]), weights))  # scalar
    return bool(torch.isfinite(std) and std > 1e-6)
