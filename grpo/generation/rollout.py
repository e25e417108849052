"""What every rollout engine returns and how it picks its stop tokens, shared by all of them.

The CPU sampler (:mod:`grpo.generation.sampler`), colocated vLLM (:mod:`grpo.generation.vllm_engine`) and the vLLM server
client (:mod:`grpo.generation.vllm_server`) all return a :class:`Rollout` and end completions on the tokens
:func:`stop_ids_for` names, so the training loop cannot tell them apart. This module imports no
other grpo module and no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Rollout", "stop_ids_for"]


@dataclass
class Rollout:
    """G completions for each of P prompts, prompt-major.

    Attributes:
        prompt_ids: the P prompts as given (token ids, no padding).
        completion_ids: P*G completions; ``completion_ids[p * G + g]`` is the g-th completion of
            prompt p. A completion that ended on a stop token includes that token (as HF does).
        is_truncated: P*G flags, True when the completion hit ``max_new_tokens`` without a stop token.
        logprobs: P*G lists of per-token log-probs (nats) of the chosen tokens under the
            unfiltered ``log_softmax(logits / temperature)``, in the dtype generation ran in.
        num_generations: G.
    """

    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    is_truncated: list[bool]
    logprobs: list[list[float]] = field(default_factory=list)
    num_generations: int = 1

    @property
    def prompt_index(self) -> list[int]:
        """For each completion, the index of its prompt in ``prompt_ids`` (length P*G)."""
        return [i // self.num_generations for i in range(len(self.completion_ids))]


def stop_ids_for(model, tokenizer, stop_token_ids: Sequence[int] | int | None = None) -> list[int]:
    """The stop tokens ``model.generate`` would use: explicit ids, else generation_config eos, else tokenizer eos.

    Args:
        model: a causal LM (its ``generation_config.eos_token_id`` is read), or None.
        tokenizer: consulted only when neither ``stop_token_ids`` nor the model names a stop token; may be None.
        stop_token_ids: explicit stop ids (one int or several); None = the defaults above.

    Returns:
        The stop token ids, possibly empty (then only ``max_new_tokens`` ends a completion).
    """
    ids = stop_token_ids
    if ids is None:
        ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if ids is None and tokenizer is not None:
        ids = tokenizer.eos_token_id
    return [] if ids is None else [int(ids)] if isinstance(ids, int) else [int(i) for i in ids]
