"""The native backend's experience step: generate -> rewards -> advantages -> :class:`Experience` micro-batches.

:func:`make_experience` is TRL's ``GRPOTrainer._generate_and_score_completions`` for the native loop
(:func:`grpo.training.native.loop.train`): it takes the :class:`LoopState` and returns it advanced, with the new
:class:`GenerationBatch` as its buffer. Run its tests with ``pytest tests/test_native.py``. Generation goes
through the built-in sampler (:func:`grpo.generation.sampler.generate`) or a vLLM engine with the same contract
(:mod:`grpo.generation.vllm_engine`, :mod:`grpo.generation.vllm_server`), and returns a typed
:class:`grpo.generation.sampler.Rollout`
(G completions per prompt, prompt-major) that is kept through to the micro-batches: a completion's
prompt is ``rollout.prompt_index[i]``, never looked up again. The sampler draws tokens with a
``torch.Generator`` that must live on the model's device, so the caller names that device.
"""

from __future__ import annotations

import dataclasses
import functools
import types
from collections import defaultdict
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch

from grpo.common import hf_compat
from grpo.common.distributed import all_gather_cat, all_sum
from grpo.generation import sampler
from grpo.generation.sampler import Rollout
from grpo.generation.streams import RowStreams
from grpo.maths.advantages import advantages_from_rewards, combine_rewards, nanstd, reward_metrics
from grpo.maths.logprobs import logprobs_from_hidden
from rewards import call_reward
from rewards.reasoning import is_placeholder_reasoning

# ---------------------------------------------------------------------------- generation and rewards


@dataclass
class ScoredRollout:
    """A :class:`Rollout` with its prompts, decoded completions and one score per reward function.

    Attributes:
        rollout: P prompts' token ids and G completions each (prompt-major), truncation flags, engine log-probs.
        prompts: the P prompts as in the dataset (text or chat messages).
        completions: P*G completions, text, or ``[{"role": "assistant", "content": ...}]`` for chat prompts.
        rewards: P*G rows of F floats, one per reward function (NaN where it returned None).
        rows: the P dataset rows' other columns (``answer``, ``question``, ...), for samples.jsonl; may be empty.
    """

    rollout: Rollout
    prompts: list
    completions: list
    rewards: list[list[float]]
    rows: list[dict] = field(default_factory=list)

    def completion_prompts(self) -> list:
        """The prompt of each completion (length P*G)."""
        return [self.prompts[p] for p in self.rollout.prompt_index]

    def completion_rows(self) -> list[dict]:
        """The dataset columns of each completion's row (length P*G; empty dicts when :attr:`rows` is empty)."""
        return [self.rows[p] if self.rows else {} for p in self.rollout.prompt_index]


def tokenize_prompt(tokenizer, prompt, chat_template_kwargs: dict | None = None) -> list[int]:
    """Token ids of one prompt: chat messages through the chat template with a generation prompt (as TRL), else text.

    ``chat_template_kwargs`` (TRL's field, e.g. ``{"enable_thinking": False}``) go to ``apply_chat_template`` and
    reach the template as variables."""
    if isinstance(prompt, list):
        return list(tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=True,
                                                  **(chat_template_kwargs or {}))["input_ids"])
    return tokenizer(prompt)["input_ids"]


def generate_and_score(model, tokenizer, rows, reward_funcs, plan, seed, step, device, engine=None,
                       first_row: int = 0) -> ScoredRollout:
    """Generate G completions per dataset row (grpo.generation.sampler, or the vLLM engine) and score them.

    Args:
        model: the policy, on ``device``. tokenizer: its tokenizer. rows: dataset rows (``prompt`` + reward columns).
        reward_funcs: TRL-signature rewards, each called once through :func:`rewards.call_reward` (validated).
        plan: the :class:`grpo.training.native.plan.NativePlan` (``num_generations``, ``max_completion_length``,
            ``sampling``: the sampler's options, ``chat_template_kwargs``, ``rollout_dtype``: the sampler's weight
            copy dtype, None = the model's).
        seed: this generation batch's sampling seed. step: the optimizer step, for ``trainer_state``.
        device: the training device (the sampler's generator). engine: a vLLM engine, or None for the sampler.
        first_row: the global index of this call's first completion (rank * completions per process): the sampler
            draws completion i from its own stream (:class:`grpo.generation.streams.RowStreams`), so one process
            or several sample the same completions for the same global batch.

    Returns:
        The :class:`ScoredRollout`.

    Raises:
        rewards.RewardError: a reward raised or broke its contract (named in the message).
    """
    prompt_ids = [tokenize_prompt(tokenizer, r["prompt"], plan.chat_template_kwargs) for r in rows]
    if engine is not None:  # vLLM seeds each call; the offset keeps the processes' streams apart
        sample, extra = engine.generate, {"seed": seed + first_row}
    else:
        sample, extra = sampler.generate, {"dtype": plan.rollout_dtype}
    out = sample(model, tokenizer, prompt_ids, num_generations=plan.num_generations,
                 max_new_tokens=plan.max_completion_length, do_sample=True,
                 generator=RowStreams(seed, first_row, device), **plan.sampling, **extra)
    texts = tokenizer.batch_decode(out.completion_ids, skip_special_tokens=True)
    owner = out.prompt_index  # completion -> its row
    prompts = [rows[p]["prompt"] for p in owner]
    completions = [[{"role": "assistant", "content": t}] if isinstance(p, list) else t for p, t in zip(prompts, texts)]
    columns = {k: [rows[p][k] for p in owner] for k in rows[0] if k != "prompt"}
    columns["completion_ids"] = out.completion_ids
    columns["trainer_state"] = types.SimpleNamespace(global_step=step)
    scores = [[float("nan") if v is None else float(v) for v in call_reward(fn, completions, prompts=prompts, **columns)]
              for fn in reward_funcs]
    return ScoredRollout(out, [r["prompt"] for r in rows], completions, [[s[i] for s in scores] for i in range(len(texts))],
                         [{k: v for k, v in r.items() if k != "prompt"} for r in rows])


def informative(scored: ScoredRollout, group: int, weights) -> bool:
    """Whether group ``group``'s combined rewards differ (a group that ties carries no gradient)."""
    g = scored.rollout.num_generations
    std = nanstd(combine_rewards(torch.tensor(scored.rewards[group * g : (group + 1) * g]), weights))  # scalar
    return bool(torch.isfinite(std) and std > 1e-6)


def select_groups(picks: list[tuple[ScoredRollout, int]]) -> ScoredRollout:
    """One :class:`ScoredRollout` of the chosen ``(rollout, group)`` pairs, in order."""
    g = picks[0][0].rollout.num_generations
    rows = [(s, i) for s, p in picks for i in range(p * g, (p + 1) * g)]
    out = Rollout([s.rollout.prompt_ids[p] for s, p in picks], [s.rollout.completion_ids[i] for s, i in rows],
                  [s.rollout.is_truncated[i] for s, i in rows], [s.rollout.logprobs[i] for s, i in rows], g)
    return ScoredRollout(out, [s.prompts[p] for s, p in picks], [s.completions[i] for s, i in rows],
                         [s.rewards[i] for s, i in rows],
                         [s.rows[p] for s, p in picks] if all(s.rows for s, _ in picks) else [])


@functools.lru_cache(maxsize=4)
def _epoch_order(num_rows: int, seed: int, shuffle: bool) -> tuple[int, ...]:
    """The order of one epoch's prompts: a permutation seeded by ``seed`` (the run's seed + the epoch)."""
    if not shuffle:
        return tuple(range(num_rows))
    return tuple(torch.randperm(num_rows, generator=torch.Generator().manual_seed(seed)).tolist())


def prompt_rows(dataset, start: int, count: int, seed: int, shuffle: bool) -> list:
    """Rows ``start .. start+count`` of the endless prompt stream (epoch after epoch, each shuffled by its own seed)."""
    n = len(dataset)
    return [dataset[_epoch_order(n, seed + k // n, shuffle)[k % n]] for k in range(start, start + count)]


# ---------------------------------------------------------------------------- experience


@dataclass
class Experience:
    """The tensors of one micro-batch of B completions (of U distinct prompts), as the loss reads them.

    Attributes:
        prompt_ids: (U, P) long, left-padded; prompt_mask: (U, P) 1 on prompt tokens.
        prompt_index: (B,) long, the row of ``prompt_ids`` each completion continues.
        completion_ids: (B, T) long, right-padded; completion_attention_mask: (B, T) 1 on completion tokens.
        completion_mask: (B, T) the tokens the loss counts (truncated completions zeroed when
            ``mask_truncated_completions``).
        advantages: (B,) float32.
        sampling_per_token_logps: (B, T) the rollout engine's log-probs, or None (a checkpoint's buffer without them).
        old_per_token_logps: (B, T) the generating policy's log-probs (``num_iterations > 1``), else None.
        ref_per_token_logps: (B, T) the reference model's log-probs (``beta != 0``), else None.
    """

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    prompt_index: torch.Tensor
    completion_ids: torch.Tensor
    completion_attention_mask: torch.Tensor
    completion_mask: torch.Tensor
    advantages: torch.Tensor
    sampling_per_token_logps: torch.Tensor | None = None
    old_per_token_logps: torch.Tensor | None = None
    ref_per_token_logps: torch.Tensor | None = None

    def to(self, device) -> Experience:
        """The same experience with every tensor on ``device``."""
        return Experience(**{k: None if v is None else v.to(device) for k, v in vars(self).items()})


# checkpoints written before Experience existed store micro-batches as dicts under these keys
_OLD_KEYS = {"completion_attn": "completion_attention_mask", "mask": "completion_mask",
             "sampling_logps": "sampling_per_token_logps", "old_logps": "old_per_token_logps",
             "ref_logps": "ref_per_token_logps"}


@dataclass
class GenerationBatch:
    """This process's share of one generation batch: its micro-batches and the token count DAPO divides by.

    Attributes:
        experiences: ``steps_per_generation`` :class:`Experience` s, in generation order.
        num_items_in_batch: scalar tensor, loss tokens summed over every process (the ``dapo`` normaliser).
    """

    experiences: list[Experience]
    num_items_in_batch: torch.Tensor

    def to_state(self) -> dict:
        """Plain dicts of tensors, for a checkpoint read back with ``torch.load(weights_only=True)``."""
        return {"experiences": [dataclasses.asdict(e) for e in self.experiences],
                "num_items_in_batch": self.num_items_in_batch}

    @classmethod
    def from_state(cls, state: dict, device) -> GenerationBatch:
        """Inverse of :meth:`to_state` (also reads the dict layout of older checkpoints), on ``device``."""
        micro = state.get("experiences", state.get("micro", []))
        exps = [Experience(**{_OLD_KEYS.get(k, k): v for k, v in m.items()}).to(device) for m in micro]
        return cls(exps, state.get("num_items_in_batch", state.get("num_items")).to(device))


@dataclass
class LoopState:
    """What the native loop carries from one optimizer step to the next; a checkpoint stores all of it.

    Attributes:
        step: optimizer steps completed.
        cursor: prompts of the endless prompt stream consumed so far, by all processes together.
        generation: generation batches made so far (each one's sampling seed derives from it).
        buffer: the current :class:`GenerationBatch`, or None before the first.
        window: metric name -> the values since the last logged row (a ``defaultdict(list)``).
        signal: one ``{"frac_reward_zero_std": float}`` per generation batch
            (:func:`grpo.training.diagnostics.warn_if_no_signal`).
        entropy_control: :meth:`grpo.maths.entropy.EntropyControl.state_dict` while the entropy bonus is on, else None.
    """

    step: int = 0
    cursor: int = 0
    generation: int = 0
    buffer: GenerationBatch | None = None
    window: defaultdict = field(default_factory=lambda: defaultdict(list))
    signal: list = field(default_factory=list)
    entropy_control: dict | None = None

    def snapshot(self) -> dict:
        """Plain values and tensors only (the buffer through :meth:`GenerationBatch.to_state`, the window's lists
        copied), so later in-place updates cannot change it and ``torch.load(weights_only=True)`` reads it back."""
        return {"step": self.step, "cursor": self.cursor, "generation": self.generation,
                "buffer": None if self.buffer is None else self.buffer.to_state(),
                "window": {k: list(v) for k, v in self.window.items()}, "signal": list(self.signal),
                "entropy_control": self.entropy_control}

    @classmethod
    def from_snapshot(cls, snapshot: dict, device) -> LoopState:
        """Inverse of :meth:`snapshot`, the buffer moved to ``device``; keys a snapshot lacks keep their defaults."""
        buffer = snapshot.get("buffer")
        return cls(step=snapshot["step"], cursor=snapshot.get("cursor", 0), generation=snapshot.get("generation", 0),
                   buffer=None if buffer is None else GenerationBatch.from_state(buffer, device),
                   window=defaultdict(list, snapshot.get("window", {})), signal=list(snapshot.get("signal", [])),
                   entropy_control=snapshot.get("entropy_control"))


def collate(prompt_ids: list[list[int]], prompt_index: list[int], completion_ids: list[list[int]],
            truncated: list[bool], sampling_logps: list[list[float]] | None, advantages: torch.Tensor, pad_id: int,
            mask_truncated: bool, pad_to_multiple_of: int = 1) -> Experience:
    """Pad one micro-batch into an :class:`Experience` (CPU tensors).

    Args:
        prompt_ids: the U distinct prompts (token ids). prompt_index: B, the prompt of each completion.
        completion_ids: B completions (token ids). truncated: B flags. sampling_logps: B lists of the engine's
            log-probs, or None. advantages: (B,). pad_id: the tokenizer's pad id.
        mask_truncated: leave truncated completions out of the loss (``mask_truncated_completions``).
        pad_to_multiple_of: round both widths (P, T) up to a multiple of this, as TRL's field: the padding is
            masked out, and on CPU it bounds the input shapes oneDNN compiles and keeps memory for.
    """
    u, b = len(prompt_ids), len(completion_ids)
    width_p, width_c = max(map(len, prompt_ids)), max(1, max(map(len, completion_ids)))
    width_p, width_c = (-(-w // pad_to_multiple_of) * pad_to_multiple_of for w in (width_p, width_c))
    p_ids, p_mask = torch.full((u, width_p), pad_id), torch.zeros(u, width_p, dtype=torch.long)  # (U, P)
    for i, p in enumerate(prompt_ids):
        p_ids[i, width_p - len(p):], p_mask[i, width_p - len(p):] = torch.tensor(p), 1
    ids, attn = torch.full((b, width_c), pad_id), torch.zeros(b, width_c, dtype=torch.long)  # (B, T)
    sampling = torch.zeros(b, width_c)  # (B, T)
    for i, c in enumerate(completion_ids):
        ids[i, : len(c)], attn[i, : len(c)] = torch.tensor(c), 1
        logps = sampling_logps[i] if sampling_logps is not None else []
        sampling[i, : len(logps)] = torch.tensor(logps, dtype=torch.float32)
    keep = (~torch.tensor(truncated)).long().unsqueeze(1)  # (B, 1)
    return Experience(p_ids, p_mask, torch.tensor(prompt_index), ids, attn, attn * keep if mask_truncated else attn,
                      advantages, sampling)


def completion_logps(model, batch: Experience, temperature: float, autocast,
                     entropy_grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """log pi(completion token | prompt, prefix) at `temperature`: (B, T) with grad, and (B, T) entropy
    (with grad only when ``entropy_grad``: the entropy bonus).

    The G completions of a prompt share its forward: the prompt runs once (batch U), its KV cache
    is indexed out to the B rows (differentiable, so LoRA still gets the prompt positions' gradient),
    then only completion tokens run. Same numbers as one forward over [prompt, completion] rows.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    index, p_mask, attn = batch.prompt_index, batch.prompt_mask, batch.completion_attention_mask  # (B,), (U, P), (B, T)
    with autocast():
        p_pos = (p_mask.cumsum(-1) - 1).clamp(min=0)  # (U, P), as generation numbered them
        out = base.base_model(input_ids=batch.prompt_ids, attention_mask=p_mask, position_ids=p_pos, use_cache=True)
        cache = hf_compat.output_cache(out)
        cache.batch_select_indices(index)  # (U, ...) -> (B, ...)
        c_pos = p_pos[index, -1:] + 1 + torch.arange(attn.shape[1], device=attn.device)  # (B, T)
        hidden = base.base_model(input_ids=batch.completion_ids, attention_mask=torch.cat([p_mask[index], attn], 1),
                                 position_ids=c_pos, use_cache=True,
                                 **hf_compat.cache_kwargs(base.base_model, cache)).last_hidden_state  # (B, T, H)
        hidden = torch.cat([out.last_hidden_state[index, -1:], hidden[:, :-1]], 1)  # (B, T, H): predicts token t
        head = base.get_output_embeddings()
        return logprobs_from_hidden(hidden, head.weight, head.bias, batch.completion_ids, temperature,
                                    entropy_grad=entropy_grad)


def reference_logps(model, ref_model, batch: Experience, temperature, autocast) -> torch.Tensor:
    """Reference log-probs (B, T): the same model with LoRA adapters disabled, else a frozen copy."""
    with torch.no_grad(), model.disable_adapter() if ref_model is None else nullcontext():
        return completion_logps(model if ref_model is None else ref_model, batch, temperature, autocast)[0]


# ---------------------------------------------------------------------------- the generation batch


def make_experience(model, ref_model, tokenizer, dataset, reward_funcs, reward_names: list[str], plan, state: LoopState,
                    rank: int, world: int, device, autocast, engine=None
                    ) -> tuple[LoopState, ScoredRollout, torch.Tensor, dict]:
    """Generate -> rewards -> advantages -> stored old/ref log-probs, for this process; rewards and advantages once.

    TRL's ``GRPOTrainer._generate_and_score_completions`` (plus DAPO's dynamic sampling when
    ``ScriptArgs.dynamic_sampling``), cut into ``plan.steps_per_generation`` micro-batches.

    Args:
        model: the policy; ref_model: a frozen copy, or None (LoRA: adapters disabled; or ``beta == 0``).
        tokenizer: its tokenizer. dataset: the prompt rows. reward_funcs, reward_names: the F rewards and their names.
        plan: the :class:`grpo.training.native.plan.NativePlan`. state: the :class:`LoopState` (not modified).
        rank, world: this process and the number of processes. device: the training device.
        autocast: a context factory for the training forwards (bf16 autocast, or ``nullcontext``).
        engine: a vLLM engine, or None for the built-in sampler.

    Returns:
        ``(state, scored, advantages, metrics)``: ``state`` advanced (``cursor``: prompts consumed by all processes,
        ``generation``, and the new :class:`GenerationBatch` on ``device`` as ``buffer``), the rollout it was
        built from (after dynamic sampling), its (N,) advantages, and the generation metrics (TRL's names).
    """
    g, n_prompts, weights = plan.num_generations, plan.prompts_per_generation, plan.reward_weights
    cursor = state.cursor

    def sample(round_: int) -> ScoredRollout:  # this process's share of the next world*n_prompts prompts
        nonlocal cursor
        rows = prompt_rows(dataset, cursor + rank * n_prompts, n_prompts, plan.seed, plan.shuffle_dataset)
        cursor += world * n_prompts
        seed = plan.seed * 1_000_003 + state.generation * 7919 + round_ * 104_729  # the same on every process
        return generate_and_score(model, tokenizer, rows, reward_funcs, plan, seed, state.step, device, engine,
                                  first_row=rank * n_prompts * g)

    def gather(values: list) -> torch.Tensor:  # every process's (N, ...) in rank order, created on the device (NCCL)
        return all_gather_cat(torch.tensor(values, dtype=torch.float32, device=device), world, device)

    scored = sample(0)
    per_func = gather(scored.rewards)  # (world*N, F)
    lengths = gather([float(len(c)) for c in scored.rollout.completion_ids])  # (world*N,)
    truncated = gather([float(t) for t in scored.rollout.is_truncated])  # (world*N,)
    placeholder = gather([float(is_placeholder_reasoning(c)) for c in scored.completions])  # (world*N,)
    advantages, first = advantages_from_rewards(per_func, g, weights, plan.scale_rewards,
                                                plan.multi_objective_aggregation)  # (world*N,)
    metrics = {**reward_metrics(per_func, weights, reward_names), **first,
               "completions/mean_length": lengths.mean().item(), "completions/clipped_ratio": truncated.mean().item(),
               "completions/placeholder_reasoning_rate": placeholder.mean().item()}
    if plan.dynamic_sampling:  # DAPO: swap zero-spread groups for fresh prompts, bounded rounds
        groups = [(scored, p) for p in range(n_prompts)]
        kept = [x for x in groups if informative(*x, weights)]
        spare = [x for x in groups if not informative(*x, weights)]
        for round_ in range(1, plan.dynamic_sampling_max_retries + 1):
            if all_sum(torch.tensor([float(len(kept) < n_prompts)], device=device), world, device).item() == 0:
                break  # every process is full
            if len(kept) < n_prompts:
                fresh = sample(round_)
                kept += [(fresh, p) for p in range(n_prompts) if informative(fresh, p, weights)]
            else:
                cursor += world * n_prompts  # keep the prompt stream in step with the others
            metrics["dynamic_sampling/rounds"] = float(round_)
        scored = select_groups((kept + spare)[:n_prompts])
        advantages = advantages_from_rewards(gather(scored.rewards), g, weights, plan.scale_rewards,
                                             plan.multi_objective_aggregation)[0]
    advantages = advantages.view(world, -1)[rank]  # (N,) this process's share

    out, experiences, step = scored.rollout, [], plan.micro_batch_size
    for i in range(0, len(out.completion_ids), step):
        rows = range(i, min(i + step, len(out.completion_ids)))
        first_prompt, last_prompt = out.prompt_index[rows[0]], out.prompt_index[rows[-1]]
        batch = collate(out.prompt_ids[first_prompt : last_prompt + 1], [out.prompt_index[r] - first_prompt for r in rows],
                        [out.completion_ids[r] for r in rows], [out.is_truncated[r] for r in rows],
                        [out.logprobs[r] for r in rows], advantages[i : i + step], tokenizer.pad_token_id,
                        plan.mask_truncated_completions, plan.pad_to_multiple_of).to(device)
        if plan.stores_old_logps:  # later iterations need the sampling policy's log-probs
            with torch.no_grad():
                batch.old_per_token_logps = completion_logps(model, batch, plan.temperature, autocast)[0]
        if plan.needs_reference:
            batch.ref_per_token_logps = reference_logps(model, ref_model, batch, plan.temperature, autocast)
        experiences.append(batch)
    tokens = torch.tensor(float(sum(e.completion_mask.sum().item() for e in experiences)), device=device)
    buffer = GenerationBatch(experiences, all_sum(tokens, world, device))  # dapo's N: every process's tokens
    return dataclasses.replace(state, cursor=cursor, generation=state.generation + 1, buffer=buffer), scored, advantages, metrics
